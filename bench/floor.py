"""The floor of the engine row: the same rules as plain Python filters.

This is what a user who needs no engine would write: each rule's selection
as a list comprehension, its `when` as a Python expression compiled once, a
sort for the ranks, a slice for `keep`, a dict for `for:` streaks. It yields
(rule, container id, rank, held) in the engine's order, which the benchmark
checks against the engine's decisions before timing either.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from typing import Any

from rulectl import expr as expr_mod
from rulectl.model import Snapshot
from rulectl.rules import Matcher, Rule, RuleSet

_PY_OP = {">": ">", ">=": ">=", "<": "<", "<=": "<=", "==": "==", "!=": "!="}


def _python(e: expr_mod.Expr) -> str:
    """A `when` tree as Python source over a dict `f`; unknown values are
    false, their negations too, as in rulectl."""
    if isinstance(e, expr_mod.And):
        return "(" + " and ".join(_python(i) for i in e.items) + ")"
    if isinstance(e, expr_mod.Or):
        return "(" + " or ".join(_python(i) for i in e.items) + ")"
    value = repr(e.value)
    return f"(f[{e.field!r}] is not None and f[{e.field!r}] {_PY_OP[e.op]} {value})"


def _glob(pattern: str | None) -> Callable[[str], Any] | None:
    return None if pattern is None else re.compile(fnmatch.translate(pattern)).match


def _matcher(m: Matcher) -> Callable[[Any], bool]:
    name, image, labels = _glob(m.name), _glob(m.image), m.labels

    def matches(c: Any) -> bool:
        if name is not None and not name(c.name):
            return False
        if image is not None and not image(c.image):
            return False
        return all(c.labels.get(k) == v for k, v in labels)

    return matches


class _Compiled:
    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.types = set(rule.select.types) if rule.select.types is not None else None
        self.matches = _matcher(rule.select.matcher)
        self.when = (
            eval(f"lambda f: {_python(rule.when)}")  # noqa: S307 - our own source
            if rule.when is not None
            else None
        )
        order = rule.order_by or (("mem_percent", True), ("cpu_percent", True))

        def key(item: tuple[Any, dict]) -> tuple:
            c, f = item
            parts: list[Any] = []
            for field, descending in order:
                v = f[field]
                parts.append((1, 0.0) if v is None else (0, -v if descending else v))
            parts.append(-(c.created or 0.0))
            parts.append(c.id)
            return tuple(parts)

        self.key = key


class Floor:
    def __init__(self, ruleset: RuleSet) -> None:
        self.type_matchers = [(t, _matcher(m)) for t, m in ruleset.types]
        self.protect = [_matcher(m) for m in ruleset.protect]
        self.rules = [_Compiled(r) for r in ruleset.rules]
        self.streaks: dict[tuple[str, str], int] = {}

    def decide(self, snap: Snapshot) -> list[tuple[str, str, int, bool]]:
        host = snap.host
        items = []
        for c in snap.containers:
            ctype = next((t for t, m in self.type_matchers if m(c)), None)
            if any(p(c) for p in self.protect):
                continue
            f = {
                "cpu_percent": c.cpu_percent,
                "mem_percent": c.mem_percent,
                "mem_rss_kb": c.mem_rss_kb,
                "mem_working_set_kb": c.mem_working_set_kb,
                "vsz_kb": c.vsz_kb,
                "n_pids": len(c.pids),
                "age_s": max(snap.time - c.created, 0.0) if c.created else None,
                "host_cpu_percent": host.cpu_percent,
                "host_mem_used_percent": host.mem_used_percent,
                "name": c.name,
                "image": c.image,
                "type": ctype,
            }
            items.append((c, f, ctype))

        hits = []
        for r in self.rules:
            chosen = [
                (c, f)
                for c, f, t in items
                if (r.types is None or t in r.types) and r.matches(c)
            ]
            chosen.sort(key=r.key)
            keep = r.rule.keep
            last = len(chosen) - keep if keep is not None else len(chosen)
            for rank, (c, f) in enumerate(chosen[: max(last, 0)], start=1):
                if r.when is None or r.when(f):
                    hits.append((r.rule, c.id, rank))

        old = self.streaks
        self.streaks = {
            (rule.name, cid): old.get((rule.name, cid), 0) + 1 for rule, cid, _ in hits
        }
        claimed: set[str] = set()
        result = []
        for rule, cid, rank in hits:
            held = self.streaks[(rule.name, cid)] < rule.for_ticks or cid in claimed
            if not held and rule.action != "log":  # recording takes nothing
                claimed.add(cid)
            result.append((rule.name, cid, rank, held))
        return result
