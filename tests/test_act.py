"""Actions on real containers, including ones that vanish first (case C07)."""

from __future__ import annotations

import time

import docker.errors
import pytest
import requests

from rulectl import workload
from rulectl.act import DockerActor, _is_gone
from rulectl.collect import docker_lister
from rulectl.model import Decision


@pytest.fixture
def start(docker_client, test_labels):
    workload.ensure_images(docker_client, workload.WorkloadConfig())

    def run(kind: str = "low"):
        return docker_client.containers.run(
            f"rulectl/workload:{kind}",
            [kind if kind == "low" else "cpu"],
            detach=True,
            labels=test_labels,
            network_mode="none",
        )

    return run


def decide(container, action: str) -> Decision:
    return Decision("r", action, container.id, container.name, 1, "test")


def status(docker_client, container_id: str) -> str | None:
    try:
        return docker_client.api.inspect_container(container_id)["State"]["Status"]
    except docker.errors.NotFound:
        return None


def test_remove_stops_then_deletes(docker_client, start):
    c = start()
    d = decide(c, "remove")
    DockerActor(docker_client, stop_grace_s=2).carry_out(d)
    assert (d.outcome, d.detail) == ("done", "stopped (grace 2 s) and removed")
    assert status(docker_client, c.id) is None


def test_stop_and_kill_leave_the_container_stopped(docker_client, start):
    actor = DockerActor(docker_client, stop_grace_s=2)
    for action in ("stop", "kill"):
        c = start()
        d = decide(c, action)
        actor.carry_out(d)
        assert d.outcome == "done"
        assert status(docker_client, c.id) == "exited"


def test_kill_of_a_container_that_exited_on_its_own_is_gone(docker_client, start):
    c = start()
    c.kill()
    c.wait()
    d = decide(c, "kill")
    DockerActor(docker_client, stop_grace_s=2).carry_out(d)
    assert d.outcome == "gone"
    assert "409" in d.detail and "is not running" in d.detail


def test_remove_of_an_exited_container_still_removes_it(docker_client, start):
    c = start()
    c.kill()
    c.wait()
    d = decide(c, "remove")
    DockerActor(docker_client, stop_grace_s=2).carry_out(d)
    assert d.outcome == "done"
    assert status(docker_client, c.id) is None


def test_acting_on_a_removed_container_is_gone_not_an_error(docker_client, start):
    c = start()
    c.remove(force=True)
    actor = DockerActor(docker_client, stop_grace_s=2)
    for action in ("stop", "kill", "remove"):
        d = decide(c, action)
        actor.carry_out(d)
        assert d.outcome == "gone", (action, d.detail)
        assert d.detail.startswith("vanished while acting: Docker answered 404")
    assert actor.inspect(c.id) is None


def test_removal_already_in_progress_counts_as_gone():
    response = requests.Response()
    response.status_code = 409
    exc = docker.errors.APIError(
        "conflict",
        response=response,
        explanation="removal of container abc is already in progress",
    )
    assert _is_gone(exc)
    response.status_code = 500
    assert not _is_gone(
        docker.errors.APIError("x", response=response, explanation="disk full")
    )


def test_listing_that_fails_mid_way_yields_no_metadata_and_the_tick_goes_on():
    class Api:
        def containers(self, **_kwargs):
            response = requests.Response()
            response.status_code = 404
            raise docker.errors.NotFound("gone", response=response)

    class Client:
        api = Api()

    assert docker_lister(Client())() == []


def test_inspect_gives_fresh_state(docker_client, start):
    c = start()
    fresh = DockerActor(docker_client, stop_grace_s=2).inspect(c.id)
    assert fresh.id == c.id
    assert fresh.name == c.name
    assert fresh.running is True
    assert fresh.labels["rulectl.test"]
    assert 0 <= time.time() - fresh.created < 60


def test_stop_escalates_to_sigkill_after_the_grace_period(docker_client, test_labels):
    # SIGUSR1 has no handler in the workload, and PID 1 ignores signals it
    # does not handle: the stop signal is ignored and only SIGKILL ends it.
    workload.ensure_images(docker_client, workload.WorkloadConfig())
    c = docker_client.containers.run(
        "rulectl/workload:low",
        ["low"],
        detach=True,
        labels=test_labels,
        stop_signal="SIGUSR1",
        network_mode="none",
    )
    d = decide(c, "stop")
    started = time.monotonic()
    DockerActor(docker_client, stop_grace_s=2).carry_out(d)
    took_s = time.monotonic() - started

    assert d.outcome == "done"
    state = docker_client.api.inspect_container(c.id)["State"]
    assert (state["Status"], state["ExitCode"]) == ("exited", 137)  # SIGKILL
    assert 2 <= took_s < 8, f"the grace period was not honoured: {took_s:.1f} s"
