"""The whole daemon against the real Docker engine, cron and an SQLite file.

Ten random test containers and a protected `grafana` are started, `rulectl
run` ticks every 2 s, and the test checks exact counts, exact victims (the
heaviest by each rule's order, recomputed here from the samples the daemon
stored), the database rows, and a clean SIGTERM: exit 0 within seconds, cron
entry gone, test containers gone, grafana untouched.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rulectl import cron, workload
from rulectl.config import load_config
from rulectl.daemon import LABEL_SPAWNER

REPO = Path(__file__).resolve().parent.parent
HIGH = ("high-cpu", "high-mem")


def managed(client, ctype: str | None = None) -> list[dict]:
    labels = ["rulectl.managed=true"] + ([f"rulectl.type={ctype}"] if ctype else [])
    return client.api.containers(filters={"label": labels})


def counts(client) -> tuple[int, int]:
    low = len(managed(client, "low"))
    high = sum(len(managed(client, t)) for t in HIGH)
    return low, high


def write_config(tmp_path: Path, interval_s: float = 2, **extra: str) -> Path:
    shutil.copytree(REPO / "rules", tmp_path / "rules")
    lines = [
        f"interval_s: {interval_s}",
        "rules_dir: rules",
        "data_dir: data",
        "workload: {high_mem_mib: 64}",
        # A schedule that does not fire during the test: the entry is still
        # installed and removed for real.
        'cron: {enabled: true, schedule: "0 0 1 1 *", count: 10}',
        "guard: {stop_grace_s: 2}",
    ] + [f"{k}: {v}" for k, v in extra.items()]
    path = tmp_path / "config.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_once(config: Path) -> subprocess.CompletedProcess:
    """`rulectl run --once`, from / as systemd would start it."""
    return subprocess.run(
        [sys.executable, "-m", "rulectl", "run", "--once", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
    )


def crontab_text() -> str:
    out = subprocess.run(["crontab", "-l"], capture_output=True, text=True)
    return out.stdout if out.returncode == 0 else ""


@pytest.fixture
def protected_grafana(docker_client, test_labels):
    """A container protected by the default `grafana*` name glob. Its name is
    unique so that a real Grafana on the host is never touched by the tests."""
    workload.ensure_images(docker_client, workload.WorkloadConfig())
    container = docker_client.containers.run(
        "rulectl/workload:low",
        ["low"],
        name=f"grafana-test-{test_labels['rulectl.test'][:8]}",
        detach=True,
        labels=test_labels,
        network_mode="none",
    )
    yield container
    container.remove(force=True)


def expected_victims(
    db: Path, tick: int, types: tuple[str, ...], order: list[str], keep: int
) -> list[str]:
    """The rule's ranking, recomputed from the samples of that tick."""
    rows = (
        sqlite3.connect(db)
        .execute(
            "select name, cpu_percent, mem_percent, created, container_id "
            "from container_samples where tick = ? and type in "
            f"({','.join('?' * len(types))})",
            (tick, *types),
        )
        .fetchall()
    )
    columns = {"cpu_percent": 1, "mem_percent": 2}

    def key(row):
        parts = []
        for field in order:
            value = row[columns[field]]
            parts.append((1, 0) if value is None else (0, -value))
        return (*parts, -row[3], row[4])

    ranked = sorted(rows, key=key)
    return [r[0] for r in ranked[: max(len(ranked) - keep, 0)]]


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}")


