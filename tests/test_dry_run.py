"""`rulectl dry-run --facts`: a hand-written snapshot gives exact actions."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SNAPSHOT = REPO / "tests" / "fixtures" / "snapshot.json"


def dry_run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "rulectl",
            "--config",
            str(REPO / "config.yaml"),
            "dry-run",
            *args,
        ],
        capture_output=True,
        text=True,
        cwd="/",
    )


def test_dry_run_on_a_snapshot_prints_exactly_the_expected_actions():
    out = dry_run("--facts", str(SNAPSHOT), "--format", "json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert [
        (a["rule"], a["action"], a["container"]["name"], a["rank"])
        for a in report["actions"]
    ] == [
        ("keep-three-low", "remove", "low-2", 1),
        ("keep-three-low", "remove", "low-4", 2),
        ("keep-two-high", "remove", "cpu-1", 1),
        ("keep-two-high", "remove", "cpu-2", 2),
    ]
    assert report["actions"][0]["container"]["id"] == "02" * 32
    assert report["actions"][0]["reason"] == (
        "rank 1 of 5 by [-mem_percent, -cpu_percent], only 3 are kept"
    )
    skipped = {s["container"]["name"]: s["reason"] for s in report["skipped"]}
    assert skipped == {
        "busy-app": "condition held 1 of 2 consecutive ticks needed",
        "low-1": "kept by keep-three-low (rank 3 of 5, 3 are kept)",
        "low-3": "kept by keep-three-low (rank 4 of 5, 3 are kept)",
        "low-5": "kept by keep-three-low (rank 5 of 5, 3 are kept)",
        "mem-1": "kept by keep-two-high (rank 3 of 4, 2 are kept)",
        "mem-2": "kept by keep-two-high (rank 4 of 4, 2 are kept)",
        "grafana": "protected",
    }


def test_dry_run_text_form_says_nothing_was_done():
    out = dry_run("--facts", str(SNAPSHOT))
    assert out.returncode == 0
    assert out.stdout.splitlines()[0] == (
        "would remove low-2 (020202020202): rule keep-three-low: "
        "rank 1 of 5 by [-mem_percent, -cpu_percent], only 3 are kept"
    )
    assert out.stdout.splitlines()[-1] == (
        "4 actions, 7 containers left alone; nothing was done (dry-run)"
    )


def test_a_broken_snapshot_is_refused_with_its_place(tmp_path):
    doc = json.loads(SNAPSHOT.read_text())
    del doc["containers"][3]["id"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    out = dry_run("--facts", str(bad))
    assert out.returncode == 2
    assert "/containers/3/id: required field is missing" in out.stderr


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            "cpu_percent",
            "lots",
            '/containers/0/cpu_percent: expected a number or null, got "lots"',
        ),
        ("labels", None, "/containers/0/labels: expected an object, got null"),
        (
            "mem_percent",
            "Infinity",
            "/containers/0/mem_percent: expected a finite number",
        ),
        ("id", "01" * 32 + "x", None),
    ],
)
def test_a_snapshot_with_wrong_types_is_refused_with_its_place(
    tmp_path, field, value, message
):
    text = SNAPSHOT.read_text()
    doc = json.loads(text)
    if field == "id":  # the same container twice
        doc["containers"][1]["id"] = doc["containers"][0]["id"]
        message = f"/containers/1/id: container {'01' * 32} twice"
        bad_text = json.dumps(doc)
    else:
        doc["containers"][0][field] = value
        bad_text = json.dumps(doc).replace('"Infinity"', "Infinity")
    bad = tmp_path / "bad.json"
    bad.write_text(bad_text)
    out = dry_run("--facts", str(bad))
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr
