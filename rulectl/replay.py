"""Replay: re-decides recorded ticks with the rules on disk.

Each stored tick is turned back into a Snapshot (host row and container rows
of that host and tick) and put through a fresh engine in order, so `for: N`
streaks build up as they did. What the engine wanted then (every decision it
did not hold back itself, whatever the guard made of it) is compared with
what it wants now. Processes are not replayed: rules see containers only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from rulectl.engine import Decider, DurableMatcher
from rulectl.model import ContainerFacts, HostFacts, Snapshot
from rulectl.rules import RuleSet
from rulectl.store import Store

Action = tuple[str, str, str, str]  # rule, action, container id, container name


@dataclass(frozen=True)
class TickReplay:
    host: str
    tick: int
    time: float
    recorded: list[Action]
    now: list[Action]

    @property
    def differs(self) -> bool:
        return set(self.recorded) != set(self.now)


def replay(store: Store, ruleset: RuleSet, since_s: float) -> list[TickReplay]:
    db = store.db
    hosts = db["host_samples"]
    rows = list(hosts.find(hosts.table.c.time >= since_s, order_by=["host", "tick"]))
    deciders: dict[str, Decider] = {}
    results = []
    try:
        for row in rows:
            decider = deciders.setdefault(
                row["host"], Decider(ruleset, DurableMatcher(ruleset))
            )
            snapshot = _snapshot(db, row)
            now = [
                (d.rule, d.action, d.container_id, d.container_name)
                for d in decider.decide(snapshot)
                if not d.held
            ]
            results.append(
                TickReplay(
                    row["host"], row["tick"], row["time"], _recorded(db, row), now
                )
            )
    finally:
        for decider in deciders.values():
            decider.matcher.close()
    return results


def _snapshot(db: Any, row: dict) -> Snapshot:
    host = HostFacts(
        name=row["host"],
        ncpu=row["ncpu"],
        mem_total_kb=row["mem_total_kb"],
        mem_free_kb=row["mem_free_kb"],
        mem_used_kb=row["mem_used_kb"],
        cpu_percent=row["cpu_percent"],
    )
    containers = [
        ContainerFacts(
            id=c["container_id"],
            name=c["name"],
            image=c["image"],
            labels=json.loads(c["labels"] or "{}"),
            created=c["created"],
            # Only the count of processes is stored; rules use nothing else.
            pids=list(range(c["n_pids"] or 0)),
            cpu_percent=c["cpu_percent"],
            mem_rss_kb=c["mem_rss_kb"],
            mem_percent=c["mem_percent"],
            vsz_kb=c["vsz_kb"],
            mem_working_set_kb=c["mem_working_set_kb"],
        )
        for c in db["container_samples"].find(
            host=row["host"], tick=row["tick"], order_by="id"
        )
    ]
    return Snapshot(row["time"], host, containers, [], source="replay")


def _recorded(db: Any, row: dict) -> list[Action]:
    table = db["decisions"]
    held = table.table.c.held
    return [
        (d["rule"], d["action"], d["container_id"], d["container_name"])
        for d in table.find(
            sa.or_(held.is_(None), held.is_(False)),
            host=row["host"],
            tick=row["tick"],
            order_by="id",
        )
    ]
