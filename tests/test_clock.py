"""The wall clock set back or forward between ticks: rates come from the
monotonic clock, stored times from the wall clock, nothing divides by a zero
or negative interval."""

from pathlib import Path

from rulectl.collect import CLOCK_TICKS, Collector, ProcfsSource, cpu_percent

YEAR_S = 365 * 86400


def write_proc(root: Path, cpu_ticks: int) -> None:
    (root / "42").mkdir(parents=True, exist_ok=True)
    (root / "meminfo").write_text(
        "MemTotal: 1000 kB\nMemFree: 500 kB\nMemAvailable: 600 kB\n"
    )
    (root / "stat").write_text(f"cpu {cpu_ticks} 0 0 1000 0 0 0 0 0 0\ncpu0 1 0 0 0\n")
    (root / "42" / "stat").write_text(
        f"42 (job) R 1 42 42 0 -1 0 0 0 0 0 {cpu_ticks} 0 0 0 20 0 1 0 100 "
        "1024000 10 " + " ".join(["0"] * 30) + "\n"
    )
    (root / "42" / "cmdline").write_bytes(b"job\0")
    (root / "42" / "cgroup").write_text("0::/\n")


def test_cpu_percent_and_stored_times_survive_a_wall_clock_jump(tmp_path):
    monotonic = iter([100.0, 102.0, 104.0])
    wall = iter([1_700_000_000.0, 1_700_000_000.0 - YEAR_S, 1_700_000_000.0 + YEAR_S])
    collector = Collector(
        ProcfsSource(tmp_path), clock=lambda: next(monotonic), wall=lambda: next(wall)
    )
    half_a_core = CLOCK_TICKS  # one second of CPU time per 2 s of monotonic time

    write_proc(tmp_path, 0)
    collector.sample()
    write_proc(tmp_path, half_a_core)
    back = collector.sample()  # the wall clock went back a year
    write_proc(tmp_path, 2 * half_a_core)
    ahead = collector.sample()  # and then two years ahead

    for snap in (back, ahead):
        (p,) = snap.processes
        assert p.cpu_percent == 50.0
    assert back.time == 1_700_000_000.0 - YEAR_S
    assert ahead.time == 1_700_000_000.0 + YEAR_S


def test_no_interval_or_a_negative_one_gives_no_rate():
    assert cpu_percent(1_000_000, 0.0) is None
    assert cpu_percent(1_000_000, -2.0) is None
    assert cpu_percent(-5, 2.0) is None  # a counter that went back: no rate
