"""Engine rows: one tick's decisions against the plain-Python floor, and the
engine's memory over many ticks.

Decisions: rulectl's `Decider` with the `DurableMatcher` (classify, rank,
durable-rules, `for:` streaks, reasons) against `bench.floor.Floor`, the
same rules as plain Python filters. Both are fed the same sequence of
snapshots, one per call, and must agree on every decision before they are
timed.

Memory: the RSS of this process after 100 ticks and after `ticks` ticks of
the same engine; durable-rules keeps its state in C, so RSS is the measure.
"""

from __future__ import annotations

import gc
import tempfile
from pathlib import Path

from bench import workloads
from bench.common import Row, compare, fill
from bench.floor import Floor

SEQUENCE = 40  # distinct snapshots cycled through while timing


def load_ruleset(n_rules: int):
    from rulectl.rules import load_rules

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.yaml"
        path.write_text(workloads.rule_file(n_rules))
        result = load_rules([path])
    errors = [f for f in result.findings if f.severity == "error"]
    if errors or result.ruleset is None:
        raise RuntimeError(f"bench rules do not load: {errors}")
    return result.ruleset


def engine_outcomes(decisions) -> list[tuple[str, str, int, bool]]:
    return [(d.rule, d.container_id, d.rank, d.held) for d in decisions]


class _Feed:
    """Calls `decide` on the next snapshot of a fixed cycle."""

    def __init__(self, decide, snapshots) -> None:
        self.decide, self.snapshots, self.i = decide, snapshots, 0

    def __call__(self):
        snap = self.snapshots[self.i % len(self.snapshots)]
        self.i += 1
        return self.decide(snap)


def run_decisions(n_containers: int, n_rules: int, repeat: int) -> list[Row]:
    from rulectl.engine import Decider, DurableMatcher

    ruleset = load_ruleset(n_rules)
    snapshots = [
        workloads.snapshot(n_containers, 0, seed=7, tick=t) for t in range(SEQUENCE)
    ]

    check_engine = Decider(ruleset, DurableMatcher(ruleset))
    check_floor = Floor(ruleset)
    n_decisions = 0
    for snap in snapshots[:10]:
        ours = engine_outcomes(check_engine.decide(snap))
        theirs = check_floor.decide(snap)
        if ours != theirs:
            raise RuntimeError("the floor and the engine disagree; fix the floor")
        n_decisions = max(n_decisions, len(ours))
    check_engine.matcher.close()

    decider = Decider(ruleset, DurableMatcher(ruleset))
    floor = Floor(ruleset)
    ours, theirs = compare(
        _Feed(decider.decide, snapshots), _Feed(floor.decide, snapshots), repeat
    )
    n_events = len(decider.events)
    decider.matcher.close()
    row = Row(
        what="one tick's decisions",
        size=f"{n_containers} containers, {n_rules} rules",
        rulectl="Decider + durable-rules",
        peer="plain Python filters (floor)",
        target="within 3× of the floor; under 50 ms",
        notes=(
            f"{n_events} rule events, up to {n_decisions} decisions a tick; the "
            "floor yields (rule, container, rank, held), rulectl full Decisions "
            "with reasons"
        ),
    )
    fill(row, ours, theirs).judge_floor(3.0)
    if row.met and row.rulectl_s is not None:
        row.met = row.rulectl_s < 0.050
    return [row]


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def run_memory(n_containers: int, ticks: int) -> list[Row]:
    """RSS growth between tick 100 and tick `ticks` of one engine, driven
    the way the daemon drives it (one Decider, the shipped rules)."""
    from rulectl.engine import Decider, DurableMatcher
    from rulectl.rules import load_rules

    repo = Path(__file__).resolve().parent.parent
    ruleset = load_rules([repo / "rules"]).ruleset
    snapshots = [
        workloads.snapshot(n_containers, 0, seed=11, tick=t) for t in range(SEQUENCE)
    ]
    # The shipped rules select by rulectl.type; give the containers one.
    kinds = ("low", "high-cpu", "high-mem")
    for snap in snapshots:
        for i, c in enumerate(snap.containers):
            c.labels["rulectl.type"] = kinds[i % 3]

    decider = Decider(ruleset, DurableMatcher(ruleset))
    at_100 = None
    import time

    started = time.perf_counter()
    for t in range(1, ticks + 1):
        decider.decide(snapshots[t % SEQUENCE])
        if t == 100:
            gc.collect()
            at_100 = rss_kb()
    gc.collect()
    at_end = rss_kb()
    elapsed = time.perf_counter() - started
    decider.matcher.close()
    growth_mb = (at_end - (at_100 or at_end)) / 1024
    row = Row(
        what="engine memory",
        size=f"{ticks} ticks of {n_containers} containers",
        rulectl=f"RSS at tick {ticks}",
        peer="RSS at tick 100",
        target="grows by less than 5 MB",
        value=growth_mb,
        unit="MB",
        met=growth_mb < 5.0,
        runs=1,
        notes=(
            f"RSS {at_100 / 1024:.1f} MB at tick 100, {at_end / 1024:.1f} MB at "
            f"tick {ticks}; {elapsed / ticks * 1e3:.1f} ms a tick, shipped rules"
        ),
    )
    row.rulectl_s = None
    return [row]


if __name__ == "__main__":
    import sys

    for r in run_decisions(500, 20, 7):
        print(r.size, r.rulectl_s, r.peer_s, r.ratio, r.notes)
    if len(sys.argv) > 1:
        for r in run_memory(500, int(sys.argv[1])):
            print(r.size, r.value, r.notes)
