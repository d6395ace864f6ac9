"""Kernel row: one snapshot from rulectl's kernel modules against the
userspace reader's work, with 5k processes, inside the test VM.

The VM is the one tests/vm builds (Debian's kernel under QEMU, TCG, 2 CPUs)
with rulectl's two modules, booted here with an initramfs of our own whose
/init is bench/vm/init.sh. The VM has busybox and no Python, so both sides
are timed by bench/vm/benchprobe.c, a static C program:

    kernel  reads /proc/rulectl_procs and /proc/rulectl_containers whole
    proc    lists /proc and reads every process's stat, cmdline and cgroup
            whole: the files ProcfsSource opens for a process it has not seen

The peer is therefore a C stand-in for the Python userspace reader, not the
reader itself: it is what that reader asks of the kernel, without Python's
own cost, so the ratio understates what the modules save a Python daemon.
Neither side parses here; KernelSource's json.loads is not in this row.
The N processes sit in a Docker-style cgroup, so the containers file lists
all of them too. Timings under TCG are emulated and only their ratio means
anything.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from bench.common import Row, fmt_s

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CACHE = Path(os.environ.get("RULECTL_BENCH_VM_CACHE", REPO / ".cache" / "bench-vm"))
BUILD_TIMEOUT_S = 900
BOOT_TIMEOUT_S = 600


def _env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line)


def build() -> dict[str, str]:
    """The modules and kernel (tests/vm/build_vm.sh, into our own cache, so a
    test run's build is never replaced under it), then our initramfs."""
    CACHE.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["bash", str(REPO / "tests" / "vm" / "build_vm.sh")],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        env={**os.environ, "RULECTL_VM_CACHE": str(CACHE)},
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"build_vm.sh failed:\n{(proc.stdout + proc.stderr)[-3000:]}"
        )
    env = _env(CACHE / "vm.env")

    root = CACHE / "bench-initramfs"
    shutil.rmtree(root, ignore_errors=True)
    for sub in ("bin", "dev", "proc", "sys", "tmp", "lib/rulectl"):
        (root / sub).mkdir(parents=True)
    shutil.copy("/bin/busybox", root / "bin" / "busybox")
    applets = subprocess.run(
        ["/bin/busybox", "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in applets:
        if applet != "busybox":
            (root / "bin" / applet).symlink_to("busybox")
    for name, source in (
        ("benchprobe", HERE / "vm" / "benchprobe.c"),
        ("swarm", HERE / "swarm.c"),
    ):
        subprocess.run(
            [
                "gcc",
                "-static",
                "-O2",
                "-Wall",
                "-Wextra",
                "-o",
                str(root / "bin" / name),
                str(source),
            ],
            check=True,
        )
    for ko in Path(env["MODULES"]).glob("*.ko"):
        shutil.copy(ko, root / "lib" / "rulectl" / ko.name)
    shutil.copy(HERE / "vm" / "init.sh", root / "init")
    (root / "init").chmod(0o755)
    subprocess.run(
        ["mknod", "-m", "600", str(root / "dev" / "console"), "c", "5", "1"], check=True
    )
    image = CACHE / "bench-initramfs.cpio.gz"
    pack = "find . -print0 | cpio --null -o -H newc -R 0:0 --quiet | gzip -1"
    subprocess.run(f"cd {root} && {pack} > {image}", shell=True, check=True)
    env["BENCH_INITRD"] = str(image)
    return env


def boot(env: dict[str, str], procs: int, rounds: int) -> str:
    knobs = f"bench.procs={procs} bench.rounds={rounds}"
    command = [
        "qemu-system-x86_64",
        "-accel", "tcg",
        "-m", "1024",
        "-smp", "2",
        "-nographic",
        "-no-reboot",
        "-monitor", "none",
        "-kernel", env["KERNEL"],
        "-initrd", env["BENCH_INITRD"],
        "-append", f"console=ttyS0 panic=-1 quiet {knobs}",
        "-serial", "stdio",
    ]  # fmt: skip
    proc = subprocess.run(
        command,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=BOOT_TIMEOUT_S,
    )
    return proc.stdout + proc.stderr


def run(procs: int, rounds: int, workdir: Path) -> list[Row]:
    del workdir
    if shutil.which("qemu-system-x86_64") is None:
        raise RuntimeError("qemu-system-x86_64 is not installed")
    t0 = time.monotonic()
    env = build()
    built_s = time.monotonic() - t0
    console = boot(env, procs, rounds)
    lines = [line.split() for line in console.splitlines() if line.startswith("BENCH ")]
    if not any(w[1] == "done" for w in lines):
        raise RuntimeError(f"the VM did not finish; console:\n{console[-3000:]}")
    errors = [" ".join(w) for w in lines if w[1] == "error"]
    if errors:
        raise RuntimeError("; ".join(errors))
    kernel = [int(w[2]) / 1e9 for w in lines if w[1] == "kernel"]
    procs_file = [int(w[5]) / 1e9 for w in lines if w[1] == "kernel"]
    userspace = [int(w[2]) / 1e9 for w in lines if w[1] == "proc"]
    stat_only = [int(w[2]) / 1e9 for w in lines if w[1] == "stat"]
    seen = next((int(w[2]) for w in lines if w[1] == "processes"), 0)
    kernel_bytes = next((int(w[3]) for w in lines if w[1] == "kernel"), 0)
    procs_bytes = next((int(w[6]) for w in lines if w[1] == "kernel"), 0)
    med = statistics.median
    row = Row(
        what="one kernel-module snapshot (in the VM)",
        size=f"{procs} processes (+VM: {seen} in all)",
        rulectl="read both module files (C)",
        peer="C reader of /proc/PID/{stat,cmdline,cgroup}",
        target="≥ 10× faster",
        notes=(
            "peer is a C stand-in for the Python userspace reader (the same "
            "files, no Python cost); QEMU TCG, 2 vCPUs. Kernel side: "
            f"{kernel_bytes} bytes of JSON, of which rulectl_procs "
            f"{procs_bytes} bytes in {fmt_s(med(procs_file))}, "
            f"rulectl_containers the rest; /proc stat files only (what the "
            f"userspace reader opens in steady state): {fmt_s(med(stat_only))}; "
            f"build {built_s:.0f} s"
        ),
    )
    row.samples = {"rulectl_s": kernel, "peer_s": userspace}
    row.rulectl_s = statistics.median(kernel)
    row.peer_s = statistics.median(userspace)
    row.runs = len(kernel)
    row.judge_ratio(10.0)
    return [row]


if __name__ == "__main__":
    for r in run(int(os.environ.get("N", "5000")), 5, Path("/tmp")):
        print(r.size, r.rulectl_s, r.peer_s, r.ratio, r.notes)
