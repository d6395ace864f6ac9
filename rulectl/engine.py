"""Engine: from a Snapshot and a RuleSet to the Decisions of one tick.

    classify   each container's type, protection and rule facts
    rank       per rule: the selected containers in `order_by` order
    match      durable-rules evaluates `when` and `keep` on one event per
               (rule, selected container); a plain-Python evaluator of the
               same conditions serves as the reference in tests
    decide     `for: N` streaks, then one action per container, rules in
               file order

How durable-rules is driven, and why: its Python `Host` dispatches actions
from background timers and keeps per-session state forever, which over long
runs loses matches and grows without bound. Here the C engine is called
directly: each tick posts its events in one batch to the same session and
drains every action synchronously before returning, so nothing is left
pending between ticks. Event ids carry the tick number, so the engine never
sees a repeated event; events that match no rule are expected and not an
error. Deleting the session after each tick is not done: with this engine
version, deleting a session in which no event matched crashes the process.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import durable_rules_engine as dre

from rulectl import expr as expr_mod
from rulectl.model import ContainerFacts, Decision, Snapshot
from rulectl.rules import Rule, RuleSet

log = logging.getLogger(__name__)

# Result codes of durable_rules_engine.assert_events.
_OBSERVED = 2


@dataclass(frozen=True)
class Candidate:
    """A container as the rules see it."""

    container: ContainerFacts
    type: str | None
    protected: bool
    facts: dict[str, Any]


@dataclass(frozen=True)
class RuleEvent:
    """One selected container of one rule, ranked."""

    rule: str
    container_id: str
    rank: int  # 1 is acted on first
    keep_position: int  # counted from the kept end: kept iff <= keep
    facts: dict[str, Any]


def container_type(
    ruleset: RuleSet, name: str, image: str, labels: dict[str, str]
) -> str | None:
    """The first type whose matcher fits, or None."""
    return next((t for t, m in ruleset.types if m.matches(name, image, labels)), None)


def select_one(
    rule: Rule, ruleset: RuleSet, name: str, image: str, labels: dict[str, str]
) -> bool:
    """Whether a container with these attributes is in the rule's selection
    (protection aside)."""
    if rule.select.types is not None:
        if container_type(ruleset, name, image, labels) not in rule.select.types:
            return False
    return rule.select.matcher.matches(name, image, labels)


def classify(snapshot: Snapshot, ruleset: RuleSet) -> list[Candidate]:
    host = snapshot.host
    result = []
    for c in snapshot.containers:
        ctype = container_type(ruleset, c.name, c.image, c.labels)
        protected = any(m.matches(c.name, c.image, c.labels) for m in ruleset.protect)
        facts = {
            "cpu_percent": c.cpu_percent,
            "mem_percent": c.mem_percent,
            "mem_rss_kb": c.mem_rss_kb,
            "mem_working_set_kb": c.mem_working_set_kb,
            "vsz_kb": c.vsz_kb,
            "n_pids": len(c.pids),
            "age_s": max(snapshot.time - c.created, 0.0) if c.created else None,
            "created": c.created,
            "host_cpu_percent": host.cpu_percent,
            "host_mem_used_percent": host.mem_used_percent,
            "name": c.name,
            "image": c.image,
            "type": ctype,
        }
        result.append(Candidate(c, ctype, protected, facts))
    return result


def select(rule: Rule, candidates: Iterable[Candidate]) -> list[Candidate]:
    """The rule's selection; protected containers never enter it."""
    chosen = []
    for cand in candidates:
        if cand.protected:
            continue
        if rule.select.types is not None and cand.type not in rule.select.types:
            continue
        c = cand.container
        if rule.select.matcher.matches(c.name, c.image, c.labels):
            chosen.append(cand)
    return chosen


_DEFAULT_ORDER = (("mem_percent", True), ("cpu_percent", True))


def rank(rule: Rule, selected: list[Candidate]) -> list[Candidate]:
    """Orders a selection so that the first is acted on first.

    `order_by` fields in turn (descending when written with a leading `-`);
    an unknown value (CPU % on first sight) sorts after every known one in
    either direction, so it is never taken for the heaviest. Ties: newest
    first, then container id.
    """
    order = rule.order_by or _DEFAULT_ORDER

    def key(cand: Candidate) -> tuple:
        parts: list[Any] = []
        for name, descending in order:
            value = cand.facts.get(name)
            if value is None:
                parts.append((1, 0.0))
            else:
                parts.append((0, -value if descending else value))
        parts.append(-(cand.container.created or 0.0))
        parts.append(cand.container.id)
        return tuple(parts)

    return sorted(selected, key=key)


def rule_events(ruleset: RuleSet, candidates: list[Candidate]) -> list[RuleEvent]:
    events = []
    for rule in ruleset.rules:
        ranked = rank(rule, select(rule, candidates))
        total = len(ranked)
        for i, cand in enumerate(ranked):
            events.append(
                RuleEvent(rule.name, cand.container.id, i + 1, total - i, cand.facts)
            )
    return events


class Matcher(Protocol):
    def match(self, events: list[RuleEvent]) -> set[tuple[str, str]]: ...


class ReferenceMatcher:
    """The rules' conditions in plain Python: the specification of `match`."""

    def __init__(self, ruleset: RuleSet) -> None:
        self.rules = {r.name: r for r in ruleset.rules}

    def match(self, events: list[RuleEvent]) -> set[tuple[str, str]]:
        hits = set()
        for ev in events:
            rule = self.rules[ev.rule]
            if rule.keep is not None and ev.keep_position <= rule.keep:
                continue
            if rule.when is not None and not expr_mod.evaluate(rule.when, ev.facts):
                continue
            hits.add((ev.rule, ev.container_id))
        return hits


