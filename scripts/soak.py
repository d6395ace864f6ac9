"""Soak: the daemon for an hour under the inherited test load, measured.

    python3 scripts/soak.py [--minutes 60] [--interval 20] [--per-minute 10]

It starts a Docker engine of its own (bench/dockerd.py: its own socket, data
directory and network namespace, so nothing else on the host is touched),
runs `rulectl run` against it with the shipped rules, and starts 10 test
containers of random types every minute, as the cron job would. After every
tick it checks that no more than 3 low and 2 high test containers run
(exactly that many once enough were started); every 10 s it samples the
daemon's RSS, open files and CPU time. At the end it stops the daemon with
SIGTERM and prints (and writes to soak-result.json) the figures the README
quotes: ticks expected and stored, count violations, RSS and open files at
start, at the end and at most, average CPU, exit status and stop time.

The high-CPU test containers are capped at a fifth of a core each, so that
a 2-core host stays usable; they are still the busiest containers.
Run as root on a host prepared by scripts/setup-host.sh.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.dockerd import private_dockerd  # noqa: E402
from rulectl import workload  # noqa: E402

HIGH = ("high-cpu", "high-mem")


def proc_figures(pid: int) -> tuple[int, int, float]:
    """RSS in KiB, open file descriptors, CPU seconds (user + system)."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kb = int(
        next(x for x in status.splitlines() if x.startswith("VmRSS")).split()[1]
    )
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    cpu_s = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return rss_kb, fds, cpu_s


def counts(client: docker.DockerClient) -> tuple[int, int]:
    def n(t: str) -> int:
        labels = ["rulectl.managed=true", f"rulectl.type={t}"]
        return len(client.api.containers(filters={"label": labels}))

    return n("low"), n("high-cpu") + n("high-mem")


def stored_ticks(db: Path) -> int:
    try:
        with sqlite3.connect(db) as con:
            return con.execute("select count(*) from host_samples").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--interval", type=float, default=20)
    parser.add_argument("--per-minute", type=int, default=10)
    parser.add_argument("--out", type=Path, default=REPO / "soak-result.json")
    args = parser.parse_args()

    with private_dockerd("soak") as (client, url):
        return soak(args, client, url)


def soak(args: argparse.Namespace, client: docker.DockerClient, url: str) -> int:
    root = Path(tempfile.mkdtemp(prefix="rulectl-soak-", dir="/tmp"))
    cfg = workload.WorkloadConfig(high_mem_mib=64, cpu_limit=0.2)
    workload.ensure_images(client, cfg)

    shutil.copytree(REPO / "rules", root / "rules")
    config = root / "config.yaml"
    config.write_text(
        f"interval_s: {args.interval}\nrules_dir: rules\ndata_dir: state\n"
        f'docker: {{url: "{url}"}}\ncron: {{enabled: false}}\n'
        "facts: {load_modules: false}\nworkload: {high_mem_mib: 64}\n"
    )
    db = root / "state" / "rulectl.db"
    daemon = subprocess.Popen(
        [sys.executable, "-m", "rulectl", "run", "--config", str(config)],
        stdout=open(root / "daemon.log", "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        cwd="/",
        env={**os.environ, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )

    rng = random.Random(1)
    started = time.monotonic()
    end = started + args.minutes * 60
    samples: list[tuple[float, int, int, float]] = []
    violations: list[tuple[int, tuple[int, int]]] = []
    checked_ticks = 0
    exact = 0
    next_spawn = started
    next_sample = started
    try:
        while time.monotonic() < end and daemon.poll() is None:
            now = time.monotonic()
            if now >= next_sample:
                samples.append((now - started, *proc_figures(daemon.pid)))
                next_sample += 10
            ticks = stored_ticks(db)
            fresh_tick = ticks > checked_ticks
            if fresh_tick:
                checked_ticks = ticks
                low, high = counts(client)
                exact += (low, high) == (3, 2)
                if low > 3 or high > 2:
                    violations.append((ticks, (low, high)))
            # New load right after a tick (or before the first), never while
            # a tick may be under way, so that a check sees a settled host.
            if now >= next_spawn and (fresh_tick or ticks == 0):
                workload.spawn(client, cfg, args.per_minute, rng)
                next_spawn = now + 60
            time.sleep(0.5)
        stop_started = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        exit_status = daemon.wait(timeout=60)
        stop_s = time.monotonic() - stop_started
        elapsed_s = stop_started - started
    finally:
        if daemon.poll() is None:
            daemon.kill()

    first, last = samples[1], samples[-1]  # samples[0]: before start-up ended
    result = {
        "minutes": round(elapsed_s / 60, 1),
        "interval_s": args.interval,
        "spawned_per_minute": args.per_minute,
        "ticks_expected": int(elapsed_s // args.interval),
        "ticks_stored": stored_ticks(db),
        "ticks_with_exactly_3_low_and_2_high": exact,
        "count_violations_after_a_tick": violations,
        "rss_kb": {
            "start": first[1],
            "end": last[1],
            "max": max(s[1] for s in samples),
        },
        "open_fds": {
            "start": first[2],
            "end": last[2],
            "max": max(s[2] for s in samples),
        },
        "cpu_percent_of_one_core": round(
            100 * (last[3] - first[3]) / (last[0] - first[0]), 2
        ),
        "exit_status": exit_status,
        "stop_s": round(stop_s, 2),
        "log": str(root / "daemon.log"),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    ok = result["exit_status"] == 0 and not violations
    ok = ok and result["ticks_stored"] >= result["ticks_expected"] - 1
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
