"""Typed data passed between the stages: snapshots in, decisions out.

A Snapshot is what one tick saw (format version 1, see `to_json`/`from_json`);
a Decision is what the rules asked for and what became of it.

Units and definitions, used everywhere in rulectl:

    field          unit     meaning
    cpu_percent    %        change in cumulative CPU time (all threads) over the
                            change of a monotonic clock between two samples;
                            100 % is one full core, so a 4-CPU host tops at
                            400 %. None on the first sight of a process or
                            container: unknown, never 0.
    mem_percent    %        RSS over host total RAM (never VSZ).
    mem_rss_kb     KiB      resident set size; a container's is the sum over all
                            of its processes.
    vsz_kb         KiB      virtual size.
    mem_used_kb    KiB      host total minus available (MemAvailable, or on old
                            kernels free + buffers + cached): page cache is not
                            "used".
    time/created   s        wall-clock epoch seconds (for storage and display;
                            rates always come from the monotonic clock).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

FACTS_VERSION = 1


@dataclass(frozen=True)
class HostFacts:
    name: str
    ncpu: int
    mem_total_kb: int
    mem_free_kb: int
    mem_used_kb: int
    cpu_percent: float | None

    @property
    def mem_used_percent(self) -> float:
        if self.mem_total_kb <= 0:
            return 0.0
        return 100.0 * self.mem_used_kb / self.mem_total_kb


@dataclass(frozen=True)
class ProcessFacts:
    pid: int
    ppid: int
    name: str
    cmdline: str
    state: str
    container_id: str | None
    vsz_kb: int
    rss_kb: int
    mem_percent: float
    cpu_percent: float | None


@dataclass(frozen=True)
class ContainerFacts:
    id: str
    name: str
    image: str
    labels: dict[str, str]
    created: float
    pids: list[int]
    cpu_percent: float | None
    mem_rss_kb: int
    mem_percent: float
    vsz_kb: int
    status: str = "running"
    # The cgroup's memory less inactive page cache, when its files are
    # readable: what `docker stats` calls usage, minus reclaimable cache.
    mem_working_set_kb: int | None = None

    @property
    def short_id(self) -> str:
        return self.id[:12]


@dataclass(frozen=True)
class Snapshot:
    time: float
    host: HostFacts
    containers: list[ContainerFacts]
    processes: list[ProcessFacts]
    source: str = "procfs"

    def container(self, container_id: str) -> ContainerFacts | None:
        for c in self.containers:
            if c.id == container_id:
                return c
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "version": FACTS_VERSION,
            "time": self.time,
            "source": self.source,
            "host": asdict(self.host),
            "containers": [asdict(c) for c in self.containers],
            "processes": [asdict(p) for p in self.processes],
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Snapshot:
        """Reads a facts document; raises FactsError with the offending path."""
        if not isinstance(doc, dict):
            raise FactsError("/", "a facts document is a JSON object")
        if doc.get("version") != FACTS_VERSION:
            raise FactsError("/version", f"expected {FACTS_VERSION}")
        host = _build(HostFacts, doc.get("host"), "/host")
        containers = [
            _build(ContainerFacts, c, f"/containers/{i}")
            for i, c in enumerate(doc.get("containers") or [])
        ]
        seen: set[str] = set()
        for i, c in enumerate(containers):
            if c.id in seen:
                raise FactsError(f"/containers/{i}/id", f"container {c.id} twice")
            seen.add(c.id)
        processes = [
            _build(ProcessFacts, p, f"/processes/{i}")
            for i, p in enumerate(doc.get("processes") or [])
        ]
        return cls(
            time=float(doc.get("time", 0.0)),
            host=host,
            containers=containers,
            processes=processes,
            source=str(doc.get("source", "file")),
        )


class FactsError(ValueError):
    def __init__(self, pointer: str, message: str) -> None:
        super().__init__(f"{pointer}: {message}")
        self.pointer = pointer


# Defaults for fields that a hand-written snapshot may leave out.
_OPTIONAL = {
    HostFacts: {
        "name": "",
        "ncpu": 1,
        "cpu_percent": None,
        "mem_free_kb": 0,
        "mem_used_kb": None,
    },
    ContainerFacts: {
        "name": "",
        "image": "",
        "labels": {},
        "created": 0.0,
        "pids": [],
        "cpu_percent": None,
        "mem_rss_kb": 0,
        "mem_percent": 0.0,
        "vsz_kb": 0,
        "status": "running",
        "mem_working_set_kb": None,
    },
    ProcessFacts: {
        "ppid": 0,
        "name": "",
        "cmdline": "",
        "state": "?",
        "container_id": None,
        "vsz_kb": 0,
        "rss_kb": 0,
        "mem_percent": 0.0,
        "cpu_percent": None,
    },
}


def _build(kind: type, raw: Any, pointer: str) -> Any:
    if not isinstance(raw, dict):
        raise FactsError(pointer, "expected an object")
    hints = get_type_hints(kind)
    values = {}
    for name in kind.__dataclass_fields__:
        if name in raw:
            values[name] = _checked(raw[name], hints[name], f"{pointer}/{name}")
        elif name in _OPTIONAL[kind]:
            default = _OPTIONAL[kind][name]
            values[name] = (
                type(default)() if isinstance(default, list | dict) else default
            )
        else:
            raise FactsError(f"{pointer}/{name}", "required field is missing")
    if kind is HostFacts and values["mem_used_kb"] is None:
        values["mem_used_kb"] = values["mem_total_kb"] - values["mem_free_kb"]
    return kind(**values)


def _checked(value: Any, hint: Any, pointer: str) -> Any:
    """The value if it has the field's type; numbers must be finite."""
    options = get_args(hint) if get_origin(hint) in (UnionType, Union) else (hint,)
    if value is None and type(None) in options:
        return value
    for option in options:
        origin = get_origin(option) or option
        if origin is float and _is_number(value):
            if not math.isfinite(value):
                raise FactsError(pointer, f"expected a finite number, got {value}")
            return float(value)
        if origin is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if origin is str and isinstance(value, str):
            return value
        if origin is dict and isinstance(value, dict):
            if all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
                return dict(value)
            raise FactsError(pointer, "expected strings as keys and values")
        if origin is list and isinstance(value, list):
            if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
                return list(value)
            raise FactsError(pointer, "expected a list of whole numbers")
    names = {
        float: "a number",
        int: "a whole number",
        str: "a string",
        dict: "an object",
        list: "a list",
        type(None): "null",
    }
    wanted = " or ".join(names.get(get_origin(o) or o, str(o)) for o in options)
    raise FactsError(pointer, f"expected {wanted}, got {json.dumps(value)[:40]}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass
class Decision:
    """One thing a rule asked for in one tick, and what became of it.

    outcome: "done", "dry-run", "skipped", "gone" (the container vanished
    before or while acting) or "failed". `held` marks a decision the engine
    itself held back (a `for: N` streak not reached yet, or a container
    already taken by an earlier rule), as opposed to one the guard stopped.
    """

    rule: str
    action: str
    container_id: str
    container_name: str
    rank: int | None
    reason: str
    facts: dict[str, Any] = field(default_factory=dict)
    outcome: str = "pending"
    detail: str = ""
    held: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "action": self.action,
            "container": {"id": self.container_id, "name": self.container_name},
            "rank": self.rank,
            "reason": self.reason,
            "facts": self.facts,
            "outcome": self.outcome,
            "detail": self.detail,
        }
