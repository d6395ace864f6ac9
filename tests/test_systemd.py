"""The installed service: the unit file, sd_notify, install and uninstall.

- `systemd-analyze verify` accepts systemd/rulectl.service as installed by
  `rulectl install` (it fails, never skips, when systemd-analyze is missing).
- The real daemon (`python -m rulectl run`) says READY=1, then WATCHDOG=1 once
  per tick, then STOPPING=1 on SIGTERM, on a real AF_UNIX datagram socket,
  both a path and an abstract `@` one. Docker is a loopback stand-in served
  by the test: the real engine is shared, and the daemon's shut-down removes
  every rulectl test container on the engine it talks to.
- Install then uninstall leaves a root directory as it was (paths, modes,
  bytes); a second install changes nothing; an edited config survives.

The daemon tests need the sd_notify calls wired into rulectl/daemon.py.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from rulectl import install as inst
from rulectl import systemd

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "systemd" / "rulectl.service"

# -- the unit file -----------------------------------------------------------


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.fail(
            "systemd-analyze is missing: apt-get install systemd", pytrace=False
        )
    return path


def verify_root(tmp_path: Path) -> Path:
    """A root with the host's own units (sysinit.target and the others that
    verify loads), /bin/kill for ExecReload, and rulectl installed into it.

    With --root, verify reads the unit by name from the root and checks
    ExecStart= there: the installed wrapper, not this machine's /usr/local.
    """
    host_units = Path("/lib/systemd/system")
    if not (host_units / "sysinit.target").exists():
        pytest.fail(f"no systemd units in {host_units}", pytrace=False)
    root = tmp_path / "root"
    shutil.copytree(host_units, root / "usr/lib/systemd/system", symlinks=True)
    (root / "usr/bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2("/bin/kill", root / "usr/bin/kill")
    (root / "bin").symlink_to("usr/bin")
    inst.install(root, REPO, out=lambda _line: None)
    return root


def run_verify(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [systemd_analyze(), "verify", f"--root={root}", "--man=no", inst.UNIT_NAME],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_systemd_analyze_verify_accepts_the_installed_unit(tmp_path: Path) -> None:
    root = verify_root(tmp_path)
    installed = root / inst.UNIT_NAME_REL
    assert installed.read_bytes() == UNIT.read_bytes()

    result = run_verify(root)

    # Unknown keys and bad values are only warnings: any output is a finding.
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_systemd_analyze_verify_reports_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: a bad value and a missing program are found."""
    root = verify_root(tmp_path)
    unit = root / inst.UNIT_NAME_REL
    text = unit.read_text().replace("WatchdogSec=90s", "WatchdogSec=ninety")
    unit.write_text(text)
    (root / "usr/local/bin/rulectl").unlink()

    result = run_verify(root)

    assert result.returncode != 0
    assert "rulectl.service:" in result.stderr and "ninety" in result.stderr
    assert "/usr/local/bin/rulectl" in result.stderr


def test_unit_names_what_the_daemon_and_install_rely_on() -> None:
    settings = unit_settings(UNIT.read_text())

    assert settings["Type"] == ["notify"]
    assert settings["NotifyAccess"] == ["main"]
    assert settings["ExecStart"] == [
        "/usr/local/bin/rulectl run --config /etc/rulectl/config.yaml"
    ]
    assert settings["StateDirectory"] == settings["LogsDirectory"] == ["rulectl"]
    assert settings["ConfigurationDirectory"] == ["rulectl"]
    # Kernel modules are loaded by the daemon: this would forbid it.
    assert "ProtectKernelModules" not in settings
    # The paths install writes into the config are the unit's directories.
    config = inst.INSTALLED_VALUES
    assert config[("data_dir",)] == "/var/lib/rulectl"
    assert config[("log_file",)].startswith("/var/log/rulectl/")


