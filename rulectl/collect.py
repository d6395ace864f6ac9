"""Collect: turns raw readings of /proc (or the kernel modules) into a Snapshot.

A reading (`RawSample`) holds cumulative counters; the Collector keeps the
previous reading and turns counter deltas into CPU % over a monotonic clock.
Container names, images and labels come from one Docker list call per tick;
metrics never come from the Docker stats API (it blocks 1-2 s per container).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from rulectl import procfs
from rulectl.model import ContainerFacts, HostFacts, ProcessFacts, Snapshot

log = logging.getLogger(__name__)

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
NS_PER_TICK = 1_000_000_000 // CLOCK_TICKS


@dataclass(frozen=True)
class RawProcess:
    pid: int
    ppid: int
    name: str
    cmdline: str
    state: str
    container_id: str | None
    vsz_kb: int
    rss_kb: int
    cpu_time_ns: int
    start_ticks: int
    cgroup: str | None = None

    @property
    def key(self) -> tuple[int, int]:
        """A reused PID is a new process: key on pid and start time."""
        return (self.pid, self.start_ticks)


@dataclass(frozen=True)
class RawSample:
    """Cumulative readings at one moment, from any source."""

    monotonic_s: float
    wall_s: float
    mem: procfs.MemInfo
    cpu: procfs.CpuTimes
    processes: list[RawProcess]
    source: str


@dataclass(frozen=True)
class ContainerMeta:
    """What Docker knows of a running container (no metrics)."""

    id: str
    name: str
    image: str
    labels: dict[str, str]
    created: float
    status: str = "running"


class ProcfsSource:
    """Reads every process from /proc (or a fixture tree with the same layout).

    A steady-state read opens one file per process, its `stat`. What the
    `cmdline` and `cgroup` files said is kept from the previous read of the
    same process and read again only when the process may have changed them:

    - an exec replaces the command line and, in practice, the cgroup (a
      container runtime moves its init into the container's cgroup before
      exec'ing the payload), and it renames the process; so both files are
      read for a process seen for the first time (pid and start time, a
      reused pid being a new process) and for one whose name changed;
    - a zombie or dying process (state Z or X) has dropped its command line:
      its files are read as they are;
    - a process can also rewrite its command line in place (setproctitle(),
      PostgreSQL's and nginx's titles) or be moved to another cgroup without
      an exec: both files of every process are read again every
      REFRESH_READS reads, a 1/REFRESH_READS share of the processes at each
      read, so such a change shows within REFRESH_READS reads (about 5
      minutes at 20 s a tick). That is the known limit of this cache.

    A process whose `stat` reads byte for byte as last time changed nothing
    this file shows, and its previous RawProcess is returned as it was.
    """

    name = "procfs"

    # Every process's cmdline and cgroup are read again at least this often.
    REFRESH_READS = 16

    def __init__(self, proc_root: str | Path = "/proc") -> None:
        self.proc_root = Path(proc_root)
        # pid -> (stat bytes, the RawProcess made from them) of the last read.
        self._last: dict[int, tuple[bytes, RawProcess]] = {}
        self._reads = 0

    def read(self, clock: Callable[[], float], wall: Callable[[], float]) -> RawSample:
        mem = procfs.parse_meminfo(_read_text(self.proc_root / "meminfo"))
        cpu = procfs.parse_proc_stat(_read_text(self.proc_root / "stat"))
        now_s, wall_s = clock(), wall()
        self._reads += 1
        last, kept = self._last, {}
        root, read_one = str(self.proc_root), self._read
        refresh, every = self._reads % self.REFRESH_READS, self.REFRESH_READS
        processes = []
        for pid in self._pids():
            p = read_one(f"{root}/{pid}/", last.get(pid), pid % every == refresh, kept)
            if p is not None:
                processes.append(p)
        self._last = kept
        return RawSample(now_s, wall_s, mem, cpu, processes, self.name)

    def _pids(self) -> list[int]:
        return [int(d) for d in os.listdir(self.proc_root) if d.isdigit()]

    def read_process(self, pid: int) -> RawProcess | None:
        """One process, or None when it vanished or became unreadable meanwhile.

        Any of its files may disappear between listing /proc and reading them
        (FileNotFoundError, ProcessLookupError on some kernels), or be empty for
        a zombie; such a process is skipped for this tick.
        """
        return self._read(f"{self.proc_root}/{pid}/", None, True, {})

    @staticmethod
    def _read(
        base: str,
        last: tuple[bytes, RawProcess] | None,
        refresh: bool,
        kept: dict[int, tuple[bytes, RawProcess]],
    ) -> RawProcess | None:
        """The process whose files are under `base` ("/proc/PID/").

        `last` is what the previous read of this pid kept; `refresh` asks for
        cmdline and cgroup to be read whatever `last` says. What this read
        learnt goes into `kept`.
        """
        try:
            data = _read_bytes(base + "stat")
            if last is not None and not refresh and last[0] == data:
                kept[last[1].pid] = last
                return last[1]
            stat = procfs.parse_stat(data.decode("utf-8", "replace"))
            before = last[1] if last is not None and not refresh else None
            if (
                before is None
                or before.start_ticks != stat.start_ticks
                or before.name != stat.name
                or stat.state in _EXITED
            ):
                cmdline = procfs.parse_cmdline(_read_bytes(base + "cmdline"))
                cgroup_text = _read_text(base + "cgroup")
                container_id = procfs.container_id_from_cgroup(cgroup_text)
                cgroup = procfs.cgroup_path_of(cgroup_text)
            else:
                cmdline = before.cmdline
                container_id, cgroup = before.container_id, before.cgroup
        except (OSError, ValueError, IndexError):
            return None
        raw = RawProcess(
            stat.pid,
            stat.ppid,
            stat.name,
            cmdline,
            stat.state,
            container_id,
            stat.vsz_bytes // 1024,
            stat.rss_pages * PAGE_KB,
            stat.cpu_ticks * NS_PER_TICK,
            stat.start_ticks,
            cgroup,
        )
        kept[stat.pid] = (data, raw)
        return raw


# A zombie (Z) or dying (X) process: its files are read as they are now.
_EXITED = ("Z", "X")


class SourceError(Exception):
    """A facts source could not give a valid reading this time."""


_KERNEL_PROCESS_FIELDS = {
    "pid": int,
    "ppid": int,
    "name": str,
    "cmdline": str,
    "state": str,
    "vsz_kb": int,
    "rss_kb": int,
    "cpu_time_ns": int,
    "start_time_ticks": int,
}


class KernelSource:
    """Reads the JSON documents of rulectl's kernel modules.

    The system module's file lists every process with host RAM; the container
    module's file lists the processes that belong to containers. Host CPU time
    still comes from /proc/stat (one small read). Anything missing,
    unreadable, truncated or not of the expected shape raises SourceError, so
    the caller can fall back for that tick.
    """

    name = "kernel"

    def __init__(
        self,
        procs_file: str | Path = "/proc/rulectl_procs",
        containers_file: str | Path = "/proc/rulectl_containers",
        proc_root: str | Path = "/proc",
    ) -> None:
        self.procs_file = Path(procs_file)
        self.containers_file = Path(containers_file)
        self.proc_root = Path(proc_root)

    def read(self, clock: Callable[[], float], wall: Callable[[], float]) -> RawSample:
        cpu = procfs.parse_proc_stat(_read_text(self.proc_root / "stat"))
        now_s, wall_s = clock(), wall()
        system = self._load(self.procs_file)
        containers = self._load(self.containers_file)
        try:
            mem = procfs.MemInfo(
                total_kb=int(system["mem_total_kb"]),
                free_kb=int(system["mem_free_kb"]),
                available_kb=int(system["mem_available_kb"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SourceError(f"{self.procs_file}: bad host memory: {exc}") from exc
        member_of = {
            p["pid"]: p.get("container_id")
            for p in self._processes(containers, self.containers_file)
        }
        processes = [
            self._raw(p, member_of) for p in self._processes(system, self.procs_file)
        ]
        return RawSample(now_s, wall_s, mem, cpu, processes, self.name)

    @staticmethod
    def _load(path: Path) -> dict:
        try:
            doc = json.loads(path.read_bytes())
        except OSError as exc:
            raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from exc
        except ValueError as exc:
            raise SourceError(f"{path} is not valid JSON: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("version") != 1:
            raise SourceError(f"{path}: not a version 1 document")
        return doc

    @staticmethod
    def _processes(doc: dict, path: Path) -> list[dict]:
        processes = doc.get("processes")
        if not isinstance(processes, list):
            raise SourceError(f"{path}: no process list")
        for i, p in enumerate(processes):
            for key, kind in _KERNEL_PROCESS_FIELDS.items():
                if not isinstance(p, dict) or not isinstance(p.get(key), kind):
                    raise SourceError(f"{path}: process {i} lacks a valid {key!r}")
        return processes

    @staticmethod
    def _raw(p: dict, member_of: dict[int, str | None]) -> RawProcess:
        container_id = member_of.get(p["pid"]) or p.get("container_id")
        # The module reports the v2 path, or a v1 cpu controller path that is
        # not where memory is accounted: only a v2 path is usable for that.
        cgroup = p.get("cgroup") if p.get("cgroup_hierarchy") == "v2" else None
        return RawProcess(
            pid=p["pid"],
            ppid=p["ppid"],
            name=p["name"],
            cmdline=p["cmdline"],
            state=p["state"],
            container_id=container_id,
            vsz_kb=p["vsz_kb"],
            rss_kb=p["rss_kb"],
            cpu_time_ns=p["cpu_time_ns"],
            start_ticks=p["start_time_ticks"],
            cgroup=cgroup,
        )


class FallbackSource:
    """The kernel modules first; the /proc reader for any tick they fail.

    The log says which source is in use once per change, not once per tick.
    """

    def __init__(self, primary: KernelSource, fallback: ProcfsSource) -> None:
        self.primary = primary
        self.fallback = fallback
        self.current: str | None = None

    @property
    def name(self) -> str:
        return self.current or self.primary.name

    def read(self, clock: Callable[[], float], wall: Callable[[], float]) -> RawSample:
        try:
            sample = self.primary.read(clock, wall)
        except SourceError as exc:
            self._switch(self.fallback.name, f"kernel modules unusable: {exc}")
            return self.fallback.read(clock, wall)
        self._switch(self.primary.name, f"reading {self.primary.procs_file}")
        return sample

    def _switch(self, name: str, why: str) -> None:
        if name != self.current:
            log.info("facts source: %s (%s)", name, why)
            self.current = name


def _read_text(path: Path | str) -> str:
    return _read_bytes(path).decode("utf-8", "replace")


# A read of this size takes the whole of nearly every file read here.
_READ_SIZE = 4096


def _read_bytes(path: Path | str) -> bytes:
    """The whole file, read unbuffered: one open, fstat, read and close.

    A read shorter than asked for is the end: procfs generates stat, cgroup
    and cmdline whole and hands out as much as fits, and a regular file (a
    fixture tree) reads whole. Only a longer file (a long command line) takes
    more reads.
    """
    with open(path, "rb", buffering=0) as f:
        data = f.read(_READ_SIZE)
        if len(data) < _READ_SIZE:
            return data
        return data + f.readall()


def cpu_percent(cpu_delta_ns: int, interval_s: float) -> float | None:
    """CPU % with 100 % = one full core; None when no interval has passed."""
    if interval_s <= 0 or cpu_delta_ns < 0:
        return None
    return 100.0 * cpu_delta_ns / 1e9 / interval_s


@dataclass
class _Previous:
    sample: RawSample
    cpu_ns: dict[tuple[int, int], int] = field(default_factory=dict)
    containers: set[str] = field(default_factory=set)
    # pid -> the reading and the facts made from it, and the RAM they used.
    facts: dict[int, tuple[RawProcess, ProcessFacts]] = field(default_factory=dict)
    mem_total_kb: int = 0


class Collector:
    """Keeps the previous reading and produces Snapshots with rates."""

    def __init__(
        self,
        source: ProcfsSource | KernelSource | FallbackSource,
        list_containers: Callable[[], list[ContainerMeta]] | None = None,
        sys_root: str | Path = "/sys",
        hostname: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.source = source
        self.list_containers = list_containers or (lambda: [])
        self.cgroup_root = Path(sys_root) / "fs" / "cgroup"
        self.hostname = hostname or socket.gethostname()
        self.clock = clock
        self.wall = wall
        self._previous: _Previous | None = None

    def sample(self, raw: RawSample | None = None) -> Snapshot:
        """Reads once (or takes a reading from another source) and rates it."""
        raw = raw or self.source.read(self.clock, self.wall)
        metas = self.list_containers()
        snapshot = self._build(raw, metas, self._previous)
        self._previous = _Previous(
            sample=raw,
            cpu_ns={p.key: p.cpu_time_ns for p in raw.processes},
            containers={c.id for c in snapshot.containers},
            facts={
                p.pid: (p, f)
                for p, f in zip(raw.processes, snapshot.processes, strict=True)
            },
            mem_total_kb=max(raw.mem.total_kb, 1),
        )
        return snapshot

    def _build(
        self, raw: RawSample, metas: list[ContainerMeta], prev: _Previous | None
    ) -> Snapshot:
        interval_s = raw.monotonic_s - prev.sample.monotonic_s if prev else 0.0
        mem_total_kb = max(raw.mem.total_kb, 1)

        processes = self._processes(raw, prev, interval_s, mem_total_kb)
        containers = self._container_facts(raw, processes, metas, prev, mem_total_kb)
        host = HostFacts(
            name=self.hostname,
            ncpu=raw.cpu.ncpu,
            mem_total_kb=raw.mem.total_kb,
            mem_free_kb=raw.mem.free_kb,
            mem_used_kb=raw.mem.used_kb,
            cpu_percent=_host_cpu_percent(raw, prev),
        )
        return Snapshot(raw.wall_s, host, containers, processes, raw.source)

    def _processes(
        self,
        raw: RawSample,
        prev: _Previous | None,
        interval_s: float,
        mem_total_kb: int,
    ) -> list[ProcessFacts]:
        """The facts of every process, rated against the previous reading.

        A source that found a process unchanged hands back the very RawProcess
        of its previous reading (ProcfsSource does, for an unchanged `stat`).
        Its CPU time did not move, so when the previous facts already said
        0 % over a real interval, with the same total RAM, they are still
        exact and are used again instead of being rebuilt.
        """
        same = prev is not None and interval_s > 0 and prev.mem_total_kb == mem_total_kb
        before = prev.facts if same else {}
        facts = self._process_facts
        result = []
        for p in raw.processes:
            old = before.get(p.pid)
            if old is not None and old[0] is p and old[1].cpu_percent == 0.0:
                result.append(old[1])
            else:
                result.append(facts(p, prev, interval_s, mem_total_kb))
        return result

    @staticmethod
    def _process_facts(
        p: RawProcess, prev: _Previous | None, interval_s: float, mem_total_kb: int
    ) -> ProcessFacts:
        before_ns = prev.cpu_ns.get(p.key) if prev else None
        cpu = None
        if before_ns is not None:
            cpu = cpu_percent(p.cpu_time_ns - before_ns, interval_s)
        return ProcessFacts(
            pid=p.pid,
            ppid=p.ppid,
            name=p.name,
            cmdline=p.cmdline,
            state=p.state,
            container_id=p.container_id,
            vsz_kb=p.vsz_kb,
            rss_kb=p.rss_kb,
            mem_percent=100.0 * p.rss_kb / mem_total_kb,
            cpu_percent=cpu,
        )

    def _container_facts(
        self,
        raw: RawSample,
        processes: list[ProcessFacts],
        metas: list[ContainerMeta],
        prev: _Previous | None,
        mem_total_kb: int,
    ) -> list[ContainerFacts]:
        """Sums each container's processes, children included.

        A container seen for the first time has no CPU % yet. Its CPU % is the
        sum over its processes that were also seen in the previous reading; a
        child that started and ended between two readings is not counted, and
        a container none of whose processes was seen before (just restarted)
        has no CPU % either.
        """
        members: dict[str, list[ProcessFacts]] = {}
        for p in processes:
            if p.container_id:
                members.setdefault(p.container_id, []).append(p)

        cgroups = {p.pid: p.cgroup for p in raw.processes if p.container_id}
        known = {m.id: m for m in metas}
        ids = list(known) + [cid for cid in members if cid not in known]
        result = []
        for cid in ids:
            meta = known.get(cid) or ContainerMeta(cid, cid[:12], "", {}, 0.0)
            procs = members.get(cid, [])
            seen_before = prev is not None and cid in prev.containers
            rates = [p.cpu_percent for p in procs if p.cpu_percent is not None]
            rss_kb = sum(p.rss_kb for p in procs)
            result.append(
                ContainerFacts(
                    id=cid,
                    name=meta.name,
                    image=meta.image,
                    labels=dict(meta.labels),
                    created=meta.created,
                    pids=sorted(p.pid for p in procs),
                    cpu_percent=sum(rates) if seen_before and rates else None,
                    mem_rss_kb=rss_kb,
                    mem_percent=100.0 * rss_kb / mem_total_kb,
                    vsz_kb=sum(p.vsz_kb for p in procs),
                    status=meta.status,
                    mem_working_set_kb=self._working_set_kb(procs, cgroups),
                )
            )
        return result

    def _working_set_kb(
        self, procs: list[ProcessFacts], cgroups: dict[int, str | None]
    ) -> int | None:
        for p in procs:
            path = cgroups.get(p.pid)
            if path:
                return read_cgroup_working_set_kb(self.cgroup_root, path)
        return None


def _host_cpu_percent(raw: RawSample, prev: _Previous | None) -> float | None:
    """Host CPU % on the same scale as processes: 100 % per busy core."""
    if prev is None:
        return None
    total = raw.cpu.total_ticks - prev.sample.cpu.total_ticks
    busy = raw.cpu.busy_ticks - prev.sample.cpu.busy_ticks
    if total <= 0 or busy < 0:
        return None
    return 100.0 * raw.cpu.ncpu * busy / total


def read_cgroup_working_set_kb(cgroup_root: Path, cgroup_path: str) -> int | None:
    """A cgroup's memory less inactive page cache, or None if unreadable."""
    base = cgroup_root / cgroup_path.lstrip("/")
    candidates = [
        (base / "memory.current", base / "memory.stat"),
        (
            cgroup_root / "memory" / cgroup_path.lstrip("/") / "memory.usage_in_bytes",
            cgroup_root / "memory" / cgroup_path.lstrip("/") / "memory.stat",
        ),
    ]
    for usage_file, stat_file in candidates:
        try:
            usage = int(_read_text(usage_file).strip())
            return procfs.parse_cgroup_memory_kb(usage, _read_text(stat_file))
        except (OSError, ValueError):
            continue
    return None


def docker_lister(client: object) -> Callable[[], list[ContainerMeta]]:
    """One low-level list call per tick: names, images, labels; no inspect.

    The high-level `containers.list()` inspects each container and fails with
    404 when one disappears mid-list; the plain list call cannot.
    """
    import docker.errors

    failures = 0

    def list_containers() -> list[ContainerMeta]:
        nonlocal failures
        try:
            rows = client.api.containers(filters={"status": "running"})
        except (docker.errors.DockerException, OSError) as exc:
            failures += 1
            if failures == 1 or failures % 30 == 0:
                log.warning(
                    "cannot list containers from Docker (%d times so far): %s; "
                    "deciding without names and labels",
                    failures,
                    exc,
                )
            return []
        if failures:
            log.info("Docker answers again after %d failed list calls", failures)
            failures = 0
        return [_meta_from_row(r) for r in rows]

    return list_containers


def _meta_from_row(row: dict) -> ContainerMeta:
    names: Iterable[str] = row.get("Names") or []
    name = next(iter(names), "").lstrip("/")
    return ContainerMeta(
        id=row["Id"],
        name=name,
        image=row.get("Image", ""),
        labels=dict(row.get("Labels") or {}),
        created=float(row.get("Created", 0)),
        status=row.get("State", "running"),
    )
