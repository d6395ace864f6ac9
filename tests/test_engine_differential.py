"""durable-rules against the plain-Python reference, over many generated ticks.

The rule sets are written as YAML and loaded through the real loader; the
containers change every tick (new ones without CPU %, vanishing ones, ties,
protected names), so the engine sees the shapes it meets on a real host.
"""

import random
import resource
import textwrap
from pathlib import Path

from rulectl.engine import DurableMatcher, ReferenceMatcher, classify, rule_events
from rulectl.model import ContainerFacts, HostFacts, Snapshot
from rulectl.rules import load_rules

TYPES = ["low", "high-cpu", "high-mem", "batch"]
NUMBER_FIELDS = ["cpu_percent", "mem_percent", "mem_rss_kb", "n_pids", "age_s"]


def _comparison(rng: random.Random) -> str:
    if rng.random() < 0.2:
        op = rng.choice(["==", "!="])
        return f'type {op} "{rng.choice(TYPES)}"'
    field = rng.choice(NUMBER_FIELDS)
    op = rng.choice([">", ">=", "<", "<=", "==", "!="])
    value = rng.choice([0, 1, 5, 10, 40, 50.5, 90, 1000])
    return f"{field} {op} {value}"


def _expression(rng: random.Random, depth: int = 0) -> str:
    roll = rng.random()
    if depth > 2 or roll < 0.4:
        return _comparison(rng)
    if roll < 0.55:
        return f"not ({_expression(rng, depth + 1)})"
    joiner = rng.choice(["and", "or"])
    return f"({_expression(rng, depth + 1)}) {joiner} ({_expression(rng, depth + 1)})"


def _rule_file(rng: random.Random, n_rules: int) -> str:
    rules = []
    for i in range(n_rules):
        lines = [f"  - name: r{i}"]
        chosen = rng.sample(TYPES, rng.randint(0, 2))
        lines.append(f"    select: {{type: {chosen}}}" if chosen else "    select: {}")
        has_keep = rng.random() < 0.6
        if has_keep:
            lines.append(f"    keep: {rng.randint(0, 4)}")
            fields = rng.sample(["cpu_percent", "mem_percent", "mem_rss_kb"], 2)
            order = [("-" if rng.random() < 0.7 else "") + f for f in fields]
            lines.append(f"    order_by: [{', '.join(order)}]")
        if not has_keep or rng.random() < 0.4:
            lines.append(f"    when: '{_expression(rng)}'")
        lines.append(f"    action: {rng.choice(['stop', 'kill', 'remove', 'log'])}")
        rules.append("\n".join(lines))
    types = "\n".join(f"  {t}: {{label: {{kind: {t}}}}}" for t in TYPES)
    return (
        "version: 1\ntypes:\n" + types + "\nprotect:\n  - {name: 'grafana*'}\n"
        "rules:\n" + "\n".join(rules) + "\n"
    )


class _Host:
    """A host whose containers come and go between ticks."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.containers: dict[str, ContainerFacts] = {}
        self.serial = 0

    def tick(self, now: float) -> Snapshot:
        rng = self.rng
        for cid in list(self.containers):
            if rng.random() < 0.15:
                del self.containers[cid]
        for _ in range(rng.randint(0, 6)):
            self.serial += 1
            cid = f"{self.serial:064x}"
            name = "grafana" if rng.random() < 0.05 else f"c{self.serial}"
            labels = {"kind": rng.choice(TYPES)} if rng.random() < 0.9 else {}
            self.containers[cid] = self._facts(cid, name, labels, now, first=True)
        for cid, c in list(self.containers.items()):
            self.containers[cid] = self._facts(cid, c.name, c.labels, c.created)
        return Snapshot(
            now,
            HostFacts("h", 2, 1_000_000, 0, 500_000, 50.0),
            list(self.containers.values()),
            [],
        )

    def _facts(self, cid, name, labels, created, first=False) -> ContainerFacts:
        rng = self.rng
        # Coarse values make ties and exact threshold hits common.
        cpu = None if first else rng.choice([0.0, 5.0, 40.0, rng.uniform(0, 200)])
        mem = rng.choice([1.0, 40.0, 50.5, rng.uniform(0, 100)])
        return ContainerFacts(
            id=cid,
            name=name,
            image="img",
            labels=labels,
            created=float(int(created) - int(created) % 3),
            pids=[1] * rng.randint(0, 3),
            cpu_percent=cpu,
            mem_rss_kb=int(mem * 10_000),
            mem_percent=mem,
            vsz_kb=1,
        )


def _rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() // 1024


def test_durable_rules_and_reference_agree_on_ten_thousand_ticks(tmp_path: Path):
    rng = random.Random(20261204)
    ticks_per_ruleset = 1_000
    differences = []
    total_hits = 0
    for round_no in range(10):
        path = tmp_path / f"r{round_no}.yaml"
        path.write_text(_rule_file(rng, rng.randint(3, 20)))
        result = load_rules([path])
        assert result.ok, [str(f) for f in result.findings]
        durable = DurableMatcher(result.ruleset)
        reference = ReferenceMatcher(result.ruleset)
        host = _Host(rng)
        for t in range(ticks_per_ruleset):
            snapshot = host.tick(10_000.0 + t)
            events = rule_events(result.ruleset, classify(snapshot, result.ruleset))
            got, want = durable.match(events), reference.match(events)
            total_hits += len(want)
            if got != want:
                differences.append((round_no, t, sorted(got ^ want)[:3]))
        durable.close()
    assert differences == []
    assert total_hits > 10_000  # the rules really fired, the test is not vacuous


def test_engine_memory_stays_flat_over_ten_thousand_ticks(tmp_path: Path):
    path = tmp_path / "rules.yaml"
    path.write_text(textwrap.dedent(_rule_file(random.Random(7), 20)))
    ruleset = load_rules([path]).ruleset
    durable = DurableMatcher(ruleset)
    host = _Host(random.Random(8))
    snapshots = [host.tick(float(t)) for t in range(50)]
    events = [rule_events(ruleset, classify(s, ruleset)) for s in snapshots]

    for t in range(1_000):
        durable.match(events[t % 50])
    after_warmup_kb = _rss_kb()
    for t in range(10_000):
        durable.match(events[t % 50])
    growth_kb = _rss_kb() - after_warmup_kb

    assert growth_kb < 2_048, f"engine grew by {growth_kb} KiB over 10,000 ticks"
