"""Security: files others can write are refused, data is never a command, and
protection holds against names and labels chosen by whoever starts containers."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from rulectl import workload

REPO = Path(__file__).resolve().parent.parent


def rulectl(*args: str, config: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rulectl", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        cwd="/",
        timeout=120,
    )


@pytest.fixture
def setup(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "rules", tmp_path / "rules")
    config = tmp_path / "config.yaml"
    config.write_text(
        "rules_dir: rules\ndata_dir: data\ncron: {enabled: false}\n"
        "facts: {load_modules: false}\nguard: {stop_grace_s: 1}\n"
    )
    return config


@pytest.fixture(autouse=True)
def needs_root():
    if os.geteuid() != 0:
        pytest.fail("these checks are about running as root; run the suite as root")


def test_a_rule_file_others_can_write_is_refused(setup):
    rule_file = setup.parent / "rules" / "main.yaml"
    rule_file.chmod(0o666)
    out = rulectl("validate", config=setup)
    assert out.returncode == 1
    assert out.stdout.splitlines()[0] == (
        f"{rule_file}:1:1: P001: refused, running as root: {rule_file} is writable "
        f"by others (mode 0666): run chmod go-w {rule_file}"
    )
    started = rulectl("run", "--once", config=setup)
    assert started.returncode == 2
    assert "P001" in started.stderr


def test_a_rules_directory_a_group_can_write_is_refused(setup):
    rules = setup.parent / "rules"
    os.chown(rules, 0, 65534)
    rules.chmod(0o775)
    out = rulectl("validate", config=setup)
    assert out.returncode == 1
    assert f"{rules} is writable by its group (gid 65534)" in out.stdout


def test_a_rule_file_owned_by_another_user_is_refused(setup):
    rule_file = setup.parent / "rules" / "main.yaml"
    os.chown(rule_file, 65534, 65534)
    out = rulectl("validate", config=setup)
    assert out.returncode == 1
    assert f"{rule_file} belongs to uid 65534, not root" in out.stdout


def test_a_config_others_can_write_is_refused(setup):
    setup.chmod(0o646)
    out = rulectl("validate", config=setup)
    assert out.returncode == 1
    assert f"{setup}:1:1: C002: refused, running as root" in out.stdout
    started = rulectl("run", "--once", config=setup)
    assert started.returncode == 2
    assert "C002" in started.stderr


def test_the_shipped_files_are_accepted(setup):
    assert rulectl("validate", config=setup).returncode == 0


def test_protected_by_name_even_when_heaviest_and_typed(docker_client, setup):
    # grafana-* is labelled `low` like the others and holds 64 MiB, so it
    # would be the heaviest of four low containers: only protection keeps it.
    workload.ensure_images(docker_client, workload.WorkloadConfig())
    tag = uuid.uuid4().hex[:8]
    labels = {"rulectl.test": tag, "rulectl.type": "low"}
    started = []
    try:
        started.append(
            docker_client.containers.run(
                "rulectl/workload:high-mem",
                ["mem", "64"],
                name=f"grafana-{tag}",
                labels=labels,
                detach=True,
                network_mode="none",
            )
        )
        for i in range(3):
            started.append(
                docker_client.containers.run(
                    "rulectl/workload:low",
                    ["low"],
                    name=f"low-{tag}-{i}",
                    labels=labels,
                    detach=True,
                    network_mode="none",
                )
            )
        low_before = docker_client.api.containers(filters={"label": "rulectl.type=low"})
        assert len(low_before) == 4, "other low containers run on this engine"
        out = rulectl("run", "--once", config=setup)
        assert out.returncode == 0, out.stderr

        # Protected, grafana-* never enters the selection: three low remain
        # and are all kept. Unprotected, it would be the first removed.
        left = docker_client.api.containers(filters={"label": f"rulectl.test={tag}"})
        names = {c["Names"][0].lstrip("/") for c in left}
        assert names == {f"grafana-{tag}"} | {f"low-{tag}-{i}" for i in range(3)}
    finally:
        for c in started:
            try:
                c.remove(force=True)
            except Exception:  # noqa: BLE001 - removed by the daemon already
                pass


def test_labels_with_shell_syntax_stay_plain_text(docker_client, setup, tmp_path):
    marker = tmp_path / "pwned"
    payload = f"low; touch {marker}; $(touch {marker}) `touch {marker}`"
    tag = uuid.uuid4().hex[:8]
    workload.ensure_images(docker_client, workload.WorkloadConfig())
    container = docker_client.containers.run(
        "rulectl/workload:low",
        ["low"],
        name=f"odd-{tag}",
        labels={"rulectl.test": tag, "note": payload, "rulectl.type": payload},
        detach=True,
        network_mode="none",
    )
    try:
        out = rulectl("run", "--once", config=setup)
        assert out.returncode == 0, out.stderr
        con = sqlite3.connect(setup.parent / "data" / "rulectl.db")
        (labels,) = con.execute(
            "select labels from container_samples where name = ?", (f"odd-{tag}",)
        ).fetchone()
        assert json.loads(labels)["note"] == payload
        assert not marker.exists()
    finally:
        container.remove(force=True)
