"""Collector rows: one full userspace snapshot against psutil, 1k to 10k processes.

The processes are N sleeping children of bench/swarm.c, on top of whatever
the host already runs. Both sides are measured in steady state, after a
baseline: rulectl's `Collector.sample()` (which rates CPU against the
previous sample) and a psutil loop that reads the same fields with
`process_iter` and computes memory % (RSS over total RAM) and CPU % (delta
of CPU time over the previous loop's) the same way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench.common import Row, compare, fill

HERE = Path(__file__).resolve().parent
PSUTIL_ATTRS = [
    "pid",
    "ppid",
    "name",
    "cmdline",
    "status",
    "memory_info",
    "cpu_times",
    "create_time",
]


def build_swarm(workdir: Path) -> Path:
    binary = workdir / "swarm"
    if not binary.exists():
        subprocess.run(
            ["gcc", "-O2", "-Wall", "-o", str(binary), str(HERE / "swarm.c")],
            check=True,
        )
    return binary


@contextlib.contextmanager
def swarm(count: int, workdir: Path, timeout_s: float = 60.0) -> Iterator[int]:
    """`count` sleeping processes for the duration of the block; their parent's
    pid is yielded. They are killed and reaped when the block ends."""
    binary = build_swarm(workdir)
    ready = workdir / f"swarm-{count}.ready"
    ready.unlink(missing_ok=True)
    proc = subprocess.Popen([str(binary), str(count), str(ready)])
    try:
        deadline = time.monotonic() + timeout_s
        while not ready.exists() or not ready.read_text().strip():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"swarm of {count} did not start")
            time.sleep(0.05)
        started = int(ready.read_text())
        if started != count:
            raise RuntimeError(f"swarm started {started} of {count} processes")
        yield proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class PsutilSnapshot:
    """What a psutil user writes for the same facts: one pass of process_iter,
    memory % over total RAM, CPU % from the previous pass's CPU times."""

    def __init__(self) -> None:
        import psutil

        self.psutil = psutil
        self.previous: dict[tuple[int, float], float] = {}
        self.previous_t: float | None = None

    def sample(self) -> list[dict]:
        psutil = self.psutil
        total = psutil.virtual_memory().total
        now = time.monotonic()
        interval = now - self.previous_t if self.previous_t is not None else 0.0
        seen: dict[tuple[int, float], float] = {}
        rows = []
        for proc in psutil.process_iter(PSUTIL_ATTRS):
            info = proc.info
            times = info["cpu_times"]
            mem = info["memory_info"]
            if times is None or mem is None:
                continue  # vanished while being read
            cpu_s = times.user + times.system
            key = (info["pid"], info["create_time"])
            seen[key] = cpu_s
            before = self.previous.get(key)
            cpu = (
                100.0 * (cpu_s - before) / interval
                if before is not None and interval > 0
                else None
            )
            info["cpu_percent"] = cpu
            info["mem_percent"] = 100.0 * mem.rss / total
            rows.append(info)
        self.previous, self.previous_t = seen, now
        return rows


def run(sizes: list[int], repeat: int, workdir: Path) -> list[Row]:
    from rulectl.collect import Collector, ProcfsSource

    rows = []
    for count in sizes:
        with swarm(count, workdir):
            collector = Collector(ProcfsSource("/proc"), hostname="bench")
            peer = PsutilSnapshot()
            collector.sample()  # baseline on both sides
            peer.sample()
            n_seen = len(collector.sample().processes)
            ours, theirs = compare(collector.sample, peer.sample, repeat)
        row = Row(
            what="one userspace snapshot",
            size=f"{count} processes (+host: {n_seen} in all)",
            rulectl="Collector.sample()",
            peer="psutil.process_iter",
            target="≥ 4× faster",
        )
        fill(row, ours, theirs).judge_ratio(4.0)
        rows.append(row)
    return rows


if __name__ == "__main__":
    import sys

    with tempfile.TemporaryDirectory() as tmp:
        sizes = [int(x) for x in sys.argv[1:]] or [1000]
        for r in run(sizes, 5, Path(tmp)):
            print(r.size, r.rulectl_s, r.peer_s, r.ratio, os.getpid())
