"""The guard: each safety policy stops the action it is meant to stop."""

from pathlib import Path

from rulectl.config import GuardConfig
from rulectl.guard import FreshState, Guard
from rulectl.model import Decision
from rulectl.rules import load_rules

REPO = Path(__file__).resolve().parent.parent
RULESET = load_rules([REPO / "rules"]).ruleset
NOW = 10_000.0


def decision(n: int, rule: str = "keep-three-low", action: str = "remove") -> Decision:
    return Decision(rule, action, f"{n:064x}", f"c{n}", 1, "test")


def fresh(
    n: int,
    ctype: str = "low",
    running: bool = True,
    age_s: float = 600.0,
    name: str | None = None,
    labels: dict | None = None,
) -> FreshState:
    return FreshState(
        f"{n:064x}",
        name or f"c{n}",
        "rulectl/workload:low",
        labels if labels is not None else {"rulectl.type": ctype},
        running,
        NOW - age_s,
    )


def guard(clock=lambda: NOW, **policy) -> Guard:
    options = {"max_actions_per_tick": 25, "cooldown_s": 60, "min_age_s": 0} | policy
    return Guard(GuardConfig(**options), clock=clock, wall=lambda: NOW)


def review(g: Guard, decisions: list[Decision], states: dict[int, FreshState | None]):
    by_id = {f"{n:064x}": s for n, s in states.items()}
    g.review(decisions, RULESET, lambda cid: by_id.get(cid))
    return [(d.outcome, d.detail) for d in decisions]


def test_a_container_that_still_matches_goes_ahead():
    assert review(guard(), [decision(1)], {1: fresh(1)}) == [("pending", "")]


def test_a_vanished_or_stopped_container_is_recorded_as_gone():
    assert review(
        guard(), [decision(1), decision(2)], {1: None, 2: fresh(2, running=False)}
    ) == [
        ("gone", "the container no longer exists"),
        ("gone", "the container is no longer running"),
    ]


def test_relabelled_since_the_decision_is_skipped():
    states = {
        1: fresh(1, ctype="high-cpu"),
        2: fresh(2, labels={"rulectl.type": "low", "rulectl.protect": "true"}),
    }
    assert review(guard(), [decision(1), decision(2)], states) == [
        ("skipped", "the container no longer matches the rule's selection"),
        ("skipped", "the container is protected (checked again just now)"),
    ]


def test_renamed_to_a_protected_name_is_skipped():
    states = {1: fresh(1, name="grafana")}
    assert review(guard(), [decision(1)], states) == [
        ("skipped", "the container is protected (checked again just now)")
    ]


def test_own_container_is_never_acted_on():
    g = guard()
    g.own_container_id = f"{1:064x}"
    assert review(g, [decision(1)], {1: fresh(1)}) == [
        ("skipped", "this is rulectl's own container")
    ]


def test_minimum_age():
    assert review(guard(min_age_s=30), [decision(1)], {1: fresh(1, age_s=10)}) == [
        ("skipped", "too young: 10 s old, minimum 30 s")
    ]


def test_cooldown_after_an_action():
    g = guard(cooldown_s=60)
    g.acted(decision(1))
    assert review(g, [decision(1)], {1: fresh(1)}) == [
        ("skipped", "cooling down: acted on 0 s ago (cooldown 60 s)")
    ]


def test_per_tick_limit_leaves_the_rest_for_the_next_tick():
    decisions = [decision(n) for n in range(1, 5)]
    outcomes = review(
        guard(max_actions_per_tick=2), decisions, {n: fresh(n) for n in range(1, 5)}
    )
    assert (
        outcomes
        == [("pending", "")] * 2
        + [("skipped", "per-tick limit of 2 actions reached; left for the next tick")]
        * 2
    )


def test_global_dry_run_decides_but_does_nothing():
    g = guard()
    g.dry_run = True
    assert review(g, [decision(1)], {1: fresh(1)}) == [
        ("dry-run", "dry-run is on: nothing is done")
    ]


def test_per_minute_limit_counts_actions_of_earlier_ticks():
    now = [NOW]
    g = guard(clock=lambda: now[0], max_actions_per_minute=3)
    first = [decision(n) for n in range(1, 3)]
    assert review(g, first, {1: fresh(1), 2: fresh(2)}) == [("pending", "")] * 2
    for d in first:
        g.acted(d)

    now[0] += 20
    second = [decision(n) for n in range(3, 6)]
    assert (
        review(g, second, {n: fresh(n) for n in range(3, 6)})
        == [("pending", "")]
        + [("skipped", "per-minute limit of 3 actions reached; left for a later tick")]
        * 2
    )

    now[0] += 45  # the first two actions are now more than a minute old
    assert review(g, [decision(6)], {6: fresh(6)}) == [("pending", "")]


def test_log_actions_are_not_limited():
    decisions = [decision(n, action="log") for n in range(1, 4)]
    assert review(guard(max_actions_per_tick=1), decisions, {}) == [("pending", "")] * 3


def test_a_container_docker_cannot_answer_for_is_left_alone():
    def broken(_cid):
        raise ConnectionError("Docker is restarting")

    decisions = [decision(1)]
    guard().review(decisions, RULESET, broken)
    assert [(d.outcome, d.detail) for d in decisions] == [
        ("skipped", "cannot check the container with Docker: Docker is restarting")
    ]


def test_a_logged_container_gets_no_cooldown_and_uses_no_budget():
    g = guard(max_actions_per_minute=1)
    g.acted(decision(1, action="log"))
    assert review(g, [decision(1)], {1: fresh(1)}) == [("pending", "")]