def unit_settings(text: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


# -- sd_notify, without the daemon --------------------------------------------


@pytest.fixture
def notify_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A bound path socket that $NOTIFY_SOCKET names."""
    directory = tempfile.mkdtemp(prefix="rulectl-sd-")  # short: 108-byte limit
    path = os.path.join(directory, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    yield sock
    sock.close()
    shutil.rmtree(directory)


def test_each_function_sends_its_message(notify_socket: socket.socket) -> None:
    assert systemd.notify_ready("3 rules, 0 containers")
    assert systemd.notify_watchdog()
    assert systemd.notify_status("tick 7:\n2 removed")
    assert systemd.notify_stopping()

    received = [notify_socket.recv(4096).decode() for _ in range(4)]

    assert received == [
        "READY=1\nSTATUS=3 rules, 0 containers",
        "WATCHDOG=1",
        "STATUS=tick 7: 2 removed",
        "STOPPING=1",
    ]


def test_abstract_socket_address(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"rulectl-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)

        assert systemd.notify_watchdog()
        assert sock.recv(4096) == b"WATCHDOG=1"


def test_nothing_happens_without_notify_socket(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)

    assert not systemd.notify_ready()
    assert not systemd.notify_watchdog()
    assert caplog.records == []


def test_a_failure_is_logged_once_and_never_raised(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    monkeypatch.setattr(systemd, "_failure_logged", False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))

    with caplog.at_level(logging.WARNING, logger="rulectl.systemd"):
        results = [systemd.notify_watchdog() for _ in range(3)]
        monkeypatch.setenv("NOTIFY_SOCKET", "relative/path")
        results.append(systemd.notify_stopping())

    assert results == [False] * 4
    assert len(caplog.records) == 1
    assert "nobody-listens" in caplog.records[0].getMessage()


def test_a_child_started_in_the_background_gets_no_notify_variables() -> None:
    env = {
        "PATH": "/usr/bin",
        "NOTIFY_SOCKET": "/run/systemd/notify",
        "WATCHDOG_USEC": "90000000",
        "WATCHDOG_PID": "4242",
    }

    assert systemd.without_notify_env(env) == {"PATH": "/usr/bin"}


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("90000000", None, 90.0),
        ("90000000", "self", 90.0),
        ("90000000", "1", None),  # meant for another process
        ("0", None, None),
        ("ninety", None, None),
        (None, None, None),
    ],
)
def test_watchdog_interval(
    monkeypatch: pytest.MonkeyPatch,
    usec: str | None,
    pid: str | None,
    expected: float | None,
) -> None:
    for name, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, str(os.getpid()) if value == "self" else value)

    assert systemd.watchdog_interval_s() == expected


# -- the daemon, with a stand-in Docker ---------------------------------------


@dataclass
class FakeDocker:
    """Answers the calls a daemon makes on an engine without containers."""

    url: str
    requests: list[str] = field(default_factory=list)


@pytest.fixture
def fake_docker() -> Iterator[FakeDocker]:
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server interface
            seen.append(self.path)
            path = self.path.split("?", 1)[0]
            if path == "/version" or path.endswith("/version"):
                self.reply(200, {"ApiVersion": "1.41", "Version": "fake"})
            elif path.endswith("/_ping"):
                self.reply(200, "OK")
            elif path.endswith(("/containers/json", "/images/json")):
                self.reply(200, [])
            else:
                self.reply(404, {"message": f"not served by the test: {path}"})

        def reply(self, status: int, body: object) -> None:
            text = body if isinstance(body, str) else json.dumps(body)
            data = text.encode()
            self.send_response(status)
            kind = "text/plain" if isinstance(body, str) else "application/json"
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield FakeDocker(f"tcp://127.0.0.1:{server.server_address[1]}", seen)
    server.shutdown()
    server.server_close()


def daemon_config(tmp_path: Path, docker_url: str, interval_s: float = 1) -> Path:
    shutil.copytree(REPO / "rules", tmp_path / "rules")
    path = tmp_path / "config.yaml"
    path.write_text(
        f"interval_s: {interval_s}\n"
        "rules_dir: rules\n"
        "data_dir: data\n"
        "dry_run: true\n"
        "cron: {enabled: false}\n"
        # Never insmod into this machine's kernel from a test.
        "facts: {source: procfs, load_modules: false}\n"
        f'docker: {{url: "{docker_url}", timeout_s: 5}}\n'
    )
    return path


class Listener:
    """Collects notify datagrams from one socket in a thread."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._done.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.messages.append((time.monotonic(), data.decode()))

    def wait_for(self, predicate, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate(self.tokens()):
                return True
            time.sleep(0.05)
        return predicate(self.tokens())

    def tokens(self) -> list[str]:
        """READY, WATCHDOG and STOPPING in the order received."""
        wanted = {"READY=1", "WATCHDOG=1", "STOPPING=1"}
        return [
            line.removesuffix("=1")
            for _, message in list(self.messages)
            for line in message.splitlines()
            if line in wanted
        ]

    def close(self) -> None:
        self._done.set()
        self._thread.join()
        self.sock.close()


def run_daemon_until_two_ticks(
    tmp_path: Path, fake: FakeDocker, address: str
) -> tuple[list[str], int, str, int]:
    """Starts the daemon with NOTIFY_SOCKET=address, waits for READY and two
    WATCHDOGs, sends SIGTERM; returns the tokens, the exit status, stderr and
    how many ticks the daemon stored."""
    config = daemon_config(tmp_path, fake.url)
    bind_to = "\0" + address[1:] if address.startswith("@") else address
    listener = Listener(bind_to)
    # An empty PATH: the daemon finds no grafana-server to start in the
    # background (and no systemctl or crontab; neither is needed here).
    empty_bin = tmp_path / "empty-bin"
    empty_bin.mkdir()
    env = dict(os.environ, NOTIFY_SOCKET=address, WATCHDOG_USEC="30000000")
    env.update(PATH=str(empty_bin))
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "rulectl", "run", "--config", str(config)],
        env=env,
        cwd="/",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        if listener.wait_for(lambda t: "READY" in t, 30):
            # Start-up is complete at READY: the database exists and Docker
            # has been asked.
            assert (tmp_path / "data" / "rulectl.db").exists()
            assert any(p.endswith("/_ping") for p in fake.requests)
            listener.wait_for(lambda t: t.count("WATCHDOG") >= 2, 30)
        proc.send_signal(signal.SIGTERM)
        status = proc.wait(timeout=20)
        listener.wait_for(lambda t: "STOPPING" in t, 2)
    finally:
        if proc.poll() is None:
            proc.kill()
        _, stderr = proc.communicate()
        listener.close()
    with sqlite3.connect(tmp_path / "data" / "rulectl.db") as db:
        ticks = db.execute("select count(*) from host_samples").fetchone()[0]
    return listener.tokens(), status, stderr, ticks


def assert_notify_sequence(tokens: list[str], ticks: int, stderr: str) -> None:
    watchdogs = tokens.count("WATCHDOG")
    assert tokens == ["READY"] + ["WATCHDOG"] * watchdogs + ["STOPPING"], stderr
    assert watchdogs >= 2
    # One ping per tick: a SIGTERM may land between a tick and its ping.
    assert abs(watchdogs - ticks) <= 1, (watchdogs, ticks)


def test_daemon_notifies_ready_watchdog_and_stopping_on_a_path_socket(
    tmp_path: Path, fake_docker: FakeDocker
) -> None:
    directory = tempfile.mkdtemp(prefix="rulectl-sd-")
    try:
        address = os.path.join(directory, "notify")
        tokens, status, stderr, ticks = run_daemon_until_two_ticks(
            tmp_path, fake_docker, address
        )
    finally:
        shutil.rmtree(directory)

    assert status == 0, stderr
    assert "stopped cleanly" in stderr
    assert_notify_sequence(tokens, ticks, stderr)


def test_daemon_notifies_on_an_abstract_socket(
    tmp_path: Path, fake_docker: FakeDocker
) -> None:
    address = f"@rulectl-test-{uuid.uuid4().hex}"

    tokens, status, stderr, ticks = run_daemon_until_two_ticks(
        tmp_path, fake_docker, address
    )

    assert status == 0, stderr
    assert_notify_sequence(tokens, ticks, stderr)


PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1
MDWE_EXEC = (
    "import ctypes, os, sys\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    f"if libc.prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0) != 0:\n"
    "    sys.exit(f'prctl(PR_SET_MDWE): errno {ctypes.get_errno()}')\n"
    "os.execv(sys.executable, [sys.executable] + sys.argv[1:])\n"
)


