"""Guard: the last check between a decision and an action.

Each pending decision is looked at again with fresh data from Docker (does
the container still exist, run, and match the rule?) and against the safety
policies (protection, the daemon's own container, minimum age, per-container
cooldown, per-tick and per-minute limits, global dry-run). What it lets through is left
"pending" for `act`; everything else gets its outcome and reason here.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from rulectl.config import GuardConfig
from rulectl.engine import select_one
from rulectl.model import Decision
from rulectl.rules import RuleSet


@dataclass(frozen=True)
class FreshState:
    """What Docker says of a container right now."""

    id: str
    name: str
    image: str
    labels: dict[str, str]
    running: bool
    created: float  # epoch seconds


Inspect = Callable[[str], FreshState | None]


@dataclass
class Guard:
    policy: GuardConfig
    dry_run: bool = False
    own_container_id: str | None = None
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    last_action_s: dict[str, float] = field(default_factory=dict)
    action_times_s: deque[float] = field(default_factory=deque)

    def review(
        self, decisions: list[Decision], ruleset: RuleSet, inspect: Inspect
    ) -> None:
        """Sets the outcome of every decision that must not go ahead."""
        rules = {r.name: r for r in ruleset.rules}
        allowed = 0
        recent = self._actions_in_last_minute()
        for d in decisions:
            if d.outcome != "pending":
                continue
            verdict = self._check(d, ruleset, rules, inspect)
            if verdict is None and d.action != "log":
                verdict = self._limits(allowed, recent)
                if verdict is None:
                    allowed += 1
            if verdict is None and self.dry_run:
                verdict = ("dry-run", "dry-run is on: nothing is done")
            if verdict is not None:
                d.outcome, d.detail = verdict

    def _limits(self, allowed: int, recent: int) -> tuple[str, str] | None:
        if allowed >= self.policy.max_actions_per_tick:
            return (
                "skipped",
                f"per-tick limit of {self.policy.max_actions_per_tick} "
                "actions reached; left for the next tick",
            )
        if recent + allowed >= self.policy.max_actions_per_minute:
            return (
                "skipped",
                f"per-minute limit of {self.policy.max_actions_per_minute} "
                "actions reached; left for a later tick",
            )
        return None

    def _actions_in_last_minute(self) -> int:
        horizon = self.clock() - 60.0
        while self.action_times_s and self.action_times_s[0] < horizon:
            self.action_times_s.popleft()
        return len(self.action_times_s)

    def _check(
        self, d: Decision, ruleset: RuleSet, rules: dict, inspect: Inspect
    ) -> tuple[str, str] | None:
        if self.own_container_id and d.container_id == self.own_container_id:
            return ("skipped", "this is rulectl's own container")
        if d.action == "log":
            return None
        since = self.clock() - self.last_action_s.get(d.container_id, -1e18)
        if since < self.policy.cooldown_s:
            return (
                "skipped",
                f"cooling down: acted on {since:.0f} s ago "
                f"(cooldown {self.policy.cooldown_s:g} s)",
            )

        try:
            fresh = inspect(d.container_id)
        except Exception as exc:  # noqa: BLE001 - unverifiable means hands off
            return ("skipped", f"cannot check the container with Docker: {exc}")
        if fresh is None:
            return ("gone", "the container no longer exists")
        if not fresh.running:
            return ("gone", "the container is no longer running")
        if any(
            m.matches(fresh.name, fresh.image, fresh.labels) for m in ruleset.protect
        ):
            return ("skipped", "the container is protected (checked again just now)")
        if not select_one(
            rules[d.rule], ruleset, fresh.name, fresh.image, fresh.labels
        ):
            return ("skipped", "the container no longer matches the rule's selection")
        age_s = self.wall() - fresh.created
        if age_s < self.policy.min_age_s:
            return (
                "skipped",
                f"too young: {age_s:.0f} s old, minimum {self.policy.min_age_s:g} s",
            )
        return None

    def acted(self, d: Decision) -> None:
        """Counts an action carried out, and starts the container's cooldown.
        A `log` decision did nothing to the container: it counts for neither."""
        if d.action == "log":
            return
        now = self.clock()
        self.last_action_s[d.container_id] = now
        self.action_times_s.append(now)
