"""The workload images and containers, against the real local Docker engine.

Resource use is read where the daemon reads it, from /proc on the host, never
from the Docker stats API.
"""

from __future__ import annotations

import os
import random
import re
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
import requests

from rulectl import workload
from rulectl.workload import SpawnedContainer, WorkloadConfig, WorkloadError

TEST_MEM_MIB = 96  # not the default 256, to show the size needs no rebuild
STOP_GRACE_S = 10
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
NAME_PATTERN = re.compile(r"rulectl-(low|high-cpu|high-mem)-[0-9a-f]{6}")


class CyclingRandom(random.Random):
    """Picks the types in turn, so a spawn of 3k gives k of each."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed)
        self.picks = 0

    def choice(self, seq: Sequence[Any]) -> Any:
        picked = seq[self.picks % len(seq)]
        self.picks += 1
        return picked


class RepeatingBitsRandom(CyclingRandom):
    """Returns the given name suffixes in order, to force name collisions."""

    def __init__(self, suffixes: list[int]) -> None:
        super().__init__()
        self.suffixes = list(suffixes)

    def getrandbits(self, k: int) -> int:
        return self.suffixes.pop(0)


def pid_of(client: docker.DockerClient, container_id: str) -> int:
    return client.api.inspect_container(container_id)["State"]["Pid"]


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")


def cpu_time_s(pid: int) -> float:
    """utime + stime of /proc/PID/stat; the name may hold spaces and ')'."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is the state (stat field 3); utime and stime are fields 14, 15.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S


def cores_used(pids: list[int], window_s: float = 1.0) -> list[float]:
    start_cpu = [cpu_time_s(pid) for pid in pids]
    start = time.monotonic()
    time.sleep(window_s)
    end_cpu = [cpu_time_s(pid) for pid in pids]
    elapsed_s = time.monotonic() - start
    return [(e - s) / elapsed_s for s, e in zip(start_cpu, end_cpu, strict=True)]


def managed_ids(client: docker.DockerClient, labels: dict[str, str]) -> set[str]:
    selectors = [f"{key}={value}" for key, value in labels.items()]
    found = client.api.containers(all=True, filters={"label": selectors})
    return {summary["Id"] for summary in found}


@pytest.fixture
def test_image_cfg(docker_client: docker.DockerClient) -> Iterator[WorkloadConfig]:
    """A config whose images do not exist yet; they are deleted afterwards."""
    cfg = WorkloadConfig(image_prefix=f"rulectl-test/workload-{uuid.uuid4().hex[:8]}")
    yield cfg
    for workload_type in cfg.types:
        try:
            docker_client.images.remove(cfg.image_tag(workload_type), force=True)
        except docker.errors.ImageNotFound:
            pass


@pytest.fixture(scope="module")
def six_workloads(
    docker_client: docker.DockerClient,
) -> Iterator[list[SpawnedContainer]]:
    """Two containers of each type, shared by the tests that only look."""
    labels = {"rulectl.test": uuid.uuid4().hex}
    cfg = WorkloadConfig(high_mem_mib=TEST_MEM_MIB)
    try:
        yield workload.spawn(
            docker_client, cfg, 6, CyclingRandom(), extra_labels=labels
        )
    finally:
        workload.remove_managed(docker_client, extra_labels=labels)


def test_ensure_images_builds_only_what_is_missing(
    docker_client: docker.DockerClient, test_image_cfg: WorkloadConfig
) -> None:
    cfg = test_image_cfg
    all_tags = [cfg.image_tag(t) for t in ("low", "high-cpu", "high-mem")]

    assert workload.ensure_images(docker_client, cfg) == all_tags
    assert workload.ensure_images(docker_client, cfg) == []

    docker_client.images.remove(cfg.image_tag("high-cpu"))
    assert workload.ensure_images(docker_client, cfg) == [cfg.image_tag("high-cpu")]


def test_images_hold_only_the_static_binary_and_know_their_mode(
    docker_client: docker.DockerClient, test_image_cfg: WorkloadConfig
) -> None:
    workload.ensure_images(docker_client, test_image_cfg)

    for workload_type, mode in workload.MODE_BY_TYPE.items():
        image = docker_client.images.get(test_image_cfg.image_tag(workload_type))
        config = image.attrs["Config"]
        assert config["Entrypoint"] == ["/workload"]
        assert f"WORKLOAD_MODE={mode}" in config["Env"]
        assert len(image.labels[workload.LABEL_SOURCE]) == 64
        # FROM scratch plus one static binary: well under a base image's size.
        assert image.attrs["Size"] < 2 * 1024 * 1024


def test_image_run_without_command_uses_its_own_mode(
    docker_client: docker.DockerClient,
    test_image_cfg: WorkloadConfig,
    test_labels: dict[str, str],
) -> None:
    workload.ensure_images(docker_client, test_image_cfg)
    expected_line = {"low": "sleeping", "high-cpu": "burning one core"}

    for workload_type, line in expected_line.items():
        container = docker_client.containers.run(
            test_image_cfg.image_tag(workload_type),
            detach=True,
            labels=test_labels,
            network_mode="none",
        )
        deadline = time.monotonic() + 10
        while b"workload: " not in container.logs() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert container.logs().decode() == f"workload: {line}\n"


