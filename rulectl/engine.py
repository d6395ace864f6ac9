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

import fnmatch
import functools
import itertools
import json
import logging
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import durable_rules_engine as dre

from rulectl import expr as expr_mod
from rulectl.model import ContainerFacts, Decision, Snapshot
from rulectl.rules import Matcher as Selection
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


@functools.lru_cache(maxsize=1024)
def _match_fn(m: Selection) -> Callable[[str, str, dict[str, str]], bool]:
    """`m.matches` with its globs compiled once: the same test as
    Matcher.matches (fnmatchcase compiles the same expression, then looks it
    up in a cache on every call, which dominated classify and select)."""
    name = re.compile(fnmatch.translate(m.name)).match if m.name is not None else None
    image = (
        re.compile(fnmatch.translate(m.image)).match if m.image is not None else None
    )
    wanted = m.labels

    def matches(n: str, i: str, labels: dict[str, str]) -> bool:
        if name is not None and name(n) is None:
            return False
        if image is not None and image(i) is None:
            return False
        for k, v in wanted:
            if labels.get(k) != v:
                return False
        return True

    return matches


def container_type(
    ruleset: RuleSet, name: str, image: str, labels: dict[str, str]
) -> str | None:
    """The first type whose matcher fits, or None."""
    return next(
        (t for t, m in ruleset.types if _match_fn(m)(name, image, labels)), None
    )


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
    types = [(t, _match_fn(m)) for t, m in ruleset.types]
    protect = [_match_fn(m) for m in ruleset.protect]
    result = []
    for c in snapshot.containers:
        ctype = next((t for t, m in types if m(c.name, c.image, c.labels)), None)
        protected = any(p(c.name, c.image, c.labels) for p in protect)
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
    types = rule.select.types
    matcher = rule.select.matcher
    chosen = [
        cand
        for cand in candidates
        if not cand.protected and (types is None or cand.type in types)
    ]
    if matcher.name is None and matcher.image is None and not matcher.labels:
        return chosen  # `select: {}` or types only: the matcher takes all
    matches = _match_fn(matcher)
    return [
        cand
        for cand in chosen
        if matches(cand.container.name, cand.container.image, cand.container.labels)
    ]


_DEFAULT_ORDER = (("mem_percent", True), ("cpu_percent", True))


def rank(rule: Rule, selected: list[Candidate]) -> list[Candidate]:
    """Orders a selection so that the first is acted on first.

    `order_by` fields in turn (descending when written with a leading `-`);
    an unknown value (CPU % on first sight) sorts after every known one in
    either direction, so it is never taken for the heaviest. Ties: newest
    first, then container id.
    """
    return sorted(selected, key=_sort_key(rule.order_by or _DEFAULT_ORDER))


def _sort_key(
    order: tuple[tuple[str, bool], ...],
) -> Callable[[Candidate], tuple]:
    def key(cand: Candidate) -> tuple:
        facts, c = cand.facts, cand.container
        return (
            *[
                _UNKNOWN if (v := facts.get(name)) is None else (0, -v if desc else v)
                for name, desc in order
            ],
            -(c.created or 0.0),
            c.id,
        )

    return key


_UNKNOWN = (1, 0.0)  # sorts after every known value, (0, x)


def rule_events(ruleset: RuleSet, candidates: list[Candidate]) -> list[RuleEvent]:
    """Every rule's selection, ranked, as events.

    All candidates are sorted once per distinct `order_by`, and each rule
    selects from that order: filtering a stably sorted list gives what
    sorting the rule's selection would (`rank`), with one sort a tick for
    rules that share an order instead of one per rule.
    """
    by_order: dict[tuple[tuple[str, bool], ...], list[Candidate]] = {}
    events = []
    for rule in ruleset.rules:
        order = rule.order_by or _DEFAULT_ORDER
        in_order = by_order.get(order)
        if in_order is None:
            in_order = by_order[order] = sorted(candidates, key=_sort_key(order))
        ranked = select(rule, in_order)
        total = len(ranked)
        name = rule.name
        events += [
            _event(name, cand.container.id, i + 1, total - i, cand.facts)
            for i, cand in enumerate(ranked)
        ]
    return events


