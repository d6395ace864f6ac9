"""`rulectl test`: unit tests for rules, written in YAML.

A test is a sequence of ticks; each tick gives the containers (a compact form,
or a facts snapshot file) and the actions expected in that tick, in the order
the engine takes them (rules in file order, then rank). Ticks run through one
engine in turn, so `for: N` counts across them.

    version: 1
    rules: ../rules               # relative to this file (default: rules_dir)
    tests:
      - name: the two heaviest of five low containers go
        ticks:
          - containers:
              - {name: low-1, type: low, mem_percent: 0.5, cpu_percent: 0.1}
            expect:
              - {rule: keep-three-low, action: remove, container: low-1}

Compact container fields: name (required), type (sets the label
rulectl.type), labels, image, cpu_percent (null: not known yet),
mem_percent, mem_rss_kb, created (epoch s; default: later in the list is
newer), n_pids.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rulectl.engine import Decider, DurableMatcher
from rulectl.model import ContainerFacts, HostFacts, Snapshot
from rulectl.rules import RuleSet, load_rules
from rulectl.yamlpos import Finding, load

TEST_TIME = 1_700_000_000.0
HOST = HostFacts("test-host", 2, 16_000_000, 8_000_000, 8_000_000, 10.0)


class RuleTestError(Exception):
    def __init__(self, findings: list[Finding]) -> None:
        super().__init__("\n".join(str(f) for f in findings))
        self.findings = findings


@dataclass
class Outcome:
    file: str
    name: str
    failures: list[str]  # one readable block per failing tick

    @property
    def passed(self) -> bool:
        return not self.failures


def run_file(path: Path, rules_override: Path | None = None) -> list[Outcome]:
    doc, findings = load(str(path), path.read_text())
    if findings or doc is None:
        raise RuleTestError(findings)
    spec = doc.value or {}
    if not isinstance(spec, dict) or not isinstance(spec.get("tests"), list):
        raise RuleTestError(
            [Finding(str(path), 1, 1, "T001", "expected a `tests:` list")]
        )

    rules_path = rules_override or (path.parent / spec.get("rules", "../rules"))
    result = load_rules([rules_path])
    if not result.ok:
        raise RuleTestError(result.findings)

    outcomes = []
    for i, test in enumerate(spec["tests"]):
        name = test.get("name", f"test {i + 1}")
        failures = _run_test(result.ruleset, test, path, doc, f"/tests/{i}")
        outcomes.append(Outcome(str(path), name, failures))
    return outcomes


def _run_test(
    ruleset: RuleSet, test: dict, path: Path, doc: Any, pointer: str
) -> list[str]:
    decider = Decider(ruleset, DurableMatcher(ruleset))
    failures = []
    try:
        for t, tick in enumerate(test.get("ticks") or []):
            snapshot = _snapshot(tick, path, t)
            decisions = decider.decide(snapshot)
            got = [
                f"{d.rule}: {d.action} {d.container_name}"
                for d in decisions
                if d.outcome == "pending"
            ]
            want = [
                f"{e['rule']}: {e['action']} {e['container']}"
                for e in tick.get("expect") or []
            ]
            if got != want:
                line, _ = doc.where(f"{pointer}/ticks/{t}")
                failures.append(_diff(t + 1, line, want, got))
    finally:
        decider.matcher.close()
    return failures


def _snapshot(tick: dict, path: Path, index: int) -> Snapshot:
    if "facts" in tick:
        return Snapshot.from_json(json.loads((path.parent / tick["facts"]).read_text()))
    containers = [
        _container(c, position)
        for position, c in enumerate(tick.get("containers") or [])
    ]
    return Snapshot(TEST_TIME + 20 * index, HOST, containers, [])


def _container(c: dict, position: int) -> ContainerFacts:
    labels = dict(c.get("labels") or {})
    if "type" in c:
        labels["rulectl.type"] = c["type"]
    mem_percent = float(c.get("mem_percent", 0.0))
    return ContainerFacts(
        id=hashlib.sha256(c["name"].encode()).hexdigest(),
        name=c["name"],
        image=c.get("image", ""),
        labels=labels,
        created=float(c.get("created", TEST_TIME - 1000 + position)),
        pids=list(range(1, int(c.get("n_pids", 1)) + 1)),
        cpu_percent=c.get("cpu_percent"),
        mem_rss_kb=int(c.get("mem_rss_kb", mem_percent * HOST.mem_total_kb / 100)),
        mem_percent=mem_percent,
        vsz_kb=0,
    )


def _diff(tick: int, line: int, want: list[str], got: list[str]) -> str:
    out = [f"tick {tick} (line {line}): actions differ (- expected, + got)"]
    for item in want:
        out.append(f"  {' ' if item in got else '-'} {item}")
    for item in got:
        if item not in want:
            out.append(f"  + {item}")
    return "\n".join(out)
