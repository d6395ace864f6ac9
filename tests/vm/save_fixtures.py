"""Copies a small, real part of a kernel-module VM run into tests/vm/fixtures/.

    python3 tests/vm/save_fixtures.py [RUN_DIR]

RUN_DIR defaults to .cache/vm/last-run, the newest run of tests/vm. Each
capture becomes a directory that can serve as the root of a /proc tree:

    fixtures/<name>/proc/<pid>/{stat,status,cmdline,cgroup}
    fixtures/<name>/proc/{meminfo,stat,uptime}
    fixtures/<name>/rulectl_procs.json       the modules' output, whole
    fixtures/<name>/rulectl_containers.json
    fixtures/<name>/layout                   role, pid and cgroup directory
    fixtures/<name>/capture.txt              when each part was read

Only a handful of processes get a /proc copy, and only ones that looked the
same in the copies made before and after the JSON was read.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import CACHE, Snapshot  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CAPTURES = {"snapA": "cgroup-v2", "snapB": "cgroup-v1-cpu"}
ROLES = {
    "snapA": ["docker-v2", "kubepods-v2", "libpod-v2", "nested-v2", "short-v2",
              "weird", "title", "threads"],
    "snapB": ["docker-v1", "kubepods-v1", "docker-v2"],
}  # fmt: skip
PID_FILES = ("stat", "status", "cmdline", "cgroup")
SYSTEM_FILES = ("meminfo", "stat", "uptime")


def chosen_pids(snap: Snapshot, roles: list[str]) -> list[int]:
    """pid 1, kthreadd, a workqueue worker, and the roles with their children."""
    stable = snap.stable_pids()
    pids = {1, 2}
    workers = [
        pid
        for pid in sorted(stable)
        if b"-" in snap.before[pid].name
        and snap.before[pid].name.startswith(b"kworker/")
    ]
    pids.update(workers[:1])
    for role in roles:
        pid, _ = snap.layout[role]
        pids.add(pid)
        pids.update(p for p in stable if snap.before[p].ppid == pid)
    missing = pids - stable
    if missing:
        raise SystemExit(f"{snap.path}: not stable during the capture: {missing}")
    return sorted(pids)


def save(capture: Path, target: Path, roles: list[str]) -> None:
    snap = Snapshot.load(capture)
    if target.exists():
        shutil.rmtree(target)
    (target / "proc").mkdir(parents=True)
    for pid in chosen_pids(snap, roles):
        for name in PID_FILES:
            source = capture / "proc" / str(pid) / name
            (target / "proc" / str(pid)).mkdir(exist_ok=True)
            shutil.copyfile(source, target / "proc" / str(pid) / name)
    for name in SYSTEM_FILES:
        shutil.copyfile(capture / "proc" / name, target / "proc" / name)
    for name in (
        "rulectl_procs.json",
        "rulectl_containers.json",
        "layout",
        "capture.txt",
    ):
        shutil.copyfile(capture / name, target / name)
    saved = sorted(int(p.name) for p in (target / "proc").glob("[0-9]*"))
    print(f"{target}: pids {saved}")


def main() -> None:
    run_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else CACHE / "last-run"
    results = run_dir.resolve() / "results"
    if not results.is_dir():
        raise SystemExit(f"no results in {run_dir}; run pytest tests/vm first")
    for capture, name in CAPTURES.items():
        save(results / capture, FIXTURES / name, ROLES[capture])


if __name__ == "__main__":
    main()
