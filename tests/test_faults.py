"""Faults a real host throws at the daemon, with real components.

The daemon runs as a process against the suite's real dockerd, a real SQLite
file and real signals. Docker faults go through a small socket relay in front
of the real engine's socket, which the test can cut (as if dockerd stopped),
restore (dockerd back), or make hang (a call that never answers): the engine
itself stays up for the rest of the suite.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from rulectl import cron, workload
from rulectl.config import load_config
from rulectl.daemon import LABEL_SPAWNER

REPO = Path(__file__).resolve().parent.parent
ENGINE_SOCKET = "/var/run/docker.sock"


class DockerRelay:
    """A unix socket that relays to dockerd, or refuses, or swallows calls."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.mode = "relay"  # relay, down or hang
        self.listener: socket.socket | None = None
        self.open: list[socket.socket] = []
        self.up()

    def up(self) -> None:
        self.mode = "relay"
        if self.listener is None:
            self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.listener.bind(str(self.path))
            self.listener.listen(64)
            threading.Thread(
                target=self._accept, args=(self.listener,), daemon=True
            ).start()

    def down(self) -> None:
        """Connections are refused, as when dockerd is not running."""
        self.mode = "down"
        if self.listener is not None:
            self.listener.close()
            self.listener = None
            self.path.unlink(missing_ok=True)
        for conn in self.open:  # kept-alive connections die with dockerd too
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()
        self.open.clear()

    def hang(self) -> None:
        """Connections are accepted and never answered."""
        self.up()
        self.mode = "hang"

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            self.open.append(client)
            if self.mode == "hang":
                threading.Thread(
                    target=self._swallow, args=(client,), daemon=True
                ).start()
                continue
            engine = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            engine.connect(ENGINE_SOCKET)
            self.open.append(engine)
            for a, b in ((client, engine), (engine, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _swallow(conn: socket.socket) -> None:
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class Daemon:
    """`rulectl run` as a process, its log collected line by line."""

    def __init__(self, tmp: Path, interval_s: float = 1, **config: str) -> None:
        self.tmp = tmp
        if not (tmp / "rules").exists():
            shutil.copytree(REPO / "rules", tmp / "rules")
        settings = {
            "interval_s": str(interval_s),
            "rules_dir": "rules",
            "data_dir": "data",
            "cron": '{enabled: true, schedule: "0 0 1 1 *", count: 10}',
            "facts": "{load_modules: false}",
            "guard": "{stop_grace_s: 1}",
            "log_file": '""',
        } | config
        self.config = tmp / "config.yaml"
        self.config.write_text("".join(f"{k}: {v}\n" for k, v in settings.items()))
        self.db = tmp / "data" / "rulectl.db"
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rulectl", "run", "--config", str(self.config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd="/",
            env={**os.environ, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def log(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return
            assert self.proc.poll() is None, f"daemon exited:\n{self.log()}"
            time.sleep(0.1)
        pytest.fail(f"no log line with {text!r} in {timeout_s} s:\n{self.log()}")

    def count(self, text: str) -> int:
        return sum(text in line for line in self.lines)

    def ticks(self) -> list[int]:
        try:
            with sqlite3.connect(self.db, timeout=0.1) as con:
                rows = con.execute("select tick from host_samples order by tick")
                return [r[0] for r in rows]
        except sqlite3.OperationalError:
            return []

    def wait_for_ticks(self, n: int, timeout_s: float = 60) -> list[int]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ticks = self.ticks()
            if len(ticks) >= n:
                return ticks
            assert self.proc.poll() is None, f"daemon exited:\n{self.log()}"
            time.sleep(0.2)
        pytest.fail(f"fewer than {n} ticks stored in {timeout_s} s:\n{self.log()}")

    def stop(self) -> tuple[int, float]:
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        time.sleep(0.2)  # the reader thread takes the last lines
        return code, time.monotonic() - started


@pytest.fixture
def clean_engine(docker_client):
    workload.remove_managed(docker_client)
    workload.ensure_images(docker_client, workload.WorkloadConfig())
    yield docker_client
    workload.remove_managed(docker_client)


def spawn_low(client, n: int, config: Path | None = None) -> None:
    """Low test containers; with `config`, as that daemon's cron starts them."""
    cfg = workload.WorkloadConfig(types=("low",))
    labels = {LABEL_SPAWNER: load_config(config).owner_id} if config else None
    workload.spawn(client, cfg, n, random.Random(), extra_labels=labels)


def running_low(client) -> int:
    labels = ["rulectl.managed=true", "rulectl.type=low"]
    return len(client.api.containers(filters={"label": labels}))


def wait_until(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def test_docker_gone_then_back_and_a_hanging_docker(
    clean_engine, saved_crontab, tmp_path
):
    relay = DockerRelay(tmp_path / "docker.sock")
    daemon = Daemon(tmp_path, docker=f'{{url: "unix://{relay.path}", timeout_s: 2}}')
    try:
        daemon.wait_for_ticks(2)

        relay.down()  # dockerd stops
        spawn_low(clean_engine, 5)  # load the daemon cannot see for now
        stored = len(daemon.ticks())
        daemon.wait_for_ticks(stored + 3)
        daemon.wait_for("cannot list containers from Docker (1 times so far)")
        assert running_low(clean_engine) == 5  # nothing acted on blindly

        relay.up()  # dockerd is back
        daemon.wait_for("Docker answers again")
        wait_until(lambda: running_low(clean_engine) == 3, 30, "3 low containers")

        relay.hang()  # every call hangs until the client's timeout
        stored = len(daemon.ticks())
        daemon.wait_for_ticks(stored + 2, timeout_s=60)
        relay.up()
    finally:
        code, stop_s = daemon.stop()
    assert code == 0, daemon.log()
    assert stop_s < 15
    assert "Traceback" not in daemon.log()
    assert daemon.count("failed;") == 0


def test_records_wait_while_a_reader_holds_an_exclusive_lock(
    docker_client, saved_crontab, tmp_path
):
    daemon = Daemon(tmp_path)
    try:
        daemon.wait_for_ticks(2)
        locker = sqlite3.connect(daemon.db, timeout=30, isolation_level=None)
        locker.execute("begin exclusive")
        daemon.wait_for("cannot record tick", timeout_s=40)
        assert daemon.proc.poll() is None
        locker.execute("commit")
        locker.close()
        daemon.wait_for("storage works again; every waiting tick is recorded", 60)
        ticks = daemon.ticks()
    finally:
        code, _ = daemon.stop()
    assert code == 0
    assert ticks == list(range(1, len(ticks) + 1)), "a tick's rows were lost"


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=True
    )
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def test_a_full_disk_stops_recording_not_deciding(
    docker_client, saved_crontab, small_disk, tmp_path
):
    daemon = Daemon(tmp_path, data_dir=str(small_disk / "data"))
    daemon.db = small_disk / "data" / "rulectl.db"
    filler = small_disk / "filler"
    try:
        daemon.wait_for_ticks(2)
        # Unbuffered: nothing is left to write (and fail) when it is closed.
        with open(filler, "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass  # ENOSPC: the disk is full
        daemon.wait_for("cannot record tick", timeout_s=30)
        stuck = daemon.count("baseline")  # still the same process
        time.sleep(3)  # ticks go on meanwhile
        assert daemon.proc.poll() is None and stuck == 1
        filler.unlink()
        daemon.wait_for("storage works again; every waiting tick is recorded", 60)
        ticks = daemon.ticks()
    finally:
        code, _ = daemon.stop()
    assert code == 0, daemon.log()
    assert ticks == list(range(1, len(ticks) + 1))
    assert "database or disk is full" in daemon.log()


def test_sigterm_at_any_point_of_a_tick_leaves_nothing_behind(
    clean_engine, saved_crontab, tmp_path
):
    rng = random.Random(5)
    for attempt in range(6):
        run = tmp_path / f"run{attempt}"
        run.mkdir()
        daemon = Daemon(run, interval_s=0.5)
        spawn_low(clean_engine, 6, daemon.config)
        daemon.wait_for("baseline sample taken")
        time.sleep(rng.uniform(0.2, 2.5))
        code, stop_s = daemon.stop()

        assert code == 0, daemon.log()
        assert stop_s < 10, daemon.log()
        marker = f"{cron.CRON_TAG} {load_config(daemon.config).owner_id}"
        crontab = subprocess.run(["crontab", "-l"], capture_output=True, text=True)
        assert marker not in crontab.stdout
        assert (
            clean_engine.api.containers(
                all=True, filters={"label": "rulectl.managed=true"}
            )
            == []
        )
        # A tick is stored whole or not at all.
        with sqlite3.connect(daemon.db) as con:
            hosts = {r[0] for r in con.execute("select tick from host_samples")}
            for table in ("container_samples", "process_samples", "decisions"):
                ticks = {
                    r[0] for r in con.execute(f"select distinct tick from {table}")
                }
                assert ticks <= hosts, (attempt, table)


def test_rules_deleted_at_run_time_keep_the_last_good_ones(
    clean_engine, saved_crontab, tmp_path
):
    daemon = Daemon(tmp_path)
    try:
        daemon.wait_for_ticks(1)
        shutil.rmtree(tmp_path / "rules")
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_for("reload (SIGHUP) refused")
        assert any("R007: no rule files found" in line for line in daemon.lines)

        spawn_low(clean_engine, 5)  # the old rules still hold
        wait_until(lambda: running_low(clean_engine) == 3, 30, "3 low containers")

        (tmp_path / "config.yaml").write_text("interval_s: -1\n")
        (tmp_path / "rules").mkdir()
        shutil.copy(REPO / "rules" / "main.yaml", tmp_path / "rules" / "main.yaml")
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_for("but would not start with this one")
        daemon.wait_for("reload (SIGHUP): the rule files did not change")
        assert daemon.proc.poll() is None
    finally:
        code, _ = daemon.stop()
    assert code == 0


def test_containers_coming_and_going_fast_never_fail_a_tick(
    clean_engine, saved_crontab, tmp_path
):
    stop = threading.Event()
    churned = [0]

    def churn() -> None:
        # Another tool: starts and removes typed containers as fast as it can.
        while not stop.is_set():
            c = clean_engine.containers.run(
                "rulectl/workload:low",
                ["low"],
                detach=True,
                network_mode="none",
                labels={"rulectl.type": "low", "rulectl.managed": "true"},
            )
            time.sleep(0.05)
            try:
                c.remove(force=True)
            except Exception:  # noqa: BLE001 - the daemon may have removed it
                pass
            churned[0] += 1

    spawn_low(clean_engine, 4)
    daemon = Daemon(tmp_path, interval_s=0.5)
    worker = threading.Thread(target=churn)
    try:
        daemon.wait_for_ticks(1)
        worker.start()
        stored = len(daemon.ticks())
        daemon.wait_for_ticks(stored + 20, timeout_s=120)
    finally:
        stop.set()
        worker.join(30)
        code, _ = daemon.stop()
    assert code == 0
    assert churned[0] >= 20
    assert daemon.count("failed;") == 0 and "Traceback" not in daemon.log()
    ticks = daemon.ticks()
    assert ticks == list(range(1, len(ticks) + 1))
