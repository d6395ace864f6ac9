"""python3 -m bench: every comparison of bench/README.md in one run.

Sets up what each row needs (sleeping processes, a private Docker engine
with real containers, the kernel-module VM), runs rulectl and its peer in
the same run, prints a Markdown table of medians and ratios, and writes the
same rows to a JSON file. `--only` picks rows; the other options scale them.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path

from bench.common import Row, table, write_json

ROWS = ("procs", "containers", "kernel", "engine", "store", "memory", "daemon")


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python3 -m bench", description=__doc__)
    p.add_argument("--only", default=",".join(ROWS), help=f"rows, of {ROWS}")
    p.add_argument("--repeat", type=int, default=7, help="timed runs per side")
    p.add_argument("--procs", default="1000,5000,10000", help="process counts")
    p.add_argument("--containers", default="20,50", help="container counts")
    p.add_argument(
        "--stats-repeat",
        type=int,
        default=1,
        help="runs of the stats peers (~1 s/container)",
    )
    p.add_argument("--kernel-procs", type=int, default=5000)
    p.add_argument("--engine-containers", type=int, default=500)
    p.add_argument("--rules", type=int, default=20, help="rules in the engine row")
    p.add_argument("--store-containers", type=int, default=500)
    p.add_argument("--store-procs", type=int, default=5000)
    p.add_argument("--memory-ticks", type=int, default=10_000)
    p.add_argument("--daemon-containers", type=int, default=50)
    p.add_argument("--daemon-s", type=float, default=120.0, help="daemon row length")
    p.add_argument("--interval-s", type=float, default=20.0, help="daemon tick")
    p.add_argument(
        "--json", type=Path, default=Path("bench/results.json"), help="output file"
    )
    return p.parse_args(argv)


def not_measured(what: str, target: str, why: str) -> Row:
    return Row(what, "—", "—", "—", target, met=None, notes=f"not measured: {why}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    only = [r for r in args.only.split(",") if r]
    unknown = set(only) - set(ROWS)
    if unknown:
        print(f"unknown rows: {sorted(unknown)}; known: {ROWS}", file=sys.stderr)
        return 2
    label = uuid.uuid4().hex[:10]
    rows: list[Row] = []
    started = time.time()

    def step(name: str, what: str, target: str, fn) -> None:
        if name not in only:
            return
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        try:
            rows.extend(fn())
        except Exception as exc:  # noqa: BLE001 - one row failing is reported
            traceback.print_exc()
            rows.append(not_measured(what, target, f"{type(exc).__name__}: {exc}"))
        print(f"bench: {name} took {time.monotonic() - t0:.0f} s", file=sys.stderr)

    with tempfile.TemporaryDirectory(prefix="rulectl-bench-") as tmp:
        workdir = Path(tmp)
        from bench import containers, daemon, engine, kernel, procs, store

        step(
            "procs",
            "one userspace snapshot",
            "≥ 4× faster",
            lambda: procs.run(_ints(args.procs), args.repeat, workdir),
        )
        step(
            "containers",
            "container CPU and memory",
            "≥ 50× / ≥ 5× faster",
            lambda: containers.run(
                _ints(args.containers), args.repeat, args.stats_repeat, label
            ),
        )
        step(
            "kernel",
            "one kernel-module snapshot",
            "≥ 10× faster",
            lambda: kernel.run(args.kernel_procs, args.repeat, workdir),
        )
        step(
            "engine",
            "one tick's decisions",
            "within 3× of the floor; under 50 ms",
            lambda: engine.run_decisions(
                args.engine_containers, args.rules, args.repeat
            ),
        )
        step(
            "store",
            "one tick stored",
            "within 2× of the floor",
            lambda: store.run(
                args.store_containers, args.store_procs, args.repeat, workdir
            ),
        )
        step(
            "memory",
            "engine memory",
            "grows by less than 5 MB",
            lambda: engine.run_memory(args.engine_containers, args.memory_ticks),
        )
        step(
            "daemon",
            "daemon CPU and RSS",
            "under 0.5 % of a core; RSS under 100 MB",
            lambda: daemon.run(
                args.daemon_containers, args.daemon_s, args.interval_s, label
            ),
        )

    meta = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "seconds": round(time.time() - started, 1),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "args": {k: str(v) for k, v in vars(args).items()},
        "ratio": "peer_s / rulectl_s: how many times faster rulectl is",
    }
    write_json(args.json, rows, meta)
    print(table(rows))
    print(f"\nwritten to {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
