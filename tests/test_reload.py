"""Hot reload against a running daemon: each editor save pattern of case C08
reloads exactly once, an invalid save keeps the old rules, and reloads do not
grow memory."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from rulectl.engine import DurableMatcher
from rulectl.rules import load_rules

REPO = Path(__file__).resolve().parent.parent
QUIET_S = 1.5  # longer than the watcher's debounce


class RunningDaemon:
    def __init__(self, tmp_path: Path) -> None:
        self.rules = tmp_path / "rules"
        shutil.copytree(REPO / "rules", self.rules)
        self.config = tmp_path / "config.yaml"
        self.config.write_text(
            "interval_s: 600\nrules_dir: rules\ndata_dir: data\n"
            "cron: {enabled: false}\nfacts: {load_modules: false}\n"
        )
        self.db = tmp_path / "data" / "rulectl.db"
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rulectl", "run", "--config", str(self.config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd="/",
        )
        threading.Thread(target=self._read, daemon=True).start()
        self.wait_for("baseline sample taken")

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return
            time.sleep(0.1)
        pytest.fail(f"no log line with {text!r}; log:\n" + "\n".join(self.lines))

    def count(self, text: str) -> int:
        return sum(text in line for line in self.lines)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


@pytest.fixture
def daemon(docker_client, tmp_path):
    d = RunningDaemon(tmp_path)
    yield d
    if d.proc.poll() is None:
        d.stop()


def rules_text(keep_low: int) -> str:
    text = (REPO / "rules" / "main.yaml").read_text()
    return text.replace("keep: 3 ", f"keep: {keep_low} ", 1)


def test_each_editor_save_pattern_reloads_exactly_once(daemon):
    main = daemon.rules / "main.yaml"

    # gedit: write a hidden temporary file, then rename it over the original.
    temp = daemon.rules / ".goutputstream-XYZ123"
    temp.write_text(rules_text(4))
    os.rename(temp, main)
    time.sleep(QUIET_S)
    assert daemon.count("rules reloaded") == 1

    # vim: move the original away, write a new file, delete the backup.
    os.rename(main, daemon.rules / "main.yaml~")
    main.write_text(rules_text(5))
    (daemon.rules / "main.yaml~").unlink()
    time.sleep(QUIET_S)
    assert daemon.count("rules reloaded") == 2

    # In place: truncate, then write in two parts a moment apart.
    with open(main, "w") as f:
        text = rules_text(6)
        f.write(text[:100])
        f.flush()
        time.sleep(0.1)
        f.write(text[100:])
    time.sleep(QUIET_S)
    assert daemon.count("rules reloaded") == 3
    assert daemon.count("refused") == 0
    assert daemon.count("version 4, 3 rules; edited keep-three-low") == 1

    assert daemon.stop() == 0
    con = sqlite3.connect(daemon.db)
    assert con.execute(
        "select version, changes from ruleset_versions order by version"
    ).fetchall() == [
        (1, ""),
        (2, "edited keep-three-low"),
        (3, "edited keep-three-low"),
        (4, "edited keep-three-low"),
    ]


def test_an_invalid_save_keeps_the_old_rules_and_names_the_place(daemon):
    main = daemon.rules / "main.yaml"
    main.write_text(rules_text(3).replace("action: stop", "action: explode"))
    time.sleep(QUIET_S)
    assert daemon.count("reload (rules directory changed) refused") == 1
    assert any(
        f"{main}:34:13: S001: /rules/2/action: expected one of" in line
        for line in daemon.lines
    ), "\n".join(daemon.lines)
    assert daemon.count("rules reloaded") == 0

    # An empty file (caught between truncate and write) is refused too.
    main.write_text("")
    time.sleep(QUIET_S)
    assert daemon.count("refused") == 2
    assert any(f"{main}:1:1: S001: the file is empty" in line for line in daemon.lines)

    # The fixed file is taken.
    main.write_text(rules_text(2))
    time.sleep(QUIET_S)
    assert daemon.count("rules reloaded") == 1
    assert daemon.stop() == 0


def test_sighup_and_the_reload_command_reload(daemon):
    main = daemon.rules / "main.yaml"
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_for("reload (SIGHUP): the rule files did not change")

    # Change the file without the watcher noticing in time: it will reload
    # once for the change, and the command makes no second version.
    main.write_text(rules_text(7))
    out = subprocess.run(
        [sys.executable, "-m", "rulectl", "reload", "--config", str(daemon.config)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    time.sleep(QUIET_S)
    assert daemon.count("rules reloaded") == 1
    assert daemon.stop() == 0
    gone = subprocess.run(
        [sys.executable, "-m", "rulectl", "reload", "--config", str(daemon.config)],
        capture_output=True,
        text=True,
    )
    assert gone.returncode == 2
    assert "no running daemon found" in gone.stderr


def _rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def test_hundreds_of_reloads_do_not_grow_memory():
    # What a reload does to the engine: a new compiled rule set, the old one
    # freed. durable-rules' own Python host cannot free a rule set; without
    # the close this grows by about 80 KiB per reload.
    ruleset = load_rules([REPO / "rules"]).ruleset
    matcher = DurableMatcher(ruleset)
    for _ in range(100):
        fresh = DurableMatcher(ruleset)
        matcher.close()
        matcher = fresh
    before_kb = _rss_kb()
    for _ in range(500):
        fresh = DurableMatcher(ruleset)
        matcher.close()
        matcher = fresh
    assert _rss_kb() - before_kb < 1024