def test_missing_gcc_is_a_clear_error(
    docker_client: docker.DockerClient,
    test_image_cfg: WorkloadConfig,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(WorkloadError, match="apt-get install gcc libc6-dev"):
        workload.ensure_images(docker_client, test_image_cfg)


def test_missing_static_libc_is_a_clear_error(
    docker_client: docker.DockerClient,
    test_image_cfg: WorkloadConfig,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A gcc that, like the real one without libc6-dev, cannot find libc.a.
    fake_gcc = tmp_path / "gcc"
    fake_gcc.write_text('#!/bin/sh\nprintf "%s\\n" "${1#-print-file-name=}"\n')
    fake_gcc.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(WorkloadError, match=r"libc\.a.*apt-get install gcc libc6-dev"):
        workload.ensure_images(docker_client, test_image_cfg)


def test_spawn_names_labels_and_types(
    docker_client: docker.DockerClient, six_workloads: list[SpawnedContainer]
) -> None:
    assert sorted(c.type for c in six_workloads) == sorted(
        ["low", "high-cpu", "high-mem"] * 2
    )
    assert len({c.name for c in six_workloads}) == 6

    for spawned in six_workloads:
        match = NAME_PATTERN.fullmatch(spawned.name)
        assert match is not None and match.group(1) == spawned.type
        attrs = docker_client.api.inspect_container(spawned.id)
        assert attrs["Name"] == f"/{spawned.name}"
        assert attrs["State"]["Running"] is True
        assert attrs["Config"]["Image"] == f"rulectl/workload:{spawned.type}"
        assert attrs["Config"]["Labels"]["rulectl.type"] == spawned.type
        assert attrs["Config"]["Labels"]["rulectl.managed"] == "true"
        assert attrs["HostConfig"]["AutoRemove"] is False
        assert attrs["HostConfig"]["Memory"] > 0


def test_high_mem_container_holds_its_size_resident(
    docker_client: docker.DockerClient, six_workloads: list[SpawnedContainer]
) -> None:
    expected_kb = TEST_MEM_MIB * 1024
    for spawned in six_workloads:
        if spawned.type != "high-mem":
            continue
        attrs = docker_client.api.inspect_container(spawned.id)
        assert attrs["Config"]["Cmd"] == ["mem", str(TEST_MEM_MIB)]

        pid = attrs["State"]["Pid"]
        deadline = time.monotonic() + 10
        while rss_kb(pid) < expected_kb and time.monotonic() < deadline:
            time.sleep(0.05)
        # The block itself plus the static binary's own few hundred KiB.
        assert expected_kb <= rss_kb(pid) <= expected_kb + 4 * 1024


def test_high_cpu_container_burns_a_core_and_low_one_does_not(
    docker_client: docker.DockerClient, six_workloads: list[SpawnedContainer]
) -> None:
    cpu_pids = [
        pid_of(docker_client, c.id) for c in six_workloads if c.type == "high-cpu"
    ]
    low_pids = [pid_of(docker_client, c.id) for c in six_workloads if c.type == "low"]

    usage = cores_used(cpu_pids + low_pids)

    # A busy loop runs whenever it gets a core; on a loaded 2-core host that
    # can be well under one, but never near the idle ones' nothing.
    assert all(cores > 0.2 for cores in usage[: len(cpu_pids)]), usage
    assert all(cores < 0.05 for cores in usage[len(cpu_pids) :]), usage


def test_docker_stop_ends_each_workload_by_sigterm(
    docker_client: docker.DockerClient, test_labels: dict[str, str]
) -> None:
    cfg = WorkloadConfig(high_mem_mib=TEST_MEM_MIB)
    spawned = workload.spawn(
        docker_client, cfg, 3, CyclingRandom(), extra_labels=test_labels
    )

    for container in spawned:
        handle = docker_client.containers.get(container.id)
        start = time.monotonic()
        handle.stop(timeout=STOP_GRACE_S)
        elapsed_s = time.monotonic() - start
        handle.reload()

        # Exit status 0 is our handler's; a SIGKILL after the grace gives 137.
        assert handle.attrs["State"]["ExitCode"] == 0, container
        assert elapsed_s < STOP_GRACE_S, (container, elapsed_s)


def test_spawn_draws_a_new_name_when_one_is_taken(
    docker_client: docker.DockerClient, test_labels: dict[str, str]
) -> None:
    cfg = WorkloadConfig(types=("low",))
    taken, free = 0xABC123, 0xABC124
    rng = RepeatingBitsRandom([taken, taken, free])

    first, second = workload.spawn(docker_client, cfg, 2, rng, extra_labels=test_labels)

    assert first.name == "rulectl-low-abc123"
    assert second.name == "rulectl-low-abc124"


def test_remove_managed_counts_a_container_removed_meanwhile_as_gone(
    docker_client: docker.DockerClient,
    test_labels: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spawned = workload.spawn(
        docker_client, WorkloadConfig(), 3, CyclingRandom(), extra_labels=test_labels
    )
    real_list = docker_client.api.containers
    vanished = spawned[0].id

    def list_then_lose_one(*args: Any, **kwargs: Any) -> Any:
        listed = real_list(*args, **kwargs)
        docker_client.api.remove_container(vanished, force=True)
        return listed

    monkeypatch.setattr(docker_client.api, "containers", list_then_lose_one)

    assert workload.remove_managed(docker_client, extra_labels=test_labels) == 3
    monkeypatch.undo()
    assert managed_ids(docker_client, test_labels) == set()


class FakeApi:
    """Answers remove_container with a scripted error per container id."""

    def __init__(self, errors: dict[str, Exception | None]) -> None:
        self.errors = errors
        self.removed: list[str] = []

    def containers(self, **kwargs: Any) -> list[dict[str, Any]]:
        return [{"Id": cid, "Names": [f"/{cid}"]} for cid in self.errors]

    def remove_container(self, container_id: str, force: bool = False) -> None:
        self.removed.append(container_id)
        error = self.errors[container_id]
        if error is not None:
            raise error


class FakeClient:
    def __init__(self, api: FakeApi) -> None:
        self.api = api


def api_error(status: int, message: str) -> docker.errors.APIError:
    response = requests.Response()
    response.status_code = status
    response.url = "http+docker://localhost/containers/x"
    return docker.errors.APIError("remove", response=response, explanation=message)


def test_remove_managed_treats_409_going_away_answers_as_gone() -> None:
    api = FakeApi(
        {
            "a": None,
            "b": api_error(409, "removal of container b is already in progress"),
            "c": api_error(409, "Container c is not running"),
            "d": docker.errors.NotFound("No such container: d"),
        }
    )

    assert workload.remove_managed(FakeClient(api)) == 4  # type: ignore[arg-type]


def test_remove_managed_tries_every_container_before_reporting_failures() -> None:
    api = FakeApi({"a": api_error(500, "driver failed"), "b": None})

    with pytest.raises(WorkloadError, match="1 managed containers not removed: a"):
        workload.remove_managed(FakeClient(api))  # type: ignore[arg-type]
    assert api.removed == ["a", "b"]


@pytest.mark.parametrize(
    "kwargs", [{"types": ("low", "bogus")}, {"types": ()}, {"high_mem_mib": 0}]
)
def test_config_rejects_unknown_types_and_sizes(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        WorkloadConfig(**kwargs)
