"""Shared fixtures: the local Docker engine and clean-up of test containers.

Tests that need Docker talk to the real engine that scripts/setup-host.sh
starts. When it cannot be reached they fail, never skip: a suite that passes
without its engine has tested nothing.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator

import docker
import docker.errors
import pytest

TEST_LABEL = "rulectl.test"


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        problem = str(exc)
    else:
        problem = None
    if problem is not None:
        pytest.fail(
            f"the Docker engine is unreachable ({problem}); start it with "
            f"scripts/setup-host.sh (or run the suite through scripts/test.sh)",
            pytrace=False,
        )
    yield client
    client.close()


@pytest.fixture
def test_labels(docker_client: docker.DockerClient) -> Iterator[dict[str, str]]:
    """A label unique to this test; its containers are removed afterwards."""
    labels = {TEST_LABEL: uuid.uuid4().hex}
    yield labels

    selector = f"{TEST_LABEL}={labels[TEST_LABEL]}"
    leftovers = docker_client.api.containers(all=True, filters={"label": selector})
    for summary in leftovers:
        try:
            docker_client.api.remove_container(summary["Id"], force=True)
        except docker.errors.NotFound:
            pass


@pytest.fixture
def saved_crontab() -> Iterator[None]:
    """Root's crontab as it was before the test, put back afterwards."""
    before = subprocess.run(["crontab", "-l"], capture_output=True)
    yield
    if before.returncode == 0:
        subprocess.run(["crontab", "-"], input=before.stdout, check=True)
    else:
        subprocess.run(["crontab", "-r"], capture_output=True)
