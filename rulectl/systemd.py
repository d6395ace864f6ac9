"""systemd integration: readiness, watchdog and stopping messages (sd_notify).

The service manager passes the address of its notification socket in
$NOTIFY_SOCKET; a message is one AF_UNIX datagram of newline-separated
`KEY=VALUE` lines. Written here without libsystemd so that the daemon has no
native dependency for it, and runs unchanged outside systemd: when
$NOTIFY_SOCKET is unset every call does nothing.

Messages the daemon sends, in order:
  READY=1     start-up is complete (Type=notify: only then is it "active")
  WATCHDOG=1  once per tick (WatchdogSec= in the unit)
  STOPPING=1  shut-down has begun
  STATUS=...  a line for `systemctl status`, at any time

Sending never raises: a daemon that cannot report to systemd still does its
work, and systemd notices the silence on its own (start timeout, watchdog).
The first failure is logged; later ones are not, so a broken socket does not
fill the log once per tick.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)

_failure_logged = False


def notify_ready(status: str = "") -> bool:
    """Start-up is complete; `status` is shown by `systemctl status`."""
    return _notify(["READY=1"] + ([_status_line(status)] if status else []))


def notify_watchdog(status: str = "") -> bool:
    """The daemon is alive: resets systemd's WatchdogSec= timer."""
    return _notify(["WATCHDOG=1"] + ([_status_line(status)] if status else []))


def notify_stopping(status: str = "") -> bool:
    """Shut-down has begun."""
    return _notify(["STOPPING=1"] + ([_status_line(status)] if status else []))


def notify_status(text: str) -> bool:
    """A one-line status for `systemctl status`."""
    return _notify([_status_line(text)])


def without_notify_env(env: Mapping[str, str]) -> dict[str, str]:
    """A copy of `env` for a long-lived child (Grafana started in the
    background): it would otherwise find $NOTIFY_SOCKET and report its own
    READY=1, which systemd refuses (NotifyAccess=main) with a journal
    warning, or be taken for the process the watchdog watches."""
    return {k: v for k, v in env.items() if k not in _NOTIFY_VARIABLES}


_NOTIFY_VARIABLES = frozenset({"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"})


def watchdog_interval_s() -> float | None:
    """The watchdog timeout systemd set for this process, in seconds.

    None when there is no watchdog, or when it was meant for another process
    ($WATCHDOG_PID names the one that must ping; a child that inherited the
    variables must not think it is watched).
    """
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    try:
        timeout_us = int(usec)
        if pid and int(pid) != os.getpid():
            return None
    except ValueError:
        return None
    return timeout_us / 1e6 if timeout_us > 0 else None


def _status_line(text: str) -> str:
    # A newline would start a new KEY=VALUE assignment.
    return "STATUS=" + " ".join(text.splitlines())


def _notify(lines: list[str]) -> bool:
    """Sends one message; True if it was sent, False if unset or failed."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    try:
        target = _socket_address(address)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto("\n".join(lines).encode("utf-8"), target)
    except (OSError, ValueError) as exc:
        _log_failure_once(address, exc)
        return False
    return True


def _socket_address(address: str) -> str | bytes:
    """A path, or an abstract-namespace name when it starts with `@`."""
    if address.startswith("@"):
        return b"\0" + address[1:].encode("utf-8")
    if address.startswith("/"):
        return address
    # systemd 253 and later may also pass vsock: addresses (virtual machines);
    # this host's systemd does not, and nothing else is meaningful here.
    raise ValueError(f"unsupported address {address!r}")


def _log_failure_once(address: str, exc: Exception) -> None:
    global _failure_logged
    if _failure_logged:
        return
    _failure_logged = True
    log.warning(
        "cannot notify systemd at %s: %s; this is not logged again, and "
        "systemd may take the service for hung or not started",
        address,
        exc,
    )
