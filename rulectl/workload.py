"""Test load: the three local workload images and the containers started from them.

This is what `rulectl spawn` (and so the cron job) runs, and what the daemon
calls on shut-down to remove the containers it caused to be started.

Images are built on this host from `rulectl/workload/`: `workload.c` is
compiled with `gcc -static` into a temporary build context next to the
`Dockerfile` (FROM scratch), so no registry is ever contacted. One image per
type, tagged `<image_prefix>:<type>`:

    type       mode   what the container does
    low        low    sleeps
    high-cpu   cpu    keeps one core busy
    high-mem   mem    holds `high_mem_mib` MiB resident, then sleeps

The memory size is passed as the container's command argument, so changing it
needs no rebuild. Each image carries a label with the hash of the sources it
was built from; an image built from older sources counts as missing.

Containers are labelled `rulectl.managed=true` and `rulectl.type=<type>`, which
is how `remove_managed` and the rules find them. They are never started with
`auto_remove`: removing them is the daemon's job, and a container that removes
itself would vanish while the daemon is looking at it.
"""

from __future__ import annotations

import hashlib
import logging
import random
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import docker
import docker.errors

log = logging.getLogger(__name__)

LABEL_MANAGED = "rulectl.managed"
LABEL_TYPE = "rulectl.type"
LABEL_SOURCE = "rulectl.workload.source"

MODE_BY_TYPE = {"low": "low", "high-cpu": "cpu", "high-mem": "mem"}

# Memory limit of a container above what its workload needs: the static binary,
# its stack and page tables fit in a few MiB. The limit keeps a typo in
# high_mem_mib, or a bug in workload.c, from eating the host.
MEM_LIMIT_HEADROOM_MIB = 32

# Attempts at a free container name before giving up (6 hex digits collide
# rarely, but a seeded rng replays the same names run after run).
NAME_ATTEMPTS = 8

GCC_FLAGS = ("-static", "-O2", "-Wall", "-Wextra")
INSTALL_HINT = "install it with: apt-get install gcc libc6-dev"


class WorkloadError(Exception):
    """The workload images could not be built or the containers not handled."""


@dataclass(frozen=True)
class WorkloadConfig:
    image_prefix: str = "rulectl/workload"
    high_mem_mib: int = 256
    types: tuple[str, ...] = ("low", "high-cpu", "high-mem")
    # CPU cap per container in cores (None: none). A soak on a small host
    # caps the high-CPU load so that it does not starve the host it watches.
    cpu_limit: float | None = None

    def __post_init__(self) -> None:
        unknown = [t for t in self.types if t not in MODE_BY_TYPE]
        if unknown or not self.types:
            raise ValueError(
                f"workload types must be some of {sorted(MODE_BY_TYPE)}, "
                f"got {list(self.types)}"
            )
        if self.high_mem_mib < 1:
            raise ValueError(f"high_mem_mib must be >= 1, got {self.high_mem_mib}")

    def image_tag(self, workload_type: str) -> str:
        return f"{self.image_prefix}:{workload_type}"


@dataclass(frozen=True)
class SpawnedContainer:
    id: str
    name: str
    type: str


def ensure_images(client: docker.DockerClient, cfg: WorkloadConfig) -> list[str]:
    """Build the images of `cfg.types` that are missing or outdated.

    Returns the tags built, in the order of `cfg.types` (empty if none was).
    """
    sources = _read_sources()
    digest = _sources_digest(sources)
    missing = [t for t in cfg.types if not _image_is_current(client, cfg, t, digest)]
    if not missing:
        return []

    built = []
    with tempfile.TemporaryDirectory(prefix="rulectl-workload-") as context_dir:
        _prepare_context(Path(context_dir), sources)
        for workload_type in missing:
            tag = cfg.image_tag(workload_type)
            _build_image(client, Path(context_dir), tag, workload_type, digest)
            built.append(tag)
    return built


