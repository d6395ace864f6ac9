"""Kernel loader: inserts rulectl's two sensor modules at start-up.

A module is loaded only when it is built (a `.ko` in the module directory),
built for the running kernel (its vermagic names `uname -r`), and not loaded
yet. Anything else is not an error: the daemon says why once and reads /proc
itself. Module and parameter names are fixed by kernel/*.c; the /proc file
names are the modules' `procname` parameter, taken from config.yaml.
"""

from __future__ import annotations

import logging
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MODULES = ("rulectl_procs", "rulectl_containers")


@dataclass(frozen=True)
class LoadResult:
    module: str
    loaded: bool  # True when the module is in the kernel now
    message: str


def load_modules(
    module_dir: Path,
    procnames: dict[str, str],
    sys_root: Path = Path("/sys"),
    release: str | None = None,
) -> list[LoadResult]:
    """Loads each module that can be; returns what became of each."""
    release = release or os.uname().release
    return [
        _load_one(name, module_dir, procnames.get(name), sys_root, release)
        for name in MODULES
    ]


def _load_one(
    name: str, module_dir: Path, procname: str | None, sys_root: Path, release: str
) -> LoadResult:
    if (sys_root / "module" / name).exists():
        return LoadResult(name, True, "already loaded")
    ko = module_dir / f"{name}.ko"
    if not ko.is_file():
        return LoadResult(name, False, f"not built ({ko} is missing; make -C kernel)")
    built_for = vermagic_release(ko)
    if built_for != release:
        return LoadResult(
            name, False, f"built for kernel {built_for}, running {release}"
        )
    # procname is the file's name under /proc, not a path.
    args = ["insmod", str(ko)]
    if procname:
        args.append(f"procname={Path(procname).name}")
    try:
        result = subprocess.run(args, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return LoadResult(name, False, f"insmod failed: {exc}")
    if result.returncode != 0:
        return LoadResult(name, False, f"insmod failed: {result.stderr.strip()}")
    return LoadResult(name, True, f"loaded from {ko}")


def vermagic_release(ko: Path) -> str | None:
    """The kernel release a module was built for, from its .modinfo section."""
    try:
        data = ko.read_bytes()
    except OSError:
        return None
    marker = b"vermagic="
    start = data.find(marker)
    if start < 0:
        return None
    end = data.find(b"\0", start)
    value = data[start + len(marker) : end].decode("ascii", "replace")
    return value.split()[0] if value.split() else None
