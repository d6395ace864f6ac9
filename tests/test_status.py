"""`rulectl status --once` on a snapshot: types, ranks, verdicts, actions."""

from pathlib import Path

from rich.console import Console

from rulectl import status
from rulectl.engine import Decider, DurableMatcher
from rulectl.model import Decision, Snapshot
from rulectl.rules import load_rules
from rulectl.store import Store

REPO = Path(__file__).resolve().parent.parent


def test_status_shows_each_container_with_its_rank_and_the_last_actions(tmp_path):
    import json

    snapshot = Snapshot.from_json(
        json.loads((REPO / "tests" / "fixtures" / "snapshot.json").read_text())
    )
    ruleset = load_rules([REPO / "rules"]).ruleset
    store = Store(f"sqlite:///{tmp_path / 'r.db'}", host="node-1")
    done = Decision("keep-three-low", "remove", "ab" * 32, "low-9", 1, "rank 1 of 4")
    done.outcome = "done"
    store.record_tick(1, snapshot, {}, [done], 1733318400.0)

    console = Console(width=160, record=True, color_system=None)
    decider = Decider(ruleset, DurableMatcher(ruleset))
    status.run(lambda: snapshot, decider, store, 1.0, once=True, console=console)
    text = console.export_text()

    rows = {
        line.split("│")[2].strip(): line
        for line in text.splitlines()
        if line.startswith("│") and len(line.split("│")) > 7
    }
    assert "keep-three-low 1/5: remove" in rows["low-2"]
    assert "keep-three-low 3/5: keep" in rows["low-1"]
    assert "keep-two-high 1/4: remove" in rows["cpu-1"]
    assert "protected" in rows["grafana"]
    assert "high-mem" in rows["mem-1"]
    assert "│ low-9 " in text and "│ done " in text