def test_daemon_runs_a_tick_without_writable_executable_memory(
    tmp_path: Path, fake_docker: FakeDocker
) -> None:
    """MemoryDenyWriteExecute=yes in the unit: the kernel's equivalent
    (PR_SET_MDWE, Linux 6.3, inherited across exec) refuses memory that is
    both writable and executable to the daemon and every module it loads."""
    config = daemon_config(tmp_path, fake_docker.url)

    result = subprocess.run(
        [sys.executable, "-c", MDWE_EXEC, "-m", "rulectl", "run", "--once"]
        + ["--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    assert "prctl" not in result.stderr
    with sqlite3.connect(tmp_path / "data" / "rulectl.db") as db:
        assert db.execute("select count(*) from host_samples").fetchone()[0] == 1


# -- install and uninstall ----------------------------------------------------


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under root with its type, mode and bytes or link target."""
    tree: dict[str, tuple] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        rel = str(path.relative_to(root))
        if stat.S_ISLNK(st.st_mode):
            tree[rel] = ("link", os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            tree[rel] = ("dir", stat.S_IMODE(st.st_mode))
        else:
            content = path.read_bytes()
            tree[rel] = ("file", stat.S_IMODE(st.st_mode), content, st.st_mtime_ns)
    return tree


def without_mtimes(tree: dict[str, tuple]) -> dict[str, tuple]:
    return {k: v[:3] for k, v in tree.items()}


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A checkout with everything install can copy: the repository's config,
    rules and unit, a Grafana provisioning tree and a built module."""
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy2(REPO / "config.yaml", src / "config.yaml")
    shutil.copytree(REPO / "rules", src / "rules")
    shutil.copytree(REPO / "systemd", src / "systemd")
    (src / "grafana/dashboards").mkdir(parents=True)
    (src / "grafana/dashboards/containers.json").write_text('{"title": "x"}\n')
    (src / "grafana/.hidden").write_text("not installed\n")
    (src / "kernel").mkdir()
    (src / "kernel/rulectl_procs.ko").write_bytes(b"\x7fELF not really")
    (src / "kernel/rulectl_procs.c").write_text("/* not installed */\n")
    return src


@pytest.fixture
def lived_in_root(tmp_path: Path) -> Path:
    """A root with files of its own in the directories install writes to."""
    root = tmp_path / "root"
    for rel, text in {
        "etc/hostname": "node-1\n",
        "etc/systemd/system/other.service": "[Service]\nExecStart=/bin/true\n",
        "usr/local/bin/other-tool": "#!/bin/sh\n",
        "var/lib/other/state": "x\n",
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "usr/local/bin/other-tool").chmod(0o750)
    (root / "etc/systemd/system/multi-user.target.wants").mkdir()
    (root / "etc/systemd/system/multi-user.target.wants/other.service").symlink_to(
        "../other.service"
    )
    return root


def quiet(_line: str) -> None:
    pass


@pytest.mark.parametrize("layout", ["empty", "lived-in"])
def test_install_then_uninstall_leaves_the_root_as_it_was(
    tmp_path: Path, source: Path, lived_in_root: Path, layout: str
) -> None:
    root = lived_in_root if layout == "lived-in" else tmp_path / "empty"
    root.mkdir(exist_ok=True)
    before = without_mtimes(snapshot(root))

    assert inst.install(root, source, out=quiet)
    installed = snapshot(root)
    assert inst.uninstall(root, out=quiet)

    assert without_mtimes(snapshot(root)) == before
    expected = {
        "usr/local/bin/rulectl",
        "etc/rulectl/config.yaml",
        "etc/rulectl/rules/main.yaml",
        "etc/systemd/system/rulectl.service",
        "usr/share/rulectl/grafana/dashboards/containers.json",
        "usr/lib/rulectl/kernel/rulectl_procs.ko",
        "var/lib/rulectl/installed.json",
    }
    new_files = {k for k, v in installed.items() if v[0] == "file"} - set(before)
    assert new_files == expected
    assert installed["usr/local/bin/rulectl"][1] == 0o755
    assert installed["etc/rulectl/config.yaml"][1] == 0o640


def test_second_install_changes_nothing(
    source: Path, lived_in_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inst.install(lived_in_root, source)
    first = snapshot(lived_in_root)
    capsys.readouterr()

    assert not inst.install(lived_in_root, source)

    # Not even rewritten with the same bytes: the mtimes are the same too.
    assert snapshot(lived_in_root) == first
    assert capsys.readouterr().out.splitlines()[-1] == (
        "nothing changed: every installed file is as it was"
    )


def test_every_action_is_printed(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "r"
    root.mkdir()

    inst.install(root, source)
    out = capsys.readouterr().out.splitlines()

    assert f"installed {root}/etc/rulectl/config.yaml" in out
    assert f"created directory {root}/usr/lib/rulectl/kernel" in out
    assert out[-1] == "systemd: not reloaded or enabled (root is not /)"

    inst.uninstall(root)
    out = capsys.readouterr().out.splitlines()

    assert f"removed {root}/etc/rulectl/config.yaml" in out
    assert f"removed directory {root}/etc" in out


def test_installed_config_names_the_installed_places(
    source: Path, tmp_path: Path
) -> None:
    from rulectl.config import load_config

    root = tmp_path / "r"
    root.mkdir()
    inst.install(root, source, out=quiet)

    config = load_config(root / "etc/rulectl/config.yaml")

    assert config.rules_dir == Path("/etc/rulectl/rules")
    assert config.data_dir == Path("/var/lib/rulectl")
    assert config.log_file == Path("/var/log/rulectl/rulectl.log")
    assert config.facts.module_dir == Path("/usr/lib/rulectl/kernel")
    shipped = (source / "config.yaml").read_text()
    assert "# seconds between ticks" in shipped
    assert "# seconds between ticks" in (root / "etc/rulectl/config.yaml").read_text()


def test_wrapper_runs_this_python_from_anywhere(source: Path, tmp_path: Path) -> None:
    root = tmp_path / "r"
    root.mkdir()
    inst.install(root, source, out=quiet)

    result = subprocess.run(
        [
            root / "usr/local/bin/rulectl",
            "validate",
            "--config",
            source / "config.yaml",
        ],
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert "0 errors" in result.stdout


def test_edited_config_survives_reinstall_and_uninstall(
    source: Path, tmp_path: Path
) -> None:
    root = tmp_path / "r"
    root.mkdir()
    inst.install(root, source, out=quiet)
    config = root / "etc/rulectl/config.yaml"
    edited = config.read_text().replace("interval_s: 20", "interval_s: 5")
    config.write_text(edited)
    # A new version of the program ships a changed rule file and wrapper.
    rules = source / "rules/main.yaml"
    rules.write_text(rules.read_text() + "# shipped later\n")
    (root / "usr/local/bin/rulectl").write_text("#!/bin/sh\nexit 1\n")

    assert inst.install(root, source, out=quiet)

    assert config.read_text() == edited
    assert (root / "etc/rulectl/rules/main.yaml").read_text() == rules.read_text()
    assert b"-m rulectl" in (root / "usr/local/bin/rulectl").read_bytes()

    inst.uninstall(root, out=quiet)

    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == [
        "etc",
        "etc/rulectl",
        "etc/rulectl/config.yaml",
        "var",
        "var/lib",
        "var/lib/rulectl",
        "var/lib/rulectl/installed.json",  # names the kept config
    ]
    assert config.read_text() == edited

    inst.uninstall(root, purge=True, out=quiet)

    assert list(root.rglob("*")) == []


def test_a_file_that_was_there_before_is_neither_replaced_nor_removed(
    source: Path, tmp_path: Path
) -> None:
    root = tmp_path / "r"
    own = root / "usr/local/bin/rulectl"
    own.parent.mkdir(parents=True)
    own.write_text("#!/bin/sh\n# pip's console script\n")

    inst.install(root, source, out=quiet)
    assert own.read_text() == "#!/bin/sh\n# pip's console script\n"
    inst.uninstall(root, out=quiet)

    assert sorted(p.relative_to(root) for p in root.rglob("*")) == [
        Path("usr"),
        Path("usr/local"),
        Path("usr/local/bin"),
        Path("usr/local/bin/rulectl"),
    ]


def test_uninstall_keeps_the_database_unless_purged(
    source: Path, tmp_path: Path
) -> None:
    root = tmp_path / "r"
    root.mkdir()
    inst.install(root, source, out=quiet)
    database = root / "var/lib/rulectl/rulectl.db"
    database.write_bytes(b"samples")
    log_file = root / "var/log/rulectl/rulectl.log"
    log_file.parent.mkdir(parents=True)
    log_file.write_text("a line\n")

    inst.uninstall(root, out=quiet)

    assert database.read_bytes() == b"samples"
    assert log_file.exists()
    assert not (root / "var/lib/rulectl/installed.json").exists()

    inst.uninstall(root, purge=True, out=quiet)

    assert not (root / "var/lib/rulectl").exists()
    assert not (root / "var/log/rulectl").exists()


def test_systemctl_is_asked_only_when_systemd_runs_the_root(
    source: Path, tmp_path: Path
) -> None:
    root = tmp_path / "r"
    root.mkdir()
    calls: list[list[str]] = []

    def systemctl(command: list[str]) -> int:
        calls.append(command)
        return 1 if "is-enabled" in command else 0

    inst.install(root, source, use_systemd=True, run=systemctl, out=quiet)
    inst.install(root, source, use_systemd=False, run=systemctl, out=quiet)
    inst.uninstall(root, use_systemd=True, run=systemctl, out=quiet)

    assert calls == [
        ["systemctl", "daemon-reload"],
        ["systemctl", "--quiet", "is-enabled", "rulectl.service"],
        ["systemctl", "enable", "rulectl.service"],
        ["systemctl", "disable", "--now", "rulectl.service"],
        ["systemctl", "daemon-reload"],
    ]
    # By default: never for a root other than /.
    assert not inst._systemd_applies(root, None)


def test_a_directory_without_a_checkout_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "r"
    root.mkdir()

    with pytest.raises(inst.InstallError, match="not a rulectl checkout"):
        inst.install(root, tmp_path, out=quiet)
    with pytest.raises(inst.InstallError, match="not a directory"):
        inst.install(tmp_path / "typo", REPO, out=quiet)

    assert list(root.iterdir()) == []
    assert not (tmp_path / "typo").exists()
