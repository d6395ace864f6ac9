"""Parsers for the /proc and cgroup files the userspace collector reads.

Each parser takes the text of one file and returns named fields; reading the
files (and deciding what to do when a process vanished) is collect.py's job.

    /proc/PID/stat     name, state, ppid, utime+stime, start time, vsize, rss
    /proc/PID/cmdline  argv, NUL separated
    /proc/PID/cgroup   cgroup membership -> container id
    /proc/meminfo      host RAM
    /proc/stat         host CPU time ("cpu" line)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A container id is the innermost 64-hex component of a cgroup path, once the
# runtime's decoration is stripped: "docker-<id>.scope" (cgroup v2, systemd
# driver), "/docker/<id>" (cgroup v1, cgroupfs driver), "cri-containerd-<id>"
# (kubepods), "crio-<id>", "libpod-<id>".
_CONTAINER_ID = re.compile(
    r"(?:^|[-/])([0-9a-f]{64})(?:\.scope)?$",
)


@dataclass(frozen=True)
class StatFields:
    pid: int
    name: str
    state: str
    ppid: int
    cpu_ticks: int  # utime + stime of all threads, in clock ticks
    start_ticks: int  # start time after boot, in clock ticks
    vsz_bytes: int
    rss_pages: int


def parse_stat(text: str) -> StatFields:
    """Parses /proc/PID/stat.

    The name (field 2) is the command cut to 15 characters by the kernel and
    may hold spaces and parentheses that need not balance, so it ends at the
    *last* ')' of the line, never the first.
    """
    open_paren = text.index("(")
    close_paren = text.rindex(")")
    pid = int(text[:open_paren])
    name = text[open_paren + 1 : close_paren]
    rest = text[close_paren + 2 :].split()
    # rest[0] is field 3 (state); field N is rest[N - 3].
    return StatFields(
        pid=pid,
        name=name,
        state=rest[0],
        ppid=int(rest[1]),
        cpu_ticks=int(rest[11]) + int(rest[12]),
        start_ticks=int(rest[19]),
        vsz_bytes=int(rest[20]),
        rss_pages=int(rest[21]),
    )


def parse_cmdline(raw: bytes) -> str:
    """argv joined by spaces; bytes that are not UTF-8 become U+FFFD."""
    return raw.rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace")


def container_id_from_cgroup(text: str) -> str | None:
    """The container a process belongs to, from its /proc/PID/cgroup.

    Every line is scanned: on hybrid hosts the v1 controllers may name the
    container while the v2 line names only containerd.service.
    """
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        found = container_id_from_path(parts[2])
        if found:
            return found
    return None


def container_id_from_path(cgroup_path: str) -> str | None:
    """The innermost 64-hex component of one cgroup path, if any."""
    for component in reversed(cgroup_path.strip().split("/")):
        match = _CONTAINER_ID.search(component)
        if match:
            return match.group(1)
    return None


def cgroup_path_of(text: str) -> str | None:
    """The cgroup path that holds the process's memory accounting.

    On a hybrid host the memory controller is a v1 hierarchy while the `0::`
    line names only the unified tree (often `/` or containerd.service), so a
    v1 `memory` line wins whenever there is one.
    """
    unified = None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hier_id, controllers, path = parts
        if "memory" in controllers.split(","):
            return path.strip()
        if hier_id == "0" and controllers == "":
            unified = path.strip()
    return unified


@dataclass(frozen=True)
class MemInfo:
    total_kb: int
    free_kb: int
    available_kb: int

    @property
    def used_kb(self) -> int:
        return self.total_kb - self.available_kb


def parse_meminfo(text: str) -> MemInfo:
    """Host RAM. Used is total minus available: page cache is not "used".

    Kernels before 3.14 have no MemAvailable line; there available is
    estimated as free + buffers + cached.
    """
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        fields = rest.split()
        if fields:
            values[key] = int(fields[0])
    total = values.get("MemTotal", 0)
    free = values.get("MemFree", 0)
    available = values.get("MemAvailable")
    if available is None:
        available = free + values.get("Buffers", 0) + values.get("Cached", 0)
    return MemInfo(total_kb=total, free_kb=free, available_kb=min(available, total))


@dataclass(frozen=True)
class CpuTimes:
    total_ticks: int
    busy_ticks: int
    ncpu: int


def parse_proc_stat(text: str) -> CpuTimes:
    """Host CPU time from the aggregate "cpu" line of /proc/stat.

    Fields: user nice system idle iowait irq softirq steal guest guest_nice.
    guest and guest_nice are already counted inside user and nice, so they are
    left out of the total; idle and iowait are the only non-busy time.
    """
    total = busy = 0
    ncpu = 0
    for line in text.splitlines():
        if line.startswith("cpu "):
            ticks = [int(x) for x in line.split()[1:]]
            ticks += [0] * (8 - len(ticks))
            total = sum(ticks[:8])
            busy = total - ticks[3] - ticks[4]
        elif line.startswith("cpu"):
            ncpu += 1
    return CpuTimes(total_ticks=total, busy_ticks=busy, ncpu=max(ncpu, 1))


def parse_cgroup_memory_kb(current_bytes: int, stat_text: str) -> int:
    """A cgroup's working set: usage less the inactive page cache.

    Reclaimable cache is charged to the cgroup but is not memory the
    container holds; `inactive_file` (v2) or `total_inactive_file` (v1) is
    what the kernel would drop first.
    """
    inactive = 0
    for line in stat_text.splitlines():
        key, _, value = line.partition(" ")
        if key in ("inactive_file", "total_inactive_file"):
            inactive = int(value)
            if key == "total_inactive_file":
                break
    return max(current_bytes - inactive, 0) // 1024