_ruleset_serial = itertools.count(1)


class DurableMatcher:
    """The rules compiled to one durable-rules ruleset, driven tick by tick."""

    def __init__(self, ruleset: RuleSet) -> None:
        self.definition = compile_ruleset(ruleset)
        self.name = f"rulectl-{ruleset.fingerprint()}-{next(_ruleset_serial)}"
        self._handle = dre.create_ruleset(self.name, json.dumps(self.definition))
        self._ticks = itertools.count(1)

    def close(self) -> None:
        """Frees the engine's ruleset (the Python Host has no way to do this)."""
        if self._handle is not None:
            dre.delete_ruleset(self._handle)
            self._handle = None

    def match(self, events: list[RuleEvent]) -> set[tuple[str, str]]:
        if not events:
            return set()
        tick = next(self._ticks)
        messages = [_message(tick, i, ev) for i, ev in enumerate(events)]
        hits: set[tuple[str, str]] = set()
        code, state_handle = dre.assert_events(self._handle, json.dumps(messages))
        if code == _OBSERVED:
            raise RuntimeError("durable-rules saw a repeated event id")
        self._drain(state_handle, hits)
        return hits

    def _drain(self, state_handle: int, hits: set[tuple[str, str]]) -> None:
        """Takes every pending action of this tick's session, synchronously."""
        result = dre.start_action_for_state(self._handle, state_handle)
        actions = json.loads(result[1]) if result else None
        while actions:
            for frames in actions.values():
                message = frames["m"]
                hits.add((message["rule"], message["cid"]))
            following = dre.complete_and_start_action(self._handle, state_handle)
            actions = json.loads(following) if following else None


_SESSION = "rulectl"


def _message(tick: int, index: int, ev: RuleEvent) -> dict[str, Any]:
    message = {k: v for k, v in ev.facts.items() if v is not None}
    message.update(
        sid=_SESSION,
        id=f"{tick}.{index}",
        rule=ev.rule,
        cid=ev.container_id,
        keep_position=ev.keep_position,
    )
    return message


def compile_ruleset(ruleset: RuleSet) -> dict[str, Any]:
    """One durable-rules rule per rulectl rule, keyed r0, r1, ..."""
    definition = {}
    for i, rule in enumerate(ruleset.rules):
        tests: list[dict[str, Any]] = [{"rule": rule.name}]
        if rule.keep is not None:
            tests.append({"$gt": {"keep_position": rule.keep}})
        if rule.when is not None:
            tests.append(expr_mod.to_durable(rule.when))
        definition[f"r{i}"] = {"all": [{"m": {"$and": tests}}]}
    return definition


@dataclass
class Decider:
    """Turns matches into Decisions, remembering `for: N` streaks between ticks."""

    ruleset: RuleSet
    matcher: Matcher
    streaks: dict[tuple[str, str], int] = field(default_factory=dict)
    # What the last tick saw, for explanations (dry-run).
    candidates: list[Candidate] = field(default_factory=list)
    events: list[RuleEvent] = field(default_factory=list)

    def decide(self, snapshot: Snapshot) -> list[Decision]:
        candidates = classify(snapshot, self.ruleset)
        events = rule_events(self.ruleset, candidates)
        hits = self.matcher.match(events)
        self._update_streaks(hits)
        self.candidates, self.events = candidates, events

        by_key = {(ev.rule, ev.container_id): ev for ev in events}
        names = {c.container.id: c.container.name for c in candidates}
        decisions: list[Decision] = []
        claimed: set[str] = set()
        for rule in self.ruleset.rules:
            ranked = sorted(
                (by_key[h] for h in hits if h[0] == rule.name), key=lambda e: e.rank
            )
            for ev in ranked:
                streak = self.streaks[(rule.name, ev.container_id)]
                decision = Decision(
                    rule=rule.name,
                    action=rule.action,
                    container_id=ev.container_id,
                    container_name=names[ev.container_id],
                    rank=ev.rank,
                    reason=_reason(rule, ev, self.streaks),
                    facts=_facts_for_record(ev.facts),
                )
                if streak < rule.for_ticks:
                    decision.outcome, decision.held = "skipped", True
                    decision.detail = (
                        f"condition held {streak} of {rule.for_ticks} "
                        "consecutive ticks needed"
                    )
                elif ev.container_id in claimed:
                    decision.outcome, decision.held = "skipped", True
                    decision.detail = "already acted on by an earlier rule this tick"
                else:
                    claimed.add(ev.container_id)
                decisions.append(decision)
        return decisions

    def _update_streaks(self, hits: set[tuple[str, str]]) -> None:
        self.streaks = {key: self.streaks.get(key, 0) + 1 for key in hits}


def _reason(rule: Rule, ev: RuleEvent, streaks: dict) -> str:
    parts = []
    if rule.keep is not None:
        order = ", ".join(("-" if d else "") + n for n, d in rule.order_by) or "default"
        total = ev.rank + ev.keep_position - 1
        parts.append(
            f"rank {ev.rank} of {total} by [{order}], only {rule.keep} are kept"
        )
    if rule.when is not None:
        shown = ", ".join(
            f"{c.field}={_fmt(ev.facts.get(c.field))}"
            for c in expr_mod.fields_of(rule.when)
        )
        held = (
            f" for {streaks[(rule.name, ev.container_id)]} ticks"
            if rule.for_ticks > 1
            else ""
        )
        parts.append(f"`{rule.when_text}` holds{held} ({shown})")
    return "; ".join(parts)


def _fmt(value: Any) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def _facts_for_record(facts: dict[str, Any]) -> dict[str, Any]:
    keep = ("cpu_percent", "mem_percent", "mem_rss_kb", "age_s", "type", "image")
    return {k: facts[k] for k in keep if k in facts}
