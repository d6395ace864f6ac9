"""`rulectl status`: a live terminal view of what the rules see and do.

Each refresh takes a snapshot, runs the rules on it without acting (as
dry-run does) and reads the latest decisions from the database: every
container with its type, CPU, memory, its rank within each rule that selects
it and what that rule would do to it, then the last actions taken.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from rulectl.engine import Decider
from rulectl.model import Snapshot
from rulectl.store import Store

LAST_ACTIONS = 10


def render(snapshot: Snapshot, decider: Decider, store: Store | None) -> Group:
    decisions = decider.decide(snapshot)
    wanted = {
        (d.rule, d.container_id): d.action for d in decisions if d.outcome == "pending"
    }
    rules = {r.name: r for r in decider.ruleset.rules}
    places: dict[str, list[str]] = {}
    for ev in decider.events:
        total = ev.rank + ev.keep_position - 1
        verdict = wanted.get((ev.rule, ev.container_id))
        if verdict is None and rules[ev.rule].keep is not None:
            verdict = "keep" if ev.keep_position <= rules[ev.rule].keep else "-"
        places.setdefault(ev.container_id, []).append(
            f"{ev.rule} {ev.rank}/{total}: {verdict or '-'}"
        )

    h = snapshot.host
    title = (
        f"{h.name}: {h.ncpu} CPUs at {_pct(h.cpu_percent)} %, RAM "
        f"{h.mem_used_kb // 1024} of {h.mem_total_kb // 1024} MiB used "
        f"({h.mem_used_percent:.1f} %)"
    )
    containers = Table(title=title, title_justify="left")
    for column in ("CONTAINER", "NAME", "TYPE", "CPU %", "MEM %", "RSS MiB"):
        containers.add_column(column, justify="right" if "%" in column else "left")
    containers.add_column("RULE RANK: VERDICT")
    for cand in sorted(decider.candidates, key=lambda c: c.container.name):
        c = cand.container
        note = "protected" if cand.protected else "\n".join(places.get(c.id, []))
        containers.add_row(
            c.short_id,
            c.name,
            cand.type or "-",
            _pct(c.cpu_percent),
            f"{c.mem_percent:.2f}",
            f"{c.mem_rss_kb / 1024:.1f}",
            note or "no rule selects it",
        )

    actions = Table(title="last actions", title_justify="left")
    for column in ("TIME", "RULE", "ACTION", "CONTAINER", "OUTCOME", "WHY"):
        actions.add_column(column)
    for row in _last_actions(store):
        actions.add_row(
            datetime.fromtimestamp(row["time"]).strftime("%H:%M:%S"),
            row["rule"],
            row["action"],
            row["container_name"],
            row["outcome"],
            row["reason"],
        )
    return Group(containers, actions)


def _last_actions(store: Store | None) -> list[dict]:
    if store is None:
        return []
    table = store.db["decisions"]
    return list(
        table.find(
            table.table.c.outcome != "skipped", order_by="-time", _limit=LAST_ACTIONS
        )
    )


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def run(
    sample: Callable[[], Snapshot],
    decider: Decider,
    store: Store | None,
    interval_s: float,
    once: bool,
    console: Console | None = None,
) -> None:
    console = console or Console()
    if once:
        console.print(render(sample(), decider, store))
        return
    with Live(render(sample(), decider, store), console=console, screen=False) as live:
        while True:
            time.sleep(interval_s)
            live.update(render(sample(), decider, store))
