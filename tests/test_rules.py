"""Rule files: loading, every validation stage, and the findings' places."""

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rulectl import expr
from rulectl.rules import load_rules

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str, name: str = "main.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def lines(result) -> list[str]:
    return [str(f) for f in result.findings]


def test_the_design_example_is_accepted_as_written_and_is_the_default():
    result = load_rules([REPO / "rules"])
    assert result.ok, lines(result)
    rules = result.ruleset.rules
    assert [(r.name, r.keep, r.action, r.for_ticks) for r in rules] == [
        ("keep-three-low", 3, "remove", 1),
        ("keep-two-high", 2, "remove", 1),
        ("runaway-memory", None, "stop", 2),
    ]
    assert rules[1].select.types == ("high-cpu", "high-mem")
    assert rules[0].order_by == (("mem_percent", True), ("cpu_percent", True))
    assert [m.name for m in result.ruleset.protect] == ["grafana*", None]


def test_yaml_1_1_surprises_are_reported_with_line_and_hint(tmp_path):
    # Case C09: `no` becomes false, 010 becomes 8, 08 becomes a string, and a
    # repeated key silently keeps the last value.
    write(
        tmp_path,
        """
        version: 1
        rules:
          - name: no
            select: {}
            keep: 010
            order_by: [-mem_percent]
            action: kill
            action: log
        extra: 08
        """,
    )
    result = load_rules([tmp_path])
    assert not result.ok
    path = tmp_path / "main.yaml"
    assert lines(result) == [
        f"{path}:3:11: Y003: /rules/0/name: 'no' is read as false by YAML 1.1; "
        'quote it ("no") if you mean the word, or write false',
        f"{path}:5:11: Y004: /rules/0/keep: 010 is read as the octal number 8 by "
        "YAML 1.1; write it without leading zeros, or quote it if you mean a string",
        f"{path}:8:5: Y002: /rules/0/action: duplicate key 'action' (first at line "
        "7); YAML would silently keep only the last one: remove one",
        f"{path}:9:8: Y004: /extra: 08 is read as the string '08' by YAML 1.1; "
        "write it without leading zeros, or quote it if you mean a string",
    ]


def test_empty_when_points_at_its_key_with_the_json_pointer(tmp_path):
    # Case C10: not "None is not of type 'string'" without a place.
    write(
        tmp_path,
        """
        version: 1
        types:
          low: {label: {rulectl.type: low}}
        rules:
          - name: a
            select: {type: low}
            keep: 3
            action: remove
          - name: b
            select: {}
            when: "mem_percent > 1"
            action: log
          - name: c
            select: {}
            when:
            action: stop
        """,
    )
    result = load_rules([tmp_path])
    assert lines(result) == [
        f"{tmp_path / 'main.yaml'}:15:5: S001: /rules/2/when: expected string, got null"
    ]


def test_schema_findings_name_the_unknown_key_and_the_bad_action(tmp_path):
    write(
        tmp_path,
        """
        version: 1
        rules:
          - name: a
            select: {}
            keep: 1
            acton: remove
          - name: b
            select: {}
            keep: 1
            action: explode
        """,
    )
    result = load_rules([tmp_path])
    messages = [(f.line, f.col, f.pointer, f.message) for f in result.findings]
    assert (6, 5, "/rules/0/acton", "unknown key 'acton'") in messages
    assert (3, 5, "/rules/0", "missing required key 'action'") in messages
    assert (
        10,
        13,
        "/rules/1/action",
        "expected one of stop, kill, remove, log, got 'explode'",
    ) in messages


def test_semantic_errors_have_their_own_codes(tmp_path):
    write(
        tmp_path,
        """
        version: 1
        types:
          low: {label: {t: low}}
        rules:
          - name: a
            select: {type: lwo}
            keep: 1
            order_by: [-weight]
            action: remove
          - name: b
            select: {}
            when: "mem_percnt > 5"
            action: log
          - name: c
            select: {}
            when: 'name > 5'
            action: log
          - name: d
            select: {}
            when: "mem_percent >"
            action: log
          - name: e
            select: {}
            keep: 1
            action: log
          - name: e
            select: {}
            keep: 2
            action: log
        """,
    )
    result = load_rules([tmp_path])
    codes = [(f.code, f.pointer) for f in result.findings]
    assert codes == [
        ("R004", "/rules/0/select/type"),
        ("R006", "/rules/0/order_by/0"),
        ("R002", "/rules/1/when"),
        ("R003", "/rules/2/when"),
        ("R001", "/rules/3/when"),
        ("R005", "/rules/5/name"),
    ]
    assert not result.ok


def test_unreachable_percentage_is_a_warning_not_an_error(tmp_path):
    write(
        tmp_path,
        """
        version: 1
        rules:
          - name: a
            select: {}
            when: "mem_percent > 150"
            action: log
        """,
    )
    result = load_rules([tmp_path])
    assert result.ok
    assert [(f.code, f.severity) for f in result.findings] == [("L001", "warning")]


def test_no_rule_files_is_a_finding(tmp_path):
    result = load_rules([tmp_path])
    assert [f.code for f in result.findings] == ["R007"]


def test_yaml_cannot_construct_python_objects(tmp_path):
    write(tmp_path, "version: !!python/object/apply:os.system ['true']\n")
    result = load_rules([tmp_path])
    assert not result.ok
    assert [(f.code, f.message) for f in result.findings] == [
        ("Y005", "tag tag:yaml.org,2002:python/object/apply:os.system is not allowed")
    ]


