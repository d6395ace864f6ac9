"""Act: carries out approved decisions through the Docker API.

    stop    SIGTERM, a grace period, then SIGKILL (Docker's stop)
    kill    SIGKILL at once
    remove  stop as above, then delete the container
    log     nothing: the decision is only recorded

A container that vanished between deciding and acting is not an error: Docker
answers 404, or 409 "is not running" / "removal already in progress"
(moby/moby#36068), and the decision is recorded as gone.
"""

from __future__ import annotations

import logging
from datetime import datetime

import docker
import docker.errors

from rulectl.guard import FreshState
from rulectl.model import Decision

log = logging.getLogger(__name__)

_GONE_PHRASES = (
    "is not running",
    "removal of container",
    "already in progress",
    "no such container",
)


class DockerActor:
    def __init__(self, client: docker.DockerClient, stop_grace_s: int) -> None:
        self.api = client.api
        self.stop_grace_s = stop_grace_s

    def inspect(self, container_id: str) -> FreshState | None:
        """Fresh state for the guard; None when the container is gone."""
        try:
            info = self.api.inspect_container(container_id)
        except docker.errors.NotFound:
            return None
        config = info.get("Config") or {}
        return FreshState(
            id=info["Id"],
            name=info.get("Name", "").lstrip("/"),
            image=config.get("Image", ""),
            labels=dict(config.get("Labels") or {}),
            running=bool((info.get("State") or {}).get("Running")),
            created=_epoch(info.get("Created", "")),
        )

    def carry_out(self, d: Decision) -> None:
        """Runs one pending decision and sets its outcome and detail."""
        if d.action == "log":
            d.outcome, d.detail = "done", "recorded only"
            return
        try:
            if d.action == "kill":
                self.api.kill(d.container_id)
            else:
                self._stop(d.container_id)
            if d.action == "remove":
                self.api.remove_container(d.container_id)
        except docker.errors.APIError as exc:
            if _is_gone(exc):
                d.outcome, d.detail = "gone", f"vanished while acting: {_explain(exc)}"
            else:
                d.outcome, d.detail = "failed", _explain(exc)
            return
        except (docker.errors.DockerException, OSError) as exc:
            d.outcome, d.detail = "failed", f"Docker unreachable: {exc}"
            return
        d.outcome = "done"
        d.detail = {
            "stop": f"stopped (SIGTERM, SIGKILL after {self.stop_grace_s} s)",
            "kill": "killed (SIGKILL)",
            "remove": f"stopped (grace {self.stop_grace_s} s) and removed",
        }[d.action]

    def _stop(self, container_id: str) -> None:
        try:
            self.api.stop(container_id, timeout=self.stop_grace_s)
        except docker.errors.APIError as exc:
            # Already stopped is what stop wanted; a remove goes on from here.
            if exc.status_code not in (304, 409) or "is not running" not in str(exc):
                raise


def _is_gone(exc: docker.errors.APIError) -> bool:
    if exc.status_code == 404:
        return True
    text = str(exc.explanation or exc).lower()
    return exc.status_code == 409 and any(p in text for p in _GONE_PHRASES)


def _explain(exc: docker.errors.APIError) -> str:
    return f"Docker answered {exc.status_code}: {exc.explanation or exc}"


def _epoch(created: str) -> float:
    """Docker's RFC 3339 creation time (nanoseconds, Z) as epoch seconds."""
    if not created:
        return 0.0
    text = created.replace("Z", "+00:00")
    if "." in text:
        head, tail = text.split(".", 1)
        digits = tail.split("+")[0].split("-")[0]
        zone = tail[len(digits) :]
        text = f"{head}.{digits[:6]}{zone}"
    return datetime.fromisoformat(text).timestamp()
