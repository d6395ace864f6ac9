"""Daemon row: the whole rulectl daemon over 50 containers, its CPU and RSS.

`rulectl run` is started as a child process against the benchmark's
private engine (bench/dockerd.py) holding `containers` sleeping workload
containers, with a config of its own: 20 s ticks, the shipped rules, the
cron job off, facts from /proc, and dry-run on. Dry-run keeps the 50
containers in place for the whole run (with the shipped rules the first
real tick would remove 45 of them) while every tick still collects,
decides on 45 of them, has the guard check each with Docker, and stores
everything.

CPU is utime + stime from /proc/PID/stat (every thread), read when the
first tick has been logged and again at the end, over the monotonic time in
between: start-up is left out, as it is amortised over a service's life.
RSS is VmRSS from /proc/PID/status, sampled every second; the maximum is
reported.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.common import Row

REPO = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

CONFIG = """\
interval_s: {interval_s}
rules_dir: rules
data_dir: data
dry_run: true
log_file: rulectl.log
facts:
  source: procfs
  load_modules: false
docker:
  url: "{url}"
cron:
  enabled: false
"""


def _cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def run(containers: int, duration_s: float, interval_s: float, label: str) -> list[Row]:
    from bench.dockerd import private_dockerd
    from rulectl import workload

    with private_dockerd(label) as (client, url):
        cfg = workload.WorkloadConfig(types=("low", "high-mem"), high_mem_mib=8)
        workload.ensure_images(client, cfg)
        workload.spawn(client, cfg, containers, extra_labels={"rulectl.bench": label})

        home = Path(f"/tmp/rulectl-bench-daemon-{label}")
        shutil.rmtree(home, ignore_errors=True)
        (home / "data").mkdir(parents=True)
        shutil.copytree(REPO / "rules", home / "rules")
        (home / "config.yaml").write_text(CONFIG.format(interval_s=interval_s, url=url))
        log_path = home / "data" / "rulectl.log"

        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rulectl",
                "run",
                "--config",
                str(home / "config.yaml"),
            ],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        try:
            rss_max = 0
            started = time.monotonic()
            # The first tick comes interval_s after the baseline sample.
            while "dry-run is on: nothing is done" not in _read(log_path):
                if proc.poll() is not None or time.monotonic() - started > 120:
                    raise RuntimeError(
                        f"rulectl did not tick:\n{_read(log_path)[-3000:]}"
                    )
                time.sleep(0.2)
            cpu_from, t_from = _cpu_ticks(proc.pid), time.monotonic()
            while time.monotonic() - t_from < duration_s:
                if proc.poll() is not None:
                    raise RuntimeError(f"rulectl exited:\n{_read(log_path)[-3000:]}")
                rss_max = max(rss_max, _rss_kb(proc.pid))
                time.sleep(1.0)
            cpu_to, t_to = _cpu_ticks(proc.pid), time.monotonic()
            rss_end = _rss_kb(proc.pid)
            rss_max = max(rss_max, rss_end)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(home, ignore_errors=True)

    cpu_s = (cpu_to - cpu_from) / CLOCK_TICKS
    wall_s = t_to - t_from
    cpu_percent = 100.0 * cpu_s / wall_s
    rss_mb = rss_max / 1024
    n_ticks = wall_s / interval_s
    cpu_row = Row(
        what="daemon CPU",
        size=f"{containers} containers, {interval_s:g} s ticks, {wall_s / 60:.1f} min",
        rulectl="rulectl run (dry-run)",
        peer="—",
        target="under 0.5 % of one core on average",
        value=cpu_percent,
        unit="% of a core",
        met=cpu_percent < 0.5,
        runs=1,
        notes=(
            f"{cpu_s:.2f} s of CPU in {wall_s:.0f} s (about {n_ticks:.0f} ticks, "
            f"{1e3 * cpu_s / max(n_ticks, 1):.0f} ms each); start-up left out"
        ),
    )
    rss_row = Row(
        what="daemon RSS",
        size=cpu_row.size,
        rulectl="rulectl run (dry-run)",
        peer="—",
        target="RSS under 100 MB",
        value=rss_mb,
        unit="MB",
        met=rss_mb < 100,
        runs=1,
        notes=f"largest VmRSS sampled each second; {rss_end / 1024:.1f} MB at the end",
    )
    return [cpu_row, rss_row]


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


if __name__ == "__main__":
    import uuid

    for r in run(
        int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), uuid.uuid4().hex[:8]
    ):
        print(r.what, r.value, r.unit, r.notes)
