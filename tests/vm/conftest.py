"""Boots the kernel-module test VM once per session and loads what it recorded.

tests/vm/build_vm.sh builds the modules against the Debian kernel's headers
and packs them, busybox and rcprobe into an initramfs whose /init is
tests/vm/init.sh. The session fixture `vm` boots that kernel under QEMU (TCG,
no KVM), waits for it to power itself off, and unpacks the results that
init.sh sent through the second serial port. Every test then reads those
results; none of them boots a VM of its own.

A missing QEMU, kernel or header package, a failed build or a VM that does not
finish makes every test that uses `vm` fail, never skip.

Each run keeps its files in .cache/vm/runs/<name>/ (console.log, results/);
.cache/vm/last-run points at the newest. tests/vm/save_fixtures.py copies a
small part of the newest run into tests/vm/fixtures/.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

VM_DIR = Path(__file__).resolve().parent
REPO = VM_DIR.parents[1]
CACHE = Path(os.environ.get("RULECTL_VM_CACHE", REPO / ".cache" / "vm"))

BUILD_TIMEOUT_S = 900  # a fresh machine installs QEMU and the kernel first
BOOT_TIMEOUT_S = 240  # a run takes about 30 s under TCG on 2 cores
RUNS_KEPT = 3
RESULTS_END = b"#end"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "vm: needs the kernel-module VM run (about 40 s, once per session)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks every test that uses the VM, so `-m "not vm"` leaves them out."""
    for item in items:
        if item.path.is_relative_to(VM_DIR) and "vm" in getattr(
            item, "fixturenames", ()
        ):
            item.add_marker(pytest.mark.vm)


@dataclass
class VmRun:
    """What one boot of the test VM left behind, or why there is nothing."""

    run_dir: Path
    error: str | None = None
    build_log: str = ""
    console: str = ""
    boot_s: float = 0.0
    env: dict[str, str] = field(default_factory=dict)
    _snapshots: dict[str, Snapshot] = field(default_factory=dict, repr=False)

    @property
    def results(self) -> Path:
        return self.run_dir / "results"

    def require(self) -> VmRun:
        """Fails the calling test when the VM did not produce results."""
        if self.error is not None:
            pytest.fail(self.error, pytrace=False)
        return self

    def rc(self, step: str) -> int:
        """Exit status of a step that init.sh ran through its run()."""
        return int((self.results / f"{step}.rc").read_text().strip())

    def out(self, step: str) -> str:
        return (self.results / f"{step}.out").read_text(errors="replace")

    @staticmethod
    def parse_json(path: Path) -> dict:
        return strict_json(path)

    def snapshot(self, name: str) -> Snapshot:
        """A capture made by "rcprobe snap" (snapA, snapB or snapC)."""
        if name not in self._snapshots:
            self._snapshots[name] = Snapshot.load(self.results / name)
        return self._snapshots[name]


def _read_env(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line)
    return dict(pairs)


def _build() -> tuple[dict[str, str], str]:
    script = VM_DIR / "build_vm.sh"
    proc = subprocess.run(
        ["bash", str(script)],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        env={**os.environ, "RULECTL_VM_CACHE": str(CACHE)},
    )
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"{script} failed (exit {proc.returncode}):\n{log}")
    return _read_env(CACHE / "vm.env"), log


def qemu_command(env: dict[str, str], results_b64: Path) -> list[str]:
    """The VM: ttyS0 is the console, ttyS1 carries the results to a file."""
    return [
        "qemu-system-x86_64",
        "-accel", "tcg",
        "-m", "512",
        "-smp", "2",
        "-nographic",
        "-no-reboot",
        "-monitor", "none",
        "-kernel", env["KERNEL"],
        "-initrd", env["INITRD"],
        "-append", "console=ttyS0 panic=-1",
        "-serial", "stdio",
        "-serial", f"file:{results_b64}",
    ]  # fmt: skip


def _boot(env: dict[str, str], run_dir: Path) -> tuple[str, float]:
    """Runs the VM to its end; returns the console text and the time taken."""
    if shutil.which("qemu-system-x86_64") is None:
        raise RuntimeError("qemu-system-x86_64 is not installed")
    console_path = run_dir / "console.log"
    results_b64 = run_dir / "results.b64"
    started = time.monotonic()
    with console_path.open("wb") as console:
        try:
            subprocess.run(
                qemu_command(env, results_b64),
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                timeout=BOOT_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            text = console_path.read_text(errors="replace")
            raise RuntimeError(
                f"the VM did not power off within {BOOT_TIMEOUT_S} s; "
                f"console:\n{text[-6000:]}"
            ) from None
    elapsed = time.monotonic() - started
    console_text = console_path.read_text(errors="replace")

    sent = results_b64.read_bytes() if results_b64.exists() else b""
    if RESULTS_END not in sent:
        raise RuntimeError(
            f"the VM stopped before sending its results; console:\n"
            f"{console_text[-6000:]}"
        )
    archive = base64.b64decode(sent.split(RESULTS_END)[0])
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        tar.extractall(run_dir, filter="data")
    return console_text, elapsed


def _new_run_dir() -> Path:
    runs = CACHE / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    for old in sorted(runs.iterdir())[:-RUNS_KEPT]:
        shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=runs))


