"""Timing, result rows and the report: what every comparison in bench/ shares.

A comparison times rulectl and its peer in the same run, alternating the two
so that a burst of load from elsewhere on the machine hits both, and keeps
the median of each. Only the ratio peer/rulectl is meant to be read: absolute
times on a shared 2-core machine are noise.

    Row field     meaning
    rulectl_s     median seconds of rulectl's side (None: not measured)
    peer_s        median seconds of the peer (None: the row has no peer)
    ratio         peer_s / rulectl_s, how many times faster rulectl is; for a
                  row against a floor (the least work that gives the same
                  result) rulectl_s / peer_s, how many times the floor's
                  time rulectl takes: `ratio_means` says which. Rows judged
                  against a limit of their own (memory, daemon) set `value`
    target        the target in words, and `met` whether it was reached
"""

from __future__ import annotations

import gc
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Row:
    what: str
    size: str
    rulectl: str
    peer: str
    target: str
    rulectl_s: float | None = None
    peer_s: float | None = None
    ratio: float | None = None
    ratio_means: str = "times faster than the peer (peer_s / rulectl_s)"
    value: float | None = None  # for rows judged on a number, not a ratio
    unit: str = ""
    met: bool | None = None
    runs: int = 0
    samples: dict[str, list[float]] = field(default_factory=dict)
    notes: str = ""

    def judge_ratio(self, at_least: float) -> None:
        if self.rulectl_s and self.peer_s is not None:
            self.ratio = self.peer_s / self.rulectl_s
            self.met = self.ratio >= at_least

    def judge_floor(self, at_most: float) -> None:
        if self.rulectl_s and self.peer_s:
            self.ratio = self.rulectl_s / self.peer_s
            self.ratio_means = "times the floor's time (rulectl_s / peer_s)"
            self.met = self.ratio <= at_most


def median(values: list[float]) -> float:
    return statistics.median(values)


def time_once(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def compare(
    rulectl: Callable[[], Any],
    peer: Callable[[], Any],
    repeat: int,
    warmup: int = 1,
) -> tuple[list[float], list[float]]:
    """Times both sides `repeat` times, alternating which goes first.

    The garbage collector runs before each timed call and stays enabled
    during it, as it is in the daemon.
    """
    for _ in range(warmup):
        rulectl()
        peer()
    ours: list[float] = []
    theirs: list[float] = []
    for i in range(repeat):
        pair = [(rulectl, ours), (peer, theirs)]
        if i % 2:
            pair.reverse()
        for fn, into in pair:
            gc.collect()
            into.append(time_once(fn))
    return ours, theirs


def fill(row: Row, ours: list[float], theirs: list[float]) -> Row:
    row.samples = {"rulectl_s": ours, "peer_s": theirs}
    row.rulectl_s = median(ours) if ours else None
    row.peer_s = median(theirs) if theirs else None
    row.runs = max(len(ours), len(theirs))
    return row


def fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"


def fmt_ratio(row: Row) -> str:
    if row.ratio is not None and row.ratio_means.startswith("times the floor"):
        return f"{row.ratio:.2f}× the floor"
    if row.ratio is not None:
        return f"{row.ratio:.1f}× faster"
    if row.value is not None:
        return f"{row.value:.3g} {row.unit}".strip()
    return "—"


def fmt_met(row: Row) -> str:
    return {True: "yes", False: "NO", None: "not measured"}[row.met]


HEADER = ("what", "size", "rulectl", "peer", "ratio / value", "target", "met")


def table(rows: list[Row]) -> str:
    """The rows as a Markdown table (readable in a terminal too)."""
    lines = [
        "| " + " | ".join(HEADER) + " |",
        "|" + "|".join("---" for _ in HEADER) + "|",
    ]
    for r in rows:
        cells = (
            r.what,
            r.size,
            f"{r.rulectl}: {fmt_s(r.rulectl_s)}",
            f"{r.peer}: {fmt_s(r.peer_s)}" if r.peer_s is not None else r.peer,
            fmt_ratio(r),
            r.target,
            fmt_met(r),
        )
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"- {r.what} ({r.size}): {r.notes}" for r in rows if r.notes]
    if notes:
        lines += ["", "Notes:", *notes]
    return "\n".join(lines)


def write_json(path: Path, rows: list[Row], meta: dict[str, Any]) -> None:
    doc = {"meta": meta, "rows": [asdict(r) for r in rows]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
