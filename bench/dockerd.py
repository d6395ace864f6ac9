"""A private Docker engine for the benchmarks that need containers.

It has its own data root, exec root (so its own containerd), socket and pid
file under one temporary directory, no bridge and no iptables rules, and it
runs in a network namespace of its own: a dockerd started without a bridge
deletes the host's `docker0`, which would cut the host engine's containers
off; inside its own namespace there is no docker0 to delete. Containers
started there use no network. Nothing it does touches the host's engine.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 60


@contextlib.contextmanager
def private_dockerd(label: str) -> Iterator[tuple[object, str]]:
    """Starts dockerd; yields (docker client, socket URL); stops it after."""
    import docker

    if shutil.which("dockerd") is None:
        raise RuntimeError("dockerd is not installed (apt-get install docker.io)")
    root = Path(tempfile.mkdtemp(prefix=f"rulectl-bench-{label}-", dir="/tmp"))
    sock = root / "docker.sock"
    url = f"unix://{sock}"
    log = (root / "dockerd.log").open("wb")
    proc = subprocess.Popen(
        [
            # A network namespace of its own, nothing else: `ip netns exec`
            # would also remount /sys, hiding the cgroups dockerd needs.
            "unshare",
            "--net",
            "--",
            "dockerd",
            f"--data-root={root / 'data'}",
            f"--exec-root={root / 'exec'}",
            f"--host={url}",
            f"--pidfile={root / 'dockerd.pid'}",
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-forward=false",
            "--ip-masq=false",
            f"--cgroup-parent=rulectl-bench-{label}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    client = None
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"private dockerd exited ({proc.returncode}); see "
                    f"{root / 'dockerd.log'}:\n{_tail(root / 'dockerd.log')}"
                )
            try:
                client = docker.DockerClient(base_url=url, timeout=60)
                client.ping()
                break
            except Exception:  # noqa: BLE001 - not up yet
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"private dockerd did not answer in {START_TIMEOUT_S} s:\n"
                        f"{_tail(root / 'dockerd.log')}"
                    ) from None
                time.sleep(0.3)
        yield client, url
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                for c in client.api.containers(all=True):
                    client.api.remove_container(c["Id"], force=True)
            client.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        _remove_tree(root)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _remove_tree(root: Path) -> None:
    """Removes the engine's directory, unmounting what it left mounted."""
    with open("/proc/self/mounts") as f:
        mounts = [line.split()[1] for line in f]
    for mount in sorted(mounts, key=len, reverse=True):
        if mount.startswith(str(root) + os.sep):
            subprocess.run(["umount", "-l", mount], check=False)
    shutil.rmtree(root, ignore_errors=True)
