"""The kernel reader and the /proc reader agree on captures from a real kernel.

tests/vm/fixtures holds the modules' files and a copy of the VM's /proc taken
at the same moment (see its README). Both sources of the daemon read them; for
every process in the /proc copy the facts must be the same, CPU time within
the rounding of /proc/PID/stat (each of utime and stime is cut to a tick).
"""

from pathlib import Path

import pytest

from rulectl.collect import NS_PER_TICK, Collector, KernelSource, ProcfsSource

FIXTURES = Path(__file__).resolve().parent / "vm" / "fixtures"
CAPTURES = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir())


def clock() -> float:
    return 100.0


def readings(capture: str):
    base = FIXTURES / capture
    kernel = KernelSource(
        base / "rulectl_procs.json", base / "rulectl_containers.json", base / "proc"
    ).read(clock, clock)
    procfs = ProcfsSource(base / "proc").read(clock, clock)
    return kernel, procfs


def test_there_are_captures_to_compare():
    assert CAPTURES == ["cgroup-v1-cpu", "cgroup-v2"]


@pytest.mark.parametrize("capture", CAPTURES)
def test_every_process_has_the_same_facts_from_both_sources(capture):
    kernel, procfs = readings(capture)
    by_pid = {p.pid: p for p in kernel.processes}
    assert len(procfs.processes) >= 8
    for p in procfs.processes:
        k = by_pid[p.pid]
        same = (
            "ppid",
            "cmdline",
            "state",
            "vsz_kb",
            "rss_kb",
            "start_ticks",
            "container_id",
        )
        assert {f: getattr(k, f) for f in same} == {f: getattr(p, f) for f in same}, (
            p.pid
        )
        # A workqueue worker's /proc name carries its current work item.
        assert p.name == k.name or p.name.startswith(k.name + "-"), p.pid
        # stat cuts utime and stime to whole ticks each.
        assert 0 <= k.cpu_time_ns - p.cpu_time_ns < 2 * NS_PER_TICK, p.pid


@pytest.mark.parametrize("capture", CAPTURES)
def test_both_sources_give_the_same_snapshot(capture):
    kernel, procfs = readings(capture)
    pids = {p.pid for p in procfs.processes}
    k_snap = Collector(None, sys_root=FIXTURES / "none").sample(kernel)
    p_snap = Collector(None, sys_root=FIXTURES / "none").sample(procfs)

    assert k_snap.host.mem_total_kb == p_snap.host.mem_total_kb
    # meminfo was copied a moment before the module was read.
    assert abs(k_snap.host.mem_used_kb - p_snap.host.mem_used_kb) < 2048
    assert k_snap.host.ncpu == p_snap.host.ncpu

    def containers(snapshot):
        return {
            c.id: (sorted(set(c.pids) & pids), c.name)
            for c in snapshot.containers
            if set(c.pids) & pids
        }

    assert containers(k_snap) == containers(p_snap)
    assert len(containers(p_snap)) >= 3

    k_procs = {p.pid: p for p in k_snap.processes if p.pid in pids}
    for p in p_snap.processes:
        k = k_procs[p.pid]
        assert (k.rss_kb, k.mem_percent, k.container_id) == (
            p.rss_kb,
            p.mem_percent,
            p.container_id,
        )


def test_the_weird_names_survive_both_readers():
    kernel, procfs = readings("cgroup-v2")
    k = {p.pid: p for p in kernel.processes}[171]
    p = {p.pid: p for p in procfs.processes}[171]
    assert '"' in k.cmdline and "\\" in k.cmdline and "\n" in k.cmdline
    assert k.cmdline == p.cmdline
    assert k.name == p.name


def test_facts_command_prints_the_kernel_snapshot(tmp_path):
    import json
    import subprocess
    import sys

    base = FIXTURES / "cgroup-v2"
    config = tmp_path / "config.yaml"
    config.write_text(
        "facts:\n"
        f"  procs_file: {base / 'rulectl_procs.json'}\n"
        f"  containers_file: {base / 'rulectl_containers.json'}\n"
    )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "rulectl",
            "facts",
            "--source",
            "kernel",
            "--format",
            "json",
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    module = json.loads((base / "rulectl_procs.json").read_text())
    assert doc["version"] == 1 and doc["source"] == "kernel"
    assert doc["host"]["mem_total_kb"] == module["mem_total_kb"]
    assert [p["pid"] for p in doc["processes"]] == [
        p["pid"] for p in module["processes"]
    ]
    weird = next(p for p in doc["processes"] if p["pid"] == 171)
    assert weird["container_id"] == (
        "01911ddb310ec78b4e7f2330b15233e75e832ed75cafbbc99451ff84c10f7fb5"
    )
    assert weird["cpu_percent"] is not None  # two readings a second apart