def spawn(
    client: docker.DockerClient,
    cfg: WorkloadConfig,
    count: int,
    rng: random.Random | None = None,
    *,
    extra_labels: Mapping[str, str] | None = None,
) -> list[SpawnedContainer]:
    """Start `count` detached workload containers of types drawn from `rng`.

    Missing images are built first. `extra_labels` are added to every
    container (tests use them to find exactly what they started).
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if count == 0:
        return []
    ensure_images(client, cfg)
    rng = rng if rng is not None else random.Random()

    spawned = []
    for _ in range(count):
        workload_type = rng.choice(cfg.types)
        spawned.append(_start(client, cfg, workload_type, rng, extra_labels or {}))
    log.info(
        "spawned %d workload containers: %s",
        len(spawned),
        ", ".join(c.name for c in spawned),
    )
    return spawned


def remove_managed(
    client: docker.DockerClient,
    *,
    extra_labels: Mapping[str, str] | None = None,
    spare: Callable[[str, str, dict[str, str]], bool] | None = None,
) -> int:
    """Force-remove every container labelled rulectl.managed=true.

    `extra_labels` narrows the selection further; a container for which
    `spare(name, image, labels)` is true is left alone (protected ones). A
    container that disappears while this runs counts as removed. Returns how
    many are gone; raises WorkloadError after trying them all if any could
    not be removed.
    """
    filters = [f"{LABEL_MANAGED}=true"]
    filters += [f"{key}={value}" for key, value in (extra_labels or {}).items()]
    # The low-level list returns summaries in one call; the high-level one
    # inspects each container afterwards and fails with 404 when one of them
    # is removed between the two steps.
    summaries = client.api.containers(all=True, filters={"label": filters})

    gone = 0
    failures = []
    for summary in summaries:
        container_id = summary["Id"]
        name = _summary_name(summary)
        labels = dict(summary.get("Labels") or {})
        if spare is not None and spare(name, summary.get("Image", ""), labels):
            log.info("leaving protected container %s", name)
            continue
        try:
            client.api.remove_container(container_id, force=True)
        except docker.errors.NotFound:
            log.info("container %s was already gone", name)
        except docker.errors.APIError as exc:
            if not _is_already_going(exc):
                log.warning("could not remove container %s: %s", name, exc)
                failures.append(f"{name}: {exc}")
                continue
            log.info("container %s was already going away: %s", name, exc)
        else:
            log.info("removed container %s", name)
        gone += 1

    if failures:
        raise WorkloadError(
            f"{len(failures)} managed containers not removed: " + "; ".join(failures)
        )
    return gone


def _read_sources() -> dict[str, bytes]:
    package_dir = resources.files("rulectl").joinpath("workload")
    return {
        name: package_dir.joinpath(name).read_bytes()
        for name in ("Dockerfile", "workload.c")
    }


def _sources_digest(sources: Mapping[str, bytes]) -> str:
    digest = hashlib.sha256(" ".join(GCC_FLAGS).encode())
    for name in sorted(sources):
        digest.update(name.encode() + b"\0" + sources[name])
    return digest.hexdigest()


def _image_is_current(
    client: docker.DockerClient, cfg: WorkloadConfig, workload_type: str, digest: str
) -> bool:
    tag = cfg.image_tag(workload_type)
    try:
        image = client.images.get(tag)
    except docker.errors.ImageNotFound:
        log.info("workload image %s is missing", tag)
        return False
    if image.labels.get(LABEL_SOURCE) != digest:
        log.info("workload image %s was built from older sources", tag)
        return False
    return True


def _prepare_context(context_dir: Path, sources: Mapping[str, bytes]) -> None:
    for name, content in sources.items():
        (context_dir / name).write_bytes(content)
    _compile_static(context_dir / "workload.c", context_dir / "workload")
    (context_dir / "workload.c").unlink()


def _compile_static(source: Path, binary: Path) -> None:
    gcc = shutil.which("gcc")
    if gcc is None:
        raise WorkloadError(
            f"gcc is needed to build the workload images; {INSTALL_HINT}"
        )

    # Without libc.a, gcc answers with the bare file name instead of a path.
    libc = subprocess.run(
        [gcc, "-print-file-name=libc.a"], capture_output=True, text=True, check=False
    )
    if libc.returncode != 0 or not Path(libc.stdout.strip()).is_absolute():
        raise WorkloadError(
            f"the static C library (libc.a) is missing, so gcc cannot link the "
            f"workload statically; {INSTALL_HINT}"
        )

    result = subprocess.run(
        [gcc, *GCC_FLAGS, "-o", str(binary), str(source)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise WorkloadError(
            f"gcc could not build the workload (exit {result.returncode}): "
            f"{result.stderr.strip()[-2000:]}"
        )


def _build_image(
    client: docker.DockerClient,
    context_dir: Path,
    tag: str,
    workload_type: str,
    digest: str,
) -> None:
    log.info("building workload image %s", tag)
    try:
        client.images.build(
            path=str(context_dir),
            tag=tag,
            buildargs={"WORKLOAD_MODE": MODE_BY_TYPE[workload_type]},
            labels={LABEL_SOURCE: digest},
            rm=True,
            forcerm=True,
        )
    except docker.errors.BuildError as exc:
        lines = [str(chunk.get("stream", chunk)).strip() for chunk in exc.build_log]
        raise WorkloadError(
            f"building {tag} failed: {exc.msg}; last output: {lines[-5:]}"
        ) from exc
    except docker.errors.APIError as exc:
        raise WorkloadError(f"building {tag} failed: {exc}") from exc


def _command(cfg: WorkloadConfig, workload_type: str) -> list[str]:
    mode = MODE_BY_TYPE[workload_type]
    if mode == "mem":
        return [mode, str(cfg.high_mem_mib)]
    return [mode]


def _mem_limit_mib(cfg: WorkloadConfig, workload_type: str) -> int:
    if MODE_BY_TYPE[workload_type] == "mem":
        return cfg.high_mem_mib + MEM_LIMIT_HEADROOM_MIB
    return MEM_LIMIT_HEADROOM_MIB


def _start(
    client: docker.DockerClient,
    cfg: WorkloadConfig,
    workload_type: str,
    rng: random.Random,
    extra_labels: Mapping[str, str],
) -> SpawnedContainer:
    labels = {**extra_labels, LABEL_MANAGED: "true", LABEL_TYPE: workload_type}
    for _ in range(NAME_ATTEMPTS):
        name = f"rulectl-{workload_type}-{rng.getrandbits(24):06x}"
        try:
            container = client.containers.create(
                cfg.image_tag(workload_type),
                command=_command(cfg, workload_type),
                name=name,
                labels=labels,
                mem_limit=f"{_mem_limit_mib(cfg, workload_type)}m",
                # The test load talks to nobody; without a network it also
                # starts when the engine's bridge is unavailable.
                network_mode="none",
                nano_cpus=int(cfg.cpu_limit * 1e9) if cfg.cpu_limit else None,
            )
        except docker.errors.APIError as exc:
            if exc.status_code == 409 and "already in use" in str(exc):
                log.info("container name %s is taken, drawing another", name)
                continue
            raise WorkloadError(f"could not create {name}: {exc}") from exc
        try:
            container.start()
        except docker.errors.APIError as exc:
            # Leave nothing half-made behind: a created container that never
            # ran would sit there, invisible to the rules, until removed.
            container.remove(force=True)
            raise WorkloadError(f"could not start {name}: {exc}") from exc
        log.debug("started %s (%s)", name, container.id[:12])
        return SpawnedContainer(id=container.id, name=name, type=workload_type)
    raise WorkloadError(f"no free container name after {NAME_ATTEMPTS} attempts")


def _summary_name(summary: Mapping[str, object]) -> str:
    names = summary.get("Names") or []
    if isinstance(names, list) and names:
        return str(names[0]).lstrip("/")
    return str(summary["Id"])[:12]


def _is_already_going(exc: docker.errors.APIError) -> bool:
    """True for the 409 answers that mean someone else is removing it."""
    if exc.status_code != 409:
        return False
    text = str(exc.explanation or exc).lower()
    return "already in progress" in text or "is not running" in text