def _point_last_run(run_dir: Path) -> None:
    link = CACHE / "last-run"
    tmp = CACHE / f".last-run-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(run_dir)
    tmp.replace(link)


@pytest.fixture(scope="session")
def vm() -> VmRun:
    CACHE.mkdir(parents=True, exist_ok=True)
    run = VmRun(run_dir=_new_run_dir())
    try:
        run.env, run.build_log = _build()
        run.console, run.boot_s = _boot(run.env, run.run_dir)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        run.error = f"kernel-module VM run failed: {exc}"
    except (tarfile.TarError, ValueError) as exc:
        run.error = f"the VM's results could not be unpacked: {exc}"
    _point_last_run(run.run_dir)
    return run


# ---- reading a capture made by "rcprobe snap" ---------------------------


@dataclass
class ProcCopy:
    """The files of one /proc/PID directory, as copied inside the VM.

    stat fields (proc(5), numbered from 1): 2 name, 3 state, 4 ppid, 9 flags,
    14 utime, 15 stime (clock ticks), 22 starttime (ticks since boot).
    """

    pid: int
    name: bytes
    state: str
    ppid: int
    flags: int
    utime_ticks: int
    stime_ticks: int
    start_ticks: int
    vm_size_kb: int | None  # None when status has no VmSize (kthread, zombie)
    vm_rss_kb: int | None
    cmdline: bytes | None  # None when the file could not be read
    cgroup: str | None

    @classmethod
    def load(cls, directory: Path) -> ProcCopy:
        stat = (directory / "stat").read_bytes()
        # The name may hold ')' and spaces: it ends at the last ')'.
        open_at, close_at = stat.index(b"("), stat.rindex(b")")
        rest = stat[close_at + 2 :].split()
        status = _read_optional(directory / "status")
        status_kb = _status_kb(status.decode(errors="replace") if status else "")
        cgroup = _read_optional(directory / "cgroup")
        return cls(
            pid=int(stat[:open_at]),
            name=stat[open_at + 1 : close_at],
            state=rest[0].decode(),
            ppid=int(rest[1]),
            flags=int(rest[6]),
            utime_ticks=int(rest[11]),
            stime_ticks=int(rest[12]),
            start_ticks=int(rest[19]),
            vm_size_kb=status_kb.get("VmSize"),
            vm_rss_kb=status_kb.get("VmRSS"),
            cmdline=_read_optional(directory / "cmdline"),
            cgroup=cgroup.decode() if cgroup is not None else None,
        )


def _read_optional(path: Path) -> bytes | None:
    return path.read_bytes() if path.exists() else None


def _status_kb(text: str) -> dict[str, int]:
    found = re.findall(r"^(Vm\w+):\s+(\d+) kB$", text, flags=re.MULTILINE)
    return {key: int(value) for key, value in found}


def read_proc_copy(root: Path) -> dict[int, ProcCopy]:
    return {
        int(d.name): ProcCopy.load(d)
        for d in root.iterdir()
        if d.name.isdigit() and (d / "stat").exists()
    }


def strict_json(path: Path) -> dict:
    """Parses a module's output: strict UTF-8, one JSON object, no NaN."""

    def no_constants(name: str) -> None:
        raise ValueError(f"{path}: {name} is not JSON")

    text = path.read_bytes().decode("utf-8")
    document = json.loads(text, parse_constant=no_constants)
    assert isinstance(document, dict), f"{path} is not a JSON object"
    return document


@dataclass
class Snapshot:
    """One capture: /proc before, both JSON files, /proc after."""

    path: Path
    procs: dict
    containers: dict
    before: dict[int, ProcCopy]
    after: dict[int, ProcCopy]
    meminfo_kb: dict[str, int]
    layout: dict[str, tuple[int, str]]  # role -> (pid, cgroup directory)
    user_hz: int

    @classmethod
    def load(cls, path: Path) -> Snapshot:
        meminfo = (path / "proc" / "meminfo").read_text()
        capture = dict(
            line.split(" ", 1)
            for line in (path / "capture.txt").read_text().splitlines()
        )
        layout = {}
        for line in (path / "layout").read_text().splitlines():
            role, pid, directory = line.split(" ", 2)
            layout[role] = (int(pid), directory)
        return cls(
            path=path,
            procs=strict_json(path / "rulectl_procs.json"),
            containers=strict_json(path / "rulectl_containers.json"),
            before=read_proc_copy(path / "proc"),
            after=read_proc_copy(path / "after") if (path / "after").exists() else {},
            meminfo_kb={
                key: int(value)
                for key, value in re.findall(r"^(\w+):\s+(\d+) kB$", meminfo, re.M)
            },
            layout=layout,
            user_hz=int(capture["user_hz"]),
        )

    def stable_pids(self) -> set[int]:
        """Processes that looked the same before and after the JSON was read."""
        same = set()
        for pid in self.before.keys() & self.after.keys():
            a, b = self.before[pid], self.after[pid]
            if (a.name, a.state, a.vm_rss_kb, a.vm_size_kb, a.cmdline) == (
                b.name,
                b.state,
                b.vm_rss_kb,
                b.vm_size_kb,
                b.cmdline,
            ):
                same.add(pid)
        return same


@pytest.fixture(scope="session")
def load_capture():
    """Snapshot.load, for tests that read committed fixtures instead of a VM run."""
    return Snapshot.load