@pytest.mark.parametrize(
    ("text", "facts", "expected"),
    [
        (
            "mem_percent > 40 and cpu_percent > 5",
            {"mem_percent": 41, "cpu_percent": 6},
            True,
        ),
        (
            "mem_percent > 40 and cpu_percent > 5",
            {"mem_percent": 41, "cpu_percent": 5},
            False,
        ),
        (
            "not (mem_percent > 40 or cpu_percent > 5)",
            {"mem_percent": 1, "cpu_percent": 1},
            True,
        ),
        ('type == "low" and not name == "x"', {"type": "low", "name": "y"}, True),
        ("40 < mem_percent", {"mem_percent": 41}, True),
        # An unknown value satisfies neither a comparison nor its negation.
        ("cpu_percent > 5", {"cpu_percent": None}, False),
        ("not cpu_percent > 5", {"cpu_percent": None}, False),
        ("not not cpu_percent >= 5", {"cpu_percent": 5}, True),
    ],
)
def test_when_expressions_evaluate_with_unknowns_false(text, facts, expected):
    assert expr.evaluate(expr.parse(text), facts) is expected


def test_not_is_pushed_down_to_the_comparisons():
    parsed = expr.parse("not (mem_percent > 40 and cpu_percent <= 5)")
    assert parsed == expr.Or(
        (expr.Cmp("mem_percent", "<=", 40.0), expr.Cmp("cpu_percent", ">", 5.0))
    )


def test_validate_command_prints_findings_and_exits_1_then_0(tmp_path):
    bad = write(
        tmp_path,
        """
        version: 1
        rules:
          - name: a
            select: {}
            when: "bogus > 1"
            action: log
        """,
    )
    cmd = [
        sys.executable,
        "-m",
        "rulectl",
        "--config",
        str(REPO / "config.yaml"),
        "validate",
    ]
    out = subprocess.run(cmd + [str(bad)], capture_output=True, text=True)
    assert out.returncode == 1
    assert out.stdout.splitlines()[0].startswith(f"{bad}:5:12: R002: /rules/0/when:")
    assert out.stdout.splitlines()[-1] == "1 rule files checked: 1 errors, 0 warnings"

    as_json = subprocess.run(
        cmd + ["--format", "json", str(bad)], capture_output=True, text=True
    )
    finding = json.loads(as_json.stdout)["findings"][0]
    assert {k: finding[k] for k in ("line", "col", "code", "severity", "pointer")} == {
        "line": 5,
        "col": 12,
        "code": "R002",
        "severity": "error",
        "pointer": "/rules/0/when",
    }

    good = tmp_path / "good"
    good.mkdir()
    shutil.copy(REPO / "rules" / "main.yaml", good / "main.yaml")
    assert subprocess.run(cmd + [str(good)], capture_output=True).returncode == 0
    missing = subprocess.run(cmd + [str(tmp_path / "nope")], capture_output=True)
    assert missing.returncode == 2


def test_lint_warns_about_rules_that_cannot_act_or_fight(tmp_path):
    write(
        tmp_path,
        """
        version: 1
        types:
          low: {label: {t: low}}
          high: {label: {t: high}}
        rules:
          - name: drop-all-low
            select: {type: low}
            keep: 0
            action: remove
          - name: low-hot
            select: {type: low}
            when: "cpu_percent > 50"
            action: stop
          - name: keep-high
            select: {type: high}
            keep: 2
            action: remove
          - name: keep-any
            select: {}
            keep: 5
            action: remove
        """,
    )
    result = load_rules([tmp_path])
    assert result.ok
    assert [(f.code, f.line, f.pointer) for f in result.findings] == [
        ("L002", 10, "/rules/1"),
        ("L003", 18, "/rules/3"),
        ("L004", 18, "/rules/3"),
        ("L003", 18, "/rules/3"),
    ]
    assert result.findings[0].message == (
        "rule 'low-hot' is shadowed: 'drop-all-low' comes first and acts on every "
        "container it selects"
    )


def test_cpu_percent_above_what_this_host_can_reach_is_flagged(tmp_path, monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    write(
        tmp_path,
        """
        version: 1
        rules:
          - {name: a, select: {}, when: "cpu_percent > 400", action: log}
          - {name: b, select: {}, when: "cpu_percent > 399", action: log}
        """,
    )
    result = load_rules([tmp_path])
    assert [(f.code, f.pointer) for f in result.findings] == [("L001", "/rules/0/when")]
    assert result.findings[0].message.endswith("CPU % (100 per core) tops at 400")


def test_a_when_finding_points_at_the_word_itself(tmp_path):
    write(
        tmp_path,
        """
        version: 1
        rules:
          - {name: a, select: {}, action: log, when: "mem_percent > 40 and cpu_pct > 5"}
          - {name: b, select: {}, action: log, when: mem_percent > 40 and cpu_pct > 5}
          - name: c
            select: {}
            action: log
            when: >-
              mem_percent > 40 and
              cpu_pct > 5
        """,
    )
    found = [(f.line, f.col) for f in load_rules([tmp_path]).findings]
    # Quoted: past the quote; plain: as is; block: the indicator's place.
    assert found == [(3, 68), (4, 67), (8, 11)]


def test_log_rules_neither_shadow_nor_fight_and_equal_conditions_shadow(tmp_path):
    write(
        tmp_path,
        """
        version: 1
        types: {low: {label: {t: low}}}
        rules:
          - {name: note, select: {}, when: "cpu_percent > 50", action: log}
          - {name: keeper, select: {type: low}, keep: 2, action: remove}
          - {name: first, select: {}, when: "mem_percent > 10", action: kill}
          - {name: again, select: {type: low}, when: "mem_percent > 10", action: stop}
        """,
    )
    result = load_rules([tmp_path])
    assert [(f.code, f.pointer) for f in result.findings] == [("L002", "/rules/3")]
