"""The README's install section under a real systemd.

The test machines do not run systemd as init, so a small Debian root made with
debootstrap is booted with systemd-nspawn (systemd as its PID 1), sharing this
host's Docker socket and Python. In it, as the README says: `rulectl install`,
`systemctl start rulectl` (Type=notify: active only after READY=1), ticks,
`systemctl reload`, `systemctl stop` (within seconds, cron entry and test
containers removed), `rulectl uninstall`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ROOT = Path("/var/tmp/rulectl-service-root")  # kept between runs: debootstrap is slow
PYTHON_ROOT = Path(sys.prefix).resolve()
LIBRARIES = ["libsqlite3-0", "libssl3", "libffi8", "libbz2-1.0", "liblzma5", "kmod"]


def run(*cmd: str, timeout_s: float = 600, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, **kw)


def make_root() -> None:
    if (ROOT / "bin" / "systemctl").exists():
        return
    for tool in ("debootstrap", "systemd-nspawn"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing; scripts/setup-host.sh installs it")
    shutil.rmtree(ROOT, ignore_errors=True)
    made = run(
        "debootstrap",
        "--variant=minbase",
        "--include=systemd,systemd-sysv,dbus,cron,procps," + ",".join(LIBRARIES),
        "bookworm",
        str(ROOT),
    )
    if made.returncode != 0:
        shutil.rmtree(ROOT, ignore_errors=True)
        pytest.fail(f"debootstrap failed:\n{made.stdout[-2000:]}{made.stderr[-2000:]}")


class Machine:
    def __init__(self, nspawn: subprocess.Popen) -> None:
        self.nspawn = nspawn
        self.init_pid = 0

    def wait_booted(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            children = run("pgrep", "-P", str(self.nspawn.pid)).stdout.split()
            if children:
                self.init_pid = int(children[0])
                state = self.sh("systemctl is-system-running").stdout.strip()
                if state in ("running", "degraded"):
                    return
            assert self.nspawn.poll() is None, self.nspawn.stdout.read()
            time.sleep(1)
        pytest.fail("the container's systemd did not finish booting")

    def sh(self, command: str, timeout_s: float = 120) -> subprocess.CompletedProcess:
        return run(
            "nsenter",
            "-t",
            str(self.init_pid),
            "-a",
            "sh",
            "-c",
            command,
            timeout_s=timeout_s,
        )


@pytest.fixture(scope="module")
def machine(docker_client) -> Iterator[Machine]:
    make_root()
    nspawn = subprocess.Popen(
        [
            "systemd-nspawn",
            "-D",
            str(ROOT),
            "--boot",
            "--register=no",
            "--keep-unit",
            "--console=passive",
            "--machine=rulectl-test",
            f"--bind-ro={PYTHON_ROOT}",
            f"--bind-ro={REPO}",
            "--bind=/var/run/docker.sock",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    m = Machine(nspawn)
    try:
        m.wait_booted()
        yield m
    finally:
        if m.init_pid:
            m.sh("systemctl poweroff")
        try:
            nspawn.wait(timeout=60)
        except subprocess.TimeoutExpired:
            nspawn.kill()
            nspawn.wait()


def test_install_start_reload_stop_uninstall_under_systemd(machine):
    rulectl = f"{sys.executable} -m rulectl"
    # The root is kept between runs: start from nothing installed.
    machine.sh(f"systemctl stop rulectl; cd {REPO} && {rulectl} uninstall --purge")
    installed = machine.sh(f"cd {REPO} && {rulectl} install")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert "running systemctl enable rulectl.service" in installed.stdout
    assert machine.sh("systemctl is-enabled rulectl").stdout.strip() == "enabled"

    started = machine.sh("systemctl start rulectl")  # returns after READY=1
    assert started.returncode == 0, started.stderr
    status = machine.sh("systemctl show rulectl -p ActiveState -p StatusText").stdout
    assert "ActiveState=active" in status
    assert "StatusText=3 rules; a tick every 20 s" in status
    assert "# rulectl-spawn" in machine.sh("crontab -l").stdout

    deadline = time.monotonic() + 60
    while (
        "StatusText=tick 1:"
        not in machine.sh("systemctl show rulectl -p StatusText").stdout
    ):
        assert time.monotonic() < deadline, machine.sh("journalctl -u rulectl").stdout
        time.sleep(1)

    machine.sh("systemctl reload rulectl")
    log = machine.sh("journalctl -u rulectl --no-pager").stdout
    assert "reload (SIGHUP)" in log or "rules reloaded" in log

    began = time.monotonic()
    stopped = machine.sh("systemctl stop rulectl")
    assert stopped.returncode == 0
    assert time.monotonic() - began < 10
    log = machine.sh("journalctl -u rulectl --no-pager").stdout
    assert "rulectl stopped cleanly" in log
    assert "# rulectl-spawn" not in machine.sh("crontab -l 2>&1").stdout
    assert machine.sh("systemctl show rulectl -p Result").stdout.strip() == (
        "Result=success"
    )

    removed = machine.sh(f"cd {REPO} && {rulectl} uninstall --purge")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert machine.sh("test -e /etc/systemd/system/rulectl.service").returncode == 1
    assert machine.sh("test -e /usr/local/bin/rulectl").returncode == 1
    assert machine.sh("test -e /etc/rulectl").returncode == 1