def _event(
    rule: str, container_id: str, rank: int, keep_position: int, facts: dict
) -> RuleEvent:
    """RuleEvent(...) as its __init__ would make it, without the frozen
    dataclass's object.__setattr__ per field: a large host has thousands of
    events a tick, and this was a tenth of the engine's time."""
    ev = object.__new__(RuleEvent)
    ev.__dict__.update(
        rule=rule,
        container_id=container_id,
        rank=rank,
        keep_position=keep_position,
        facts=facts,
    )
    return ev


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
    """The rules compiled to one durable-rules ruleset, driven tick by tick.

    An event carries only what its rule's conditions read: the rule's name,
    the keep position and the fields of its `when`. Its id is
    "<tick>.<index in this tick's events>", which is how a match is traced
    back to its container.
    """

    def __init__(self, ruleset: RuleSet) -> None:
        self.definition = compile_ruleset(ruleset)
        self.name = f"rulectl-{ruleset.fingerprint()}-{next(_ruleset_serial)}"
        self._handle = dre.create_ruleset(self.name, json.dumps(self.definition))
        self._ticks = itertools.count(1)
        self._shapes = {rule.name: _MessageShape(rule) for rule in ruleset.rules}

    def close(self) -> None:
        """Frees the engine's ruleset (the Python Host has no way to do this)."""
        if self._handle is not None:
            dre.delete_ruleset(self._handle)
            self._handle = None

    def match(self, events: list[RuleEvent]) -> set[tuple[str, str]]:
        if not events:
            return set()
        tick = next(self._ticks)
        shapes = self._shapes
        batch = ",".join(
            [shapes[ev.rule].json(f"{tick}.{i}", ev) for i, ev in enumerate(events)]
        )
        hits: set[tuple[str, str]] = set()
        code, state_handle = dre.assert_events(self._handle, f"[{batch}]")
        if code == _OBSERVED:
            raise RuntimeError("durable-rules saw a repeated event id")
        self._drain(state_handle, events, f"{tick}.", hits)
        return hits

    def _drain(
        self,
        state_handle: int,
        events: list[RuleEvent],
        id_prefix: str,
        hits: set[tuple[str, str]],
    ) -> None:
        """Takes every pending action of this tick's session, synchronously.

        With `cap` (see compile_ruleset) an action holds a list of frames,
        every match of one rule at once; a single frame is accepted too.
        """
        result = dre.start_action_for_state(self._handle, state_handle)
        text = result[1] if result else None
        while text:
            for event_id in _fired_ids(text):
                if not event_id.startswith(id_prefix):
                    raise RuntimeError(f"durable-rules fired a stale event {event_id}")
                ev = events[int(event_id[len(id_prefix) :])]
                hits.add((ev.rule, ev.container_id))
            text = dre.complete_and_start_action(self._handle, state_handle)


_SESSION = "rulectl"

# In an action's JSON, the id of a fired event and the frame holding it. As
# keys they appear only unescaped; inside a string value every quote is
# escaped (\"), so neither pattern can match there.
_EVENT_ID = re.compile(r'"id":"([0-9]+\.[0-9]+)"')
_FRAME = '{"m":'


def _fired_ids(text: str) -> list[str]:
    """The ids of the events in one action of durable-rules.

    An action is {"r<i>": [{"m": event}, ...]} (a list under `cap`) or
    {"r<i>": {"m": event}}. The ids are read off the text, which is several
    times cheaper than parsing every event back; when the count of ids and
    of frames differ, the text is parsed after all.
    """
    found = _EVENT_ID.findall(text)
    if len(found) == text.count(_FRAME):
        return found
    ids = []
    for frames in json.loads(text).values():
        for frame in frames if isinstance(frames, list) else [frames]:
            ids.append(frame["m"]["id"])
    return ids


class _MessageShape:
    """One rule's events as JSON text, written directly.

    An event holds the session, its id, the rule's name, the keep position
    when the rule has `keep`, and the known values of the fields its `when`
    reads; an unknown (None) value is left out, which durable-rules holds
    false in every comparison. The text is what json.dumps would write for
    the same object, without building the object first.
    """

    def __init__(self, rule: Rule) -> None:
        self.head = f'{{"sid":{json.dumps(_SESSION)},"rule":{json.dumps(rule.name)}'
        self.keep = rule.keep is not None
        fields = (
            dict.fromkeys(c.field for c in expr_mod.fields_of(rule.when))
            if rule.when is not None
            else {}
        )
        self.fields = [(name, f",{json.dumps(name)}:") for name in fields]

    def json(self, event_id: str, ev: RuleEvent) -> str:
        text = f'{self.head},"id":"{event_id}"'
        if self.keep:
            text += f',"keep_position":{ev.keep_position}'
        if self.fields:
            facts = ev.facts
            for name, key in self.fields:
                value = facts.get(name)
                if value is not None:
                    text += key + _json_value(value)
        return text + "}"


_encode_str = json.encoder.encode_basestring_ascii


def _json_value(value: Any) -> str:
    """A fact's value as json.dumps writes it (ints, finite floats and
    strings directly; anything else through json.dumps)."""
    kind = type(value)
    if kind is float and math.isfinite(value):
        return float.__repr__(value)
    if kind is int:
        return int.__repr__(value)
    if kind is str:
        return _encode_str(value)
    return json.dumps(value)


# Matches of one rule that one action may hold. durable-rules hands each
# action to the host separately; with a cap, every match of a rule in a tick
# comes in one action (one call and one JSON document instead of one per
# container). Far above any tick's events of one rule.
_ACTION_CAP = 1_000_000


def compile_ruleset(ruleset: RuleSet) -> dict[str, Any]:
    """One durable-rules rule per rulectl rule, keyed r0, r1, ..."""
    definition = {}
    for i, rule in enumerate(ruleset.rules):
        tests: list[dict[str, Any]] = [{"rule": rule.name}]
        if rule.keep is not None:
            tests.append({"$gt": {"keep_position": rule.keep}})
        if rule.when is not None:
            tests.append(expr_mod.to_durable(rule.when))
        definition[f"r{i}"] = {"all": [{"m": {"$and": tests}}], "cap": _ACTION_CAP}
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
    # Per rule name, the parts of its reasons that do not change per tick.
    _texts: dict[str, _RuleTexts] = field(default_factory=dict, init=False, repr=False)

    def decide(self, snapshot: Snapshot) -> list[Decision]:
        candidates = classify(snapshot, self.ruleset)
        events = rule_events(self.ruleset, candidates)
        hits = self.matcher.match(events)
        self._update_streaks(hits)
        self.candidates, self.events = candidates, events

        by_key = {(ev.rule, ev.container_id): ev for ev in events}
        hits_of: dict[str, list[RuleEvent]] = {}
        for hit in hits:
            hits_of.setdefault(hit[0], []).append(by_key[hit])
        names = {c.container.id: c.container.name for c in candidates}
        # One record of facts per container, copied into each of its decisions.
        records: dict[int, dict[str, Any]] = {}
        decisions: list[Decision] = []
        claimed: dict[str, str] = {}  # container id -> the rule that took it
        streaks = self.streaks
        for rule in self.ruleset.rules:
            ranked = sorted(hits_of.get(rule.name, ()), key=_by_rank)
            texts = self._texts.get(rule.name)
            if texts is None or texts.rule is not rule:
                texts = self._texts[rule.name] = _RuleTexts(rule)
            name, action, reason = rule.name, rule.action, texts.reason
            for ev in ranked:
                cid = ev.container_id
                streak = streaks[(name, cid)]
                decision = Decision(
                    rule=name,
                    action=action,
                    container_id=cid,
                    container_name=names[cid],
                    rank=ev.rank,
                    reason=reason(ev, streak),
                    facts=dict(_record(records, ev.facts)),
                )
                if streak < rule.for_ticks:
                    decision.outcome, decision.held = "skipped", True
                    decision.detail = (
                        f"condition held {streak} of {rule.for_ticks} "
                        "consecutive ticks needed"
                    )
                elif ev.container_id in claimed:
                    decision.outcome, decision.held = "skipped", True
                    decision.detail = (
                        f"already taken by rule {claimed[ev.container_id]} this tick"
                    )
                elif rule.action != "log":  # recording claims nothing
                    claimed[ev.container_id] = rule.name
                decisions.append(decision)
        return decisions

    def _update_streaks(self, hits: set[tuple[str, str]]) -> None:
        self.streaks = {key: self.streaks.get(key, 0) + 1 for key in hits}


def _by_rank(ev: RuleEvent) -> int:
    return ev.rank


class _RuleTexts:
    """A rule's reason, with what is the same in every tick worked out once."""

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.order = (
            ", ".join(("-" if d else "") + n for n, d in rule.order_by) or "default"
        )
        self.fields = (
            [c.field for c in expr_mod.fields_of(rule.when)]
            if rule.when is not None
            else []
        )

    def reason(self, ev: RuleEvent, streak: int) -> str:
        """Why the rule matched `ev`; `streak` is its `for:` count so far."""
        rule = self.rule
        parts = []
        if rule.keep is not None:
            total = ev.rank + ev.keep_position - 1
            parts.append(
                f"rank {ev.rank} of {total} by [{self.order}], "
                f"only {rule.keep} {'is' if rule.keep == 1 else 'are'} kept"
            )
        if rule.when is not None:
            facts = ev.facts
            shown = ", ".join([f"{f}={_fmt(facts.get(f))}" for f in self.fields])
            held = f" for {streak} ticks" if rule.for_ticks > 1 else ""
            parts.append(f"`{rule.when_text}` holds{held} ({shown})")
        return "; ".join(parts)


def _fmt(value: Any) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def _record(records: dict[int, dict[str, Any]], facts: dict[str, Any]) -> dict:
    """_facts_for_record, once per facts dict (keyed by its id: every dict in
    `records` lives as long as the tick's candidates do)."""
    found = records.get(id(facts))
    if found is None:
        found = records[id(facts)] = _facts_for_record(facts)
    return found


def _facts_for_record(facts: dict[str, Any]) -> dict[str, Any]:
    keep = ("cpu_percent", "mem_percent", "mem_rss_kb", "age_s", "type", "image")
    return {k: facts[k] for k in keep if k in facts}
