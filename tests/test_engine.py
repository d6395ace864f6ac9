"""Rule semantics on hand-built snapshots: ranks, keep, for, protection."""

import textwrap
from pathlib import Path

import pytest

from rulectl.engine import Decider, DurableMatcher, ReferenceMatcher
from rulectl.model import ContainerFacts, HostFacts, Snapshot
from rulectl.rules import load_rules

REPO = Path(__file__).resolve().parent.parent


def container(
    n: int,
    ctype: str | None,
    cpu: float | None,
    mem: float,
    name: str | None = None,
    created: float = 1000.0,
    labels: dict | None = None,
) -> ContainerFacts:
    if labels is None:
        labels = {"rulectl.type": ctype} if ctype else {}
    return ContainerFacts(
        id=f"{n:064x}",
        name=name or f"c{n}",
        image="rulectl/workload",
        labels=labels,
        created=created,
        pids=[100 + n],
        cpu_percent=cpu,
        mem_rss_kb=int(mem * 1000),
        mem_percent=mem,
        vsz_kb=1,
    )


def snapshot(*containers: ContainerFacts) -> Snapshot:
    return Snapshot(
        2000.0, HostFacts("h", 2, 100_000, 50_000, 50_000, 10.0), list(containers), []
    )


def default_decider(matcher=DurableMatcher) -> Decider:
    ruleset = load_rules([REPO / "rules"]).ruleset
    return Decider(ruleset, matcher(ruleset))


def acted(decisions) -> list[tuple[str, str, int]]:
    return [
        (d.rule, d.container_name, d.rank) for d in decisions if d.outcome == "pending"
    ]


@pytest.mark.parametrize("matcher", [DurableMatcher, ReferenceMatcher])
def test_default_rules_keep_three_low_and_two_high_removing_the_heaviest(matcher):
    snap = snapshot(
        container(1, "low", 0.1, 0.5),
        container(2, "low", 0.1, 0.9),
        container(3, "low", 0.2, 0.3),
        container(4, "low", 0.0, 0.7),
        container(5, "low", 0.3, 0.1),
        container(6, "high-cpu", 99.0, 0.1),
        container(7, "high-cpu", 80.0, 0.1),
        container(8, "high-mem", 1.0, 30.0),
        container(9, "high-mem", 1.0, 31.0),
        container(10, None, 50.0, 50.0, name="grafana"),
        container(11, "high-cpu", 100.0, 1.0, name="grafana-2"),
    )
    decisions = default_decider(matcher).decide(snap)
    # low by [-mem, -cpu]: c2 (0.9) and c4 (0.7) go; c1, c3 and c5 stay.
    # high by [-cpu, -mem]: c6 (99) and c7 (80) go; c9 and c8 stay.
    # grafana and grafana-2 are protected by name, whatever their type.
    assert acted(decisions) == [
        ("keep-three-low", "c2", 1),
        ("keep-three-low", "c4", 2),
        ("keep-two-high", "c6", 1),
        ("keep-two-high", "c7", 2),
    ]


def test_ties_break_newest_first_then_by_id():
    snap = snapshot(
        container(1, "low", 0.0, 1.0, created=100.0),
        container(2, "low", 0.0, 1.0, created=300.0),
        container(3, "low", 0.0, 1.0, created=200.0),
        container(5, "low", 0.0, 1.0, created=300.0),
        container(4, "low", 0.0, 1.0, created=50.0),
    )
    assert acted(default_decider().decide(snap)) == [
        ("keep-three-low", "c2", 1),
        ("keep-three-low", "c5", 2),
    ]


def test_unknown_cpu_is_never_ranked_heaviest():
    snap = snapshot(
        container(1, "high-cpu", None, 0.1),  # first sight: CPU % unknown
        container(2, "high-cpu", 90.0, 0.1),
        container(3, "high-cpu", 10.0, 0.1),
    )
    assert acted(default_decider().decide(snap)) == [("keep-two-high", "c2", 1)]


def test_for_needs_consecutive_ticks_and_a_gap_resets_it(tmp_path):
    decider = default_decider()
    hot = snapshot(container(1, None, 50.0, 60.0))
    cool = snapshot(container(1, None, 1.0, 60.0))

    first = decider.decide(hot)
    assert [(d.rule, d.outcome, d.detail) for d in first] == [
        ("runaway-memory", "skipped", "condition held 1 of 2 consecutive ticks needed")
    ]
    assert acted(decider.decide(hot)) == [("runaway-memory", "c1", 1)]
    decider.decide(cool)
    assert acted(decider.decide(hot)) == []
    assert acted(decider.decide(hot)) == [("runaway-memory", "c1", 1)]


def test_a_container_is_acted_on_once_per_tick(tmp_path):
    (tmp_path / "r.yaml").write_text(
        textwrap.dedent("""
        version: 1
        types: {low: {label: {rulectl.type: low}}}
        rules:
          - {name: first, select: {type: low}, keep: 0, action: stop}
          - {name: second, select: {}, when: "mem_percent > 1", action: kill}
    """)
    )
    ruleset = load_rules([tmp_path]).ruleset
    decisions = Decider(ruleset, DurableMatcher(ruleset)).decide(
        snapshot(container(1, "low", 1.0, 5.0))
    )
    assert [(d.rule, d.outcome, d.detail) for d in decisions] == [
        ("first", "pending", ""),
        ("second", "skipped", "already taken by rule first this tick"),
    ]


def test_repeated_identical_ticks_and_unmatched_facts_are_not_errors():
    # Case C11: the same facts in consecutive ticks, and facts that match no
    # rule, must neither raise nor change the answer.
    decider = default_decider()
    quiet = snapshot(container(1, "low", 0.0, 0.1))
    busy = snapshot(*[container(n, "low", 0.0, float(n)) for n in range(1, 6)])
    for _ in range(50):
        assert acted(decider.decide(quiet)) == []
        assert acted(decider.decide(busy)) == [
            ("keep-three-low", "c5", 1),
            ("keep-three-low", "c4", 2),
        ]


def test_reason_explains_rank_and_condition():
    decider = default_decider()
    snap = snapshot(*[container(n, "high-mem", 1.0, 45.0 + n) for n in range(1, 4)])
    decider.decide(snap)
    d = decider.decide(snap)
    by_rule = {(x.rule, x.container_name): x for x in d}
    assert by_rule[("keep-two-high", "c3")].reason == (
        "rank 1 of 3 by [-cpu_percent, -mem_percent], only 2 are kept"
    )
    # c3 was taken by keep-two-high; runaway-memory needs cpu > 5 anyway.
    assert ("runaway-memory", "c3") not in by_rule


def test_a_log_rule_records_without_taking_the_container(tmp_path):
    (tmp_path / "r.yaml").write_text(
        textwrap.dedent("""
        version: 1
        types: {low: {label: {rulectl.type: low}}}
        rules:
          - {name: note, select: {}, when: "mem_percent > 1", action: log}
          - {name: keep-none, select: {type: low}, keep: 0, action: remove}
    """)
    )
    ruleset = load_rules([tmp_path]).ruleset
    decisions = Decider(ruleset, DurableMatcher(ruleset)).decide(
        snapshot(container(1, "low", 1.0, 5.0))
    )
    assert [(d.rule, d.outcome) for d in decisions] == [
        ("note", "pending"),
        ("keep-none", "pending"),
    ]