def test_daemon_keeps_three_low_and_two_high_and_cleans_up_on_sigterm(
    docker_client, protected_grafana, saved_crontab, tmp_path
):
    workload.remove_managed(docker_client)
    config = write_config(tmp_path)
    # As the daemon's cron entry would start them: marked as this config's.
    owner = {LABEL_SPAWNER: load_config(config).owner_id}
    cfg = workload.WorkloadConfig(high_mem_mib=64)
    rng = random.Random(42)

    def spawn(types: tuple[str, ...], n: int) -> list:
        c = workload.WorkloadConfig(types=types, high_mem_mib=64)
        return workload.spawn(docker_client, c, n, rng, extra_labels=owner)

    spawned = spawn(cfg.types, 10)
    # Make sure both rules have work: top up to at least 5 low and 4 high.
    while sum(s.type == "low" for s in spawned) < 5:
        spawned += spawn(("low",), 1)
    while sum(s.type in HIGH for s in spawned) < 4:
        spawned += spawn(HIGH, 1)
    time.sleep(1.0)  # let high-mem containers touch their memory

    db = tmp_path / "data" / "rulectl.db"
    daemon = subprocess.Popen(
        [sys.executable, "-m", "rulectl", "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd="/",
    )
    try:

        def first_tick_recorded():
            # The file appears before its tables do.
            try:
                with sqlite3.connect(db) as con:
                    return con.execute("select count(*) from host_samples").fetchone()[
                        0
                    ]
            except sqlite3.OperationalError:
                return False

        wait_for(first_tick_recorded, 60, "the first tick to be stored")
        assert f"{cron.CRON_TAG} {owner[LABEL_SPAWNER]}" in crontab_text()
        assert counts(docker_client) == (3, 2)
        protected_grafana.reload()
        assert protected_grafana.status == "running"

        con = sqlite3.connect(db)
        done = con.execute(
            "select rule, action, container_name, rank, reason, outcome from decisions "
            "where tick = 1 order by rule, rank"
        ).fetchall()
        low_victims = expected_victims(
            db, 1, ("low",), ["mem_percent", "cpu_percent"], 3
        )
        high_victims = expected_victims(db, 1, HIGH, ["cpu_percent", "mem_percent"], 2)
        assert [(r[0], r[2], r[3]) for r in done] == (
            [("keep-three-low", n, i + 1) for i, n in enumerate(low_victims)]
            + [("keep-two-high", n, i + 1) for i, n in enumerate(high_victims)]
        )
        assert {r[1] for r in done} == {"remove"}
        assert {r[5] for r in done} == {"done"}
        assert done[0][4].startswith("rank 1 of ")

        host_row = con.execute(
            "select host, mem_total_kb, mem_used_kb, n_containers, source "
            "from host_samples where tick = 1"
        ).fetchone()
        assert host_row[0] == os.uname().nodename
        assert host_row[1] > host_row[2] > 0
        assert host_row[3] >= len(spawned) + 1
        assert (
            con.execute(
                "select count(*) from process_samples where tick = 1 and pid = ?",
                (daemon.pid,),
            ).fetchone()[0]
            == 1
        )
        assert (
            con.execute(
                "select count(*) from container_samples where tick = 1 and name = ?",
                (protected_grafana.name,),
            ).fetchone()[0]
            == 1
        )
        assert con.execute(
            "select version, n_rules from ruleset_versions"
        ).fetchall() == [(1, 3)]

        # A second tick after new load brings the counts back again.
        spawn(cfg.types, 4)
        wait_for(lambda: counts(docker_client) == (3, 2), 30, "counts back to 3 and 2")
    finally:
        daemon.send_signal(signal.SIGTERM)
        started = time.monotonic()
        output, _ = daemon.communicate(timeout=30)
        stop_s = time.monotonic() - started

    assert daemon.returncode == 0, output
    assert stop_s < 10, f"stopping took {stop_s:.1f} s"
    assert "rulectl stopped cleanly" in output
    assert "Traceback" not in output
    assert f"{cron.CRON_TAG} {owner[LABEL_SPAWNER]}" not in crontab_text()
    assert managed(docker_client) == []
    protected_grafana.reload()
    assert protected_grafana.status == "running"

    # Replaying the recorded ticks with the same rules reproduces every
    # decision; with a rule changed, the differences show.
    same = replay_json(config, db)
    assert same["ticks"] >= 2
    assert same["differing"] == []
    main = tmp_path / "rules" / "main.yaml"
    main.write_text(main.read_text().replace("keep: 3 ", "keep: 4 ", 1))
    changed = replay_json(config, db)
    first = changed["differing"][0]
    assert first["tick"] == 1
    assert {a["container"]["name"] for a in first["recorded"]} - {
        a["container"]["name"] for a in first["now"]
    } == {low_victims[-1]}


def replay_json(config: Path, db: Path) -> dict:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "rulectl",
            "--config",
            str(config),
            "dry-run",
            "--replay",
            str(db),
            "--since",
            "1h",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        cwd="/",
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_run_once_performs_one_tick_and_exits_zero(docker_client, tmp_path):
    config = write_config(tmp_path)
    crontab_before = crontab_text()
    out = run_once(config)
    assert out.returncode == 0, out.stderr
    con = sqlite3.connect(tmp_path / "data" / "rulectl.db")
    assert con.execute("select tick from host_samples").fetchall() == [(1,)]
    assert con.execute("select count(*) from process_samples").fetchone()[0] > 5
    # --once leaves the crontab alone.
    assert crontab_text() == crontab_before


def test_unreachable_docker_gives_a_clear_message_not_a_traceback(tmp_path):
    config = write_config(tmp_path, docker='{url: "unix:///nonexistent/docker.sock"}')
    out = run_once(config)
    assert out.returncode == 2
    assert (
        "cannot reach Docker at unix:///nonexistent/docker.sock (attempt 1)"
        in out.stderr
    )
    assert "retrying in 1 s" in out.stderr
    assert (
        "cannot start: cannot reach Docker at unix:///nonexistent/docker.sock "
        "after 3 attempts" in out.stderr
    )
    assert "Traceback" not in out.stderr


def test_sigterm_while_waiting_for_docker_exits_zero_within_seconds(tmp_path):
    # Case C13: the handler only sets an event and every wait watches it.
    config = write_config(tmp_path, docker='{url: "unix:///nonexistent/docker.sock"}')
    daemon = subprocess.Popen(
        [sys.executable, "-m", "rulectl", "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd="/",
    )
    time.sleep(4)
    daemon.send_signal(signal.SIGTERM)
    started = time.monotonic()
    output, _ = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, output
    assert time.monotonic() - started < 5
    assert "received SIGTERM" in output


def test_invalid_rules_at_start_up_exit_2_with_every_finding(tmp_path):
    config = write_config(tmp_path)
    (tmp_path / "rules" / "main.yaml").write_text(
        "version: 1\nrules:\n  - name: a\n    select: {}\n    when: 'bogus > 1'\n"
        "    action: log\n  - name: b\n    select: {}\n    keep: 010\n    action: log\n"
    )
    out = run_once(config)
    assert out.returncode == 2
    assert "Y004: /rules/1/keep" in out.stderr
    assert "cannot start: the rules in" in out.stderr
