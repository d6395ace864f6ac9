"""`rulectl test`: the shipped rules pass their tests; a changed rule fails
them with a readable diff."""

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def rulectl_test(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "rulectl",
            "--config",
            str(REPO / "config.yaml"),
            "test",
            *args,
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )


def test_the_shipped_rules_pass_their_tests():
    out = rulectl_test()
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.splitlines()[-1] == "5 passed, 0 failed"


def test_keeping_four_low_containers_fails_with_a_diff(tmp_path):
    changed = tmp_path / "rules"
    changed.mkdir()
    text = (REPO / "rules" / "main.yaml").read_text()
    (changed / "main.yaml").write_text(text.replace("keep: 3 ", "keep: 4 ", 1))

    out = rulectl_test("--rules", str(changed), str(REPO / "rule-tests"))
    assert out.returncode == 1
    lines = out.stdout.splitlines()
    failing = lines.index(
        f"FAIL  {REPO / 'rule-tests' / 'main.yaml'}: "
        "the two heaviest of five low containers are removed"
    )
    assert lines[failing + 1 : failing + 4] == [
        "tick 1 (line 8): actions differ (- expected, + got)",
        "    keep-three-low: remove low-2",
        "  - keep-three-low: remove low-4",
    ]
    assert lines[-1] == "4 passed, 1 failed"


def test_an_unexpected_action_shows_as_added(tmp_path):
    tests = tmp_path / "t.yaml"
    shutil.copy(REPO / "rule-tests" / "main.yaml", tests)
    text = tests.read_text().replace("rules: ../rules", f"rules: {REPO / 'rules'}")
    tests.write_text(
        text.replace(
            "          - {rule: keep-two-high, action: remove, container: cpu-2}\n",
            "",
            1,
        )
    )
    out = rulectl_test(str(tests))
    assert out.returncode == 1
    assert "  + keep-two-high: remove cpu-2" in out.stdout.splitlines()


def test_a_broken_test_file_exits_2(tmp_path):
    bad = tmp_path / "t.yaml"
    bad.write_text("version: 1\ntests: {}\n")
    out = rulectl_test(str(bad))
    assert out.returncode == 2
    assert "T001: expected a `tests:` list" in out.stderr
