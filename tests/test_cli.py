"""Command-line edges: exit codes, odd inputs, paths relative to the config."""

import subprocess
import sys
from pathlib import Path

from rulectl import expr
from rulectl.config import load_config

REPO = Path(__file__).resolve().parent.parent


def rulectl(*args: str, cwd: str = "/") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rulectl", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
    )


def test_validate_without_a_readable_config_could_not_run(tmp_path):
    out = rulectl("validate", "--config", str(tmp_path / "missing.yaml"))
    assert out.returncode == 2
    assert "C001: cannot read: No such file or directory" in out.stderr


def test_a_config_that_is_not_utf8_is_a_finding_not_a_traceback(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_bytes(b"interval_s: 20\nrules_dir: \xff\xfe\n")
    out = rulectl("validate", "--config", str(config))
    assert out.returncode == 1
    assert f"{config}:2:1: C001: not UTF-8 text" in out.stdout
    assert "Traceback" not in out.stderr


def test_a_relative_sqlite_url_is_relative_to_the_config(tmp_path):
    config = tmp_path / "etc" / "config.yaml"
    config.parent.mkdir()
    config.write_text('database_url: "sqlite:///state/r.db"\n')
    assert (
        load_config(config).db_url == f"sqlite:///{tmp_path / 'etc' / 'state' / 'r.db'}"
    )
    config.write_text('database_url: "sqlite:////var/x.db"\n')
    assert load_config(config).db_url == "sqlite:////var/x.db"


def test_a_doubled_operator_is_a_syntax_error():
    try:
        expr.parse("mem_percent > > 3")
    except expr.ExprError as exc:
        assert (exc.code, str(exc), exc.column) == ("R001", "unexpected '>'", 14)
    else:
        raise AssertionError("accepted")


def test_spawn_refuses_counts_out_of_range():
    out = rulectl("spawn", "--count", "-1", "--config", str(REPO / "config.yaml"))
    assert out.returncode == 2
    assert "a count from 0 to 100" in out.stderr


def test_a_closed_pipe_is_not_a_traceback():
    out = subprocess.run(
        f"{sys.executable} -m rulectl schema | head -1",
        shell=True,
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert out.stdout == "{\n"
    assert "Traceback" not in out.stderr


def test_why_lists_every_decision_about_a_container_newest_first(tmp_path):
    from rulectl.model import ContainerFacts, Decision, HostFacts, Snapshot
    from rulectl.store import Store

    config = tmp_path / "config.yaml"
    config.write_text("data_dir: data\n")
    (tmp_path / "data").mkdir()
    store = Store(f"sqlite:///{tmp_path / 'data' / 'rulectl.db'}", host="node-1")
    cid = "ab" * 32
    snap = Snapshot(
        100.0,
        HostFacts("node-1", 2, 1000, 500, 500, 1.0),
        [ContainerFacts(cid, "low-9", "img", {}, 90.0, [7], 0.1, 10, 1.0, 20)],
        [],
    )
    first = Decision("runaway-memory", "stop", cid, "low-9", 1, "`x` holds", {})
    first.outcome, first.detail = "skipped", "condition held 1 of 2"
    second = Decision("keep-three-low", "remove", cid, "low-9", 1, "rank 1 of 4", {})
    second.outcome, second.detail = "done", "stopped and removed"
    store.record_tick(1, snap, {}, [first], 1733318400.0)
    store.record_tick(2, snap, {}, [second], 1733318420.0)
    store.close()

    out = rulectl("why", "low-9", "--config", str(config))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert (
        "remove low-9 (abababababab) by rule keep-three-low, rank 1: done" in lines[0]
    )
    assert lines[1] == "    why: rank 1 of 4"
    assert (
        "stop low-9 (abababababab) by rule runaway-memory, rank 1: skipped" in lines[4]
    )
    assert rulectl("why", "nobody", "--config", str(config)).returncode == 1
