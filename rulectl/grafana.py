"""Grafana: install rulectl's provisioning files and start Grafana, if this host can.

The daemon calls `start_grafana` once at start-up. The files shipped in
`grafana/` of the repository (data sources with fixed uids, the dashboard
provider, the two dashboards) are installed for this host: the SQLite data
source points at the database the daemon writes and the provider at the
installed dashboards. Then the first way that exists here is taken:

    way        when                                  what is done
    service    a grafana-server systemd unit         files into Grafana's
                                                     provisioning directory,
                                                     `systemctl start`
    binary     grafana-server or grafana on PATH     started in the background,
                                                     GF_PATHS_PROVISIONING set
    container  a local image grafana/grafana*        run as container `grafana`,
               (never pulled)                        labelled rulectl.protect,
                                                     on 127.0.0.1:3000
    none       none of the above                     one warning saying what
                                                     to install

Nothing here stops the daemon: every failure is logged as a warning and
`GrafanaStatus` says what happened. The pieces that touch the host (PATH
lookup, subprocesses, the port probe, the Docker client) are parameters, so
tests drive every branch without Grafana.

Files written under <data_dir>/grafana/:

    provisioning/datasources/rulectl.yaml   data sources (binary, container)
    provisioning/dashboards/rulectl.yaml    dashboard provider (binary, container)
    dashboards/*.json                       the dashboards (every way)
    data/                                   Grafana's own state (container)
    grafana.log                             output of a binary started here

Known limits:
  1. Grafana reads data sources only when it starts. If the grafana-server
     service was already running and rulectl changed its files, a warning
     asks for a restart; rulectl does not restart a service it did not start.
  2. A Grafana started from a binary or a container keeps running after the
     daemon stops, like the service does: it is part of the host's set-up,
     not of one daemon run. Under rulectl's systemd unit a binary started
     here is in rulectl's cgroup, so stopping the service stops it too
     (KillMode=mixed); install Grafana as its own service to keep it up.
  3. The frser-sqlite-datasource plugin is not installed by rulectl. The
     binary and the container ask Grafana to install it at start-up
     (GF_PLUGINS_PREINSTALL, which older Grafana versions ignore); that needs
     network access. See grafana/README.md for offline hosts.
  4. None of this has run against a real Grafana: none could be installed
     where it was written; grafana/README.md says what the tests check.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import yaml
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from rulectl import systemd
from rulectl.config import Config

log = logging.getLogger(__name__)

SERVICE = "grafana-server.service"
BINARIES = ("grafana-server", "grafana")
IMAGE_REPOSITORY = "grafana/grafana"
CONTAINER_NAME = "grafana"
CONTAINER_LABELS = {"rulectl.protect": "true", "rulectl.grafana": "true"}
PLUGIN = "frser-sqlite-datasource"
SQLITE_UID = "rulectl-sqlite"
POSTGRES_UID = "rulectl-postgres"
DEFAULT_PORT = 3000
LOOPBACK = "127.0.0.1"

# Where the files are found: the repository (a checkout or an editable
# install), else where an installed rulectl keeps them.
REPO_SOURCE = Path(__file__).resolve().parent.parent / "grafana"
INSTALLED_SOURCE = Path("/usr/share/rulectl/grafana")

# Where the Debian/RPM grafana-server service reads its provisioning files.
SYSTEM_PROVISIONING = Path("/etc/grafana/provisioning")

# Paths inside the Grafana container (those of the official image).
CONTAINER_PROVISIONING = "/etc/grafana/provisioning"
CONTAINER_DASHBOARDS = "/etc/grafana/rulectl-dashboards"
CONTAINER_DATA = "/var/lib/grafana"
CONTAINER_PORT = "3000/tcp"

# A binary that dies this soon after being started did not start.
STARTUP_CHECK_S = 1.0
SUBPROCESS_TIMEOUT_S = 30

INSTALL_HINT = (
    "install Grafana (Debian: the grafana package from apt.grafana.com, which "
    "brings the grafana-server service) and its SQLite plugin (grafana cli "
    "plugins install frser-sqlite-datasource), or load a grafana/grafana image "
    "into Docker (docker load); then restart rulectl. See grafana/README.md"
)


@dataclass(frozen=True)
class GrafanaStatus:
    """What start_grafana did. `way` is service, binary, container or none."""

    way: str
    running: bool
    detail: str
    url: str | None = None
    pid: int | None = None
    container_id: str | None = None


def _own_ids() -> tuple[int, int]:
    return os.getuid(), os.getgid()


def port_is_open(host: str, port: int) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class HostTools:
    """The ways start_grafana touches the host; tests pass fakes."""

    which: Callable[[str], str | None] = shutil.which
    run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run
    popen: Callable[..., Any] = subprocess.Popen
    port_open: Callable[[str, int], bool] = port_is_open
    sleep: Callable[[float], None] = time.sleep
    uid_gid: Callable[[], tuple[int, int]] = _own_ids


def start_grafana(
    config: Config,
    *,
    docker_client: docker.DockerClient | None = None,
    tools: HostTools | None = None,
    source_dir: Path | None = None,
    system_provisioning_dir: Path = SYSTEM_PROVISIONING,
    port: int = DEFAULT_PORT,
    extra_labels: Mapping[str, str] | None = None,
) -> GrafanaStatus:
    """Installs the provisioning files and starts Grafana the first way it can.

    Never raises: whatever goes wrong is logged as a warning and returned.
    `docker_client` is the daemon's client; without one, a client is made
    from the config for the image check only. `extra_labels` go on a
    container started here (tests use them).
    """
    tools = tools or HostTools()
    try:
        return _start(
            config,
            docker_client,
            tools,
            source_dir,
            system_provisioning_dir,
            port,
            dict(extra_labels or {}),
        )
    except Exception as exc:  # noqa: BLE001 - Grafana must never stop the daemon
        log.warning("Grafana not started: unexpected error: %s", exc, exc_info=True)
        return GrafanaStatus("none", False, f"unexpected error: {exc}")


def _start(
    config: Config,
    client: docker.DockerClient | None,
    tools: HostTools,
    source_dir: Path | None,
    system_provisioning_dir: Path,
    port: int,
    extra_labels: dict[str, str],
) -> GrafanaStatus:
    source = source_dir or find_source_dir()
    if source is None:
        detail = (
            f"the provisioning files are in neither {REPO_SOURCE} nor "
            f"{INSTALLED_SOURCE}; reinstall rulectl"
        )
        log.warning("Grafana not started: %s", detail)
        return GrafanaStatus("none", False, detail)

    files = Layout(source, config.data_dir / "grafana", config.db_url)

    if _service_exists(tools):
        return _via_service(files, tools, system_provisioning_dir)

    for name in BINARIES:
        binary = tools.which(name)
        if binary:
            return _via_binary(files, tools, Path(binary), port)

    problems: list[str] = []
    if client is None:
        client = _client_from_config(config, problems)
    image = _local_image(client, problems) if client is not None else None
    if client is not None and image is not None:
        return _via_container(files, tools, client, image, port, extra_labels)

    if client is not None and not problems:
        problems.append(f"Docker has no local {IMAGE_REPOSITORY}* image")
    detail = (
        f"no {SERVICE} unit, no {' or '.join(BINARIES)} on PATH, "
        f"{'; '.join(problems)}; {INSTALL_HINT}"
    )
    log.warning("Grafana not started: %s", detail)
    return GrafanaStatus("none", False, detail)


# -- provisioning files -----------------------------------------------------


def find_source_dir() -> Path | None:
    """The shipped `grafana/` directory: the repository's, else the installed."""
    for candidate in (REPO_SOURCE, INSTALLED_SOURCE):
        if (candidate / "provisioning" / "datasources" / "rulectl.yaml").is_file():
            return candidate
    return None


@dataclass(frozen=True)
class Layout:
    """The shipped files and where this host's copies of them go."""

    source: Path
    target: Path
    db_url: str

    @property
    def provisioning(self) -> Path:
        return self.target / "provisioning"

    @property
    def dashboards(self) -> Path:
        return self.target / "dashboards"

    def install(self, provisioning_dir: Path, dashboards_as_seen: str) -> bool:
        """Writes the data sources, the provider and the dashboards.

        `dashboards_as_seen` is the dashboards directory as Grafana sees it
        (a different path inside a container). Returns True when a file
        Grafana reads only at start-up (a data source) changed.
        """
        self.dashboards.mkdir(parents=True, exist_ok=True)
        for dashboard in sorted((self.source / "dashboards").glob("*.json")):
            _write_if_changed(self.dashboards / dashboard.name, dashboard.read_text())

        # Grafana logs an error for every provisioning subdirectory it cannot
        # list; empty ones keep its log about what matters.
        for sub in ("plugins", "alerting"):
            (provisioning_dir / sub).mkdir(parents=True, exist_ok=True)
        provider = render_provider(self.source, dashboards_as_seen)
        _write_if_changed(provisioning_dir / "dashboards" / "rulectl.yaml", provider)
        datasources = render_datasources(self.source, self.db_url)
        return _write_if_changed(
            provisioning_dir / "datasources" / "rulectl.yaml", datasources
        )


def sqlite_path(db_url: str) -> Path | None:
    """The database file of an SQLite URL; None for any other database."""
    try:
        url = make_url(db_url)
    except ArgumentError:
        return None
    if not url.drivername.startswith("sqlite") or not url.database:
        return None
    if url.database == ":memory:":
        return None
    return Path(url.database).absolute()


def render_datasources(source: Path, db_url: str) -> str:
    """The shipped data sources, pointed at this host's database."""
    shipped = source / "provisioning" / "datasources" / "rulectl.yaml"
    doc = yaml.safe_load(shipped.read_text())
    by_uid = {ds["uid"]: ds for ds in doc["datasources"]}

    db_file = sqlite_path(db_url)
    if db_file is not None:
        by_uid[SQLITE_UID]["jsonData"]["path"] = str(db_file)
    else:
        _fill_postgres(by_uid[POSTGRES_UID], db_url)
    return _generated_header(shipped) + yaml.safe_dump(doc, sort_keys=False)


def _fill_postgres(datasource: dict[str, Any], db_url: str) -> None:
    """Host, user and database from the URL; the password stays in the
    environment (RULECTL_PG_PASSWORD), never in a file rulectl writes."""
    try:
        url = make_url(db_url)
    except ArgumentError:
        return
    if not url.drivername.startswith("postgresql"):
        return
    if url.host:
        datasource["url"] = f"{url.host}:{url.port or 5432}"
    if url.username:
        datasource["user"] = url.username
    if url.database:
        datasource["jsonData"]["database"] = url.database


def render_provider(source: Path, dashboards_as_seen: str) -> str:
    """The shipped dashboard provider, pointed at the installed dashboards."""
    shipped = source / "provisioning" / "dashboards" / "rulectl.yaml"
    doc = yaml.safe_load(shipped.read_text())
    for provider in doc["providers"]:
        provider["options"]["path"] = dashboards_as_seen
    return _generated_header(shipped) + yaml.safe_dump(doc, sort_keys=False)


def _generated_header(shipped: Path) -> str:
    return (
        f"# Written by rulectl from {shipped}; edit that file, not this one:\n"
        f"# rulectl rewrites this copy every time it starts.\n"
    )


def _write_if_changed(path: Path, text: str) -> bool:
    if path.is_file() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return True


# -- way 1: the grafana-server service ----------------------------------------


def _service_exists(tools: HostTools) -> bool:
    if tools.which("systemctl") is None:
        return False
    # `show` answers "not-found" for a unit that does not exist, and fails
    # outright on a host not booted with systemd (a container, say).
    result = _systemctl(tools, "show", "--property=LoadState", "--value", SERVICE)
    return result.returncode == 0 and result.stdout.strip() == "loaded"


def _via_service(
    files: Layout, tools: HostTools, provisioning_dir: Path
) -> GrafanaStatus:
    try:
        changed = files.install(provisioning_dir, str(files.dashboards))
    except OSError as exc:
        changed = False
        log.warning(
            "Grafana: cannot write the provisioning files into %s (%s); starting "
            "%s without rulectl's data sources and dashboards",
            provisioning_dir,
            exc,
            SERVICE,
        )

    was_active = _systemctl(tools, "is-active", "--quiet", SERVICE).returncode == 0
    result = _systemctl(tools, "start", SERVICE)
    if result.returncode != 0:
        detail = (
            f"systemctl start {SERVICE} failed (exit {result.returncode}): "
            f"{(result.stderr or '').strip()[-300:]}; see journalctl -u {SERVICE}"
        )
        log.warning("Grafana not started: %s", detail)
        return GrafanaStatus("service", False, detail)

    if was_active and changed:
        log.warning(
            "Grafana: %s was already running and reads data sources only when it "
            "starts; restart it to load rulectl's: systemctl restart %s",
            SERVICE,
            SERVICE,
        )
    detail = (
        f"{SERVICE} {'already running' if was_active else 'started'}; "
        f"provisioning in {provisioning_dir}, dashboards in {files.dashboards}"
    )
    log.info("Grafana: %s", detail)
    return GrafanaStatus("service", True, detail)


def _systemctl(tools: HostTools, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return tools.run(
            ["systemctl", *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=SUBPROCESS_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(["systemctl", *args], 1, "", str(exc))


# -- way 2: a Grafana binary on PATH -----------------------------------------


def _via_binary(
    files: Layout, tools: HostTools, binary: Path, port: int
) -> GrafanaStatus:
    url = f"http://{LOOPBACK}:{port}"
    # Installed even when Grafana already runs: the one rulectl started last
    # time reads these files too, and rescans the dashboards while it runs.
    files.install(files.provisioning, str(files.dashboards))
    if tools.port_open(LOOPBACK, port):
        detail = (
            f"something already listens on {LOOPBACK}:{port}; not starting {binary}"
        )
        log.info("Grafana: %s", detail)
        return GrafanaStatus("binary", True, detail, url)

    command = (
        [str(binary)] if binary.name == "grafana-server" else [str(binary), "server"]
    )
    home = grafana_home(binary)
    if home is not None:
        command += ["--homepath", str(home)]
    env = {
        **systemd.without_notify_env(os.environ),
        "GF_PATHS_PROVISIONING": str(files.provisioning),
        "GF_SERVER_HTTP_ADDR": LOOPBACK,
        "GF_SERVER_HTTP_PORT": str(port),
        "GF_PLUGINS_PREINSTALL": PLUGIN,
    }
    log_path = files.target / "grafana.log"
    try:
        with open(log_path, "ab") as out:
            process = tools.popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=str(home or files.target),
                # Its own session: a Ctrl-C meant for the daemon is not meant
                # for Grafana, and Grafana outlives the daemon (limit 2).
                start_new_session=True,
            )
    except OSError as exc:
        detail = f"cannot run {binary}: {exc}"
        log.warning("Grafana not started: %s", detail)
        return GrafanaStatus("binary", False, detail)

    tools.sleep(STARTUP_CHECK_S)
    status = process.poll()
    if status is not None:
        detail = f"{binary} exited at once with status {status}; see {log_path}"
        log.warning("Grafana not started: %s", detail)
        return GrafanaStatus("binary", False, detail)

    detail = f"{' '.join(command)} started as pid {process.pid}, log in {log_path}"
    log.info("Grafana: %s; %s", detail, url)
    return GrafanaStatus("binary", True, detail, url, pid=process.pid)


def grafana_home(binary: Path) -> Path | None:
    """Grafana's home (conf/defaults.ini, public/): the tarball's top directory
    for <home>/bin/grafana-server, else where the packages put it."""
    for candidate in (binary.resolve().parent.parent, Path("/usr/share/grafana")):
        if (candidate / "conf" / "defaults.ini").is_file():
            return candidate
    return None


# -- way 3: a local Grafana image --------------------------------------------


def _client_from_config(
    config: Config, problems: list[str]
) -> docker.DockerClient | None:
    try:
        if config.docker_url:
            client = docker.DockerClient(base_url=config.docker_url, timeout=10)
        else:
            client = docker.from_env(timeout=10)
        client.ping()
        return client
    except (docker.errors.DockerException, OSError) as exc:
        problems.append(f"Docker is not reachable ({exc})")
        return None


def _local_image(client: docker.DockerClient, problems: list[str]) -> str | None:
    """The newest local image tagged grafana/grafana*; never pulls."""
    try:
        images = client.images.list()
    except (docker.errors.DockerException, OSError) as exc:
        problems.append(f"cannot list Docker images ({exc})")
        return None
    found = []
    for image in images:
        for tag in image.tags:
            repository = tag.rsplit(":", 1)[0]
            if repository.startswith(IMAGE_REPOSITORY):
                found.append((image.attrs.get("Created", ""), tag))
    if not found:
        return None
    return max(found)[1]


def _via_container(
    files: Layout,
    tools: HostTools,
    client: docker.DockerClient,
    image: str,
    port: int,
    extra_labels: dict[str, str],
) -> GrafanaStatus:
    url = f"http://{LOOPBACK}:{port}"
    try:
        existing = client.api.containers(
            all=True, filters={"name": f"^/{CONTAINER_NAME}$"}
        )
        if existing:
            return _reuse_container(client, existing[0], url)

        files.install(files.provisioning, CONTAINER_DASHBOARDS)
        (files.target / "data").mkdir(parents=True, exist_ok=True)
        uid, gid = tools.uid_gid()
        container = client.containers.run(
            image,
            name=CONTAINER_NAME,
            detach=True,
            labels={**extra_labels, **CONTAINER_LABELS},
            ports={CONTAINER_PORT: (LOOPBACK, port)},
            volumes=container_volumes(files),
            environment={
                "GF_PATHS_PROVISIONING": CONTAINER_PROVISIONING,
                "GF_PLUGINS_PREINSTALL": PLUGIN,
            },
            # The user that owns the data directory: Grafana writes its state
            # there and SQLite needs to write the database's -shm file.
            user=f"{uid}:{gid}",
            restart_policy={"Name": "unless-stopped"},
        )
    except (docker.errors.DockerException, OSError) as exc:
        detail = f"cannot run {image} as container {CONTAINER_NAME}: {exc}"
        log.warning("Grafana not started: %s", detail)
        return GrafanaStatus("container", False, detail)

    detail = (
        f"container {CONTAINER_NAME} ({container.id[:12]}) started from {image}, "
        f"protected by label rulectl.protect=true"
    )
    log.info("Grafana: %s; %s", detail, url)
    return GrafanaStatus("container", True, detail, url, container_id=container.id)


def container_volumes(files: Layout) -> dict[str, dict[str, str]]:
    """Bind mounts: provisioning and dashboards read-only, Grafana's state,
    and the database's directory at the same path as on the host, so the
    data source's `path` is right on both sides."""
    volumes = {
        str(files.provisioning): {"bind": CONTAINER_PROVISIONING, "mode": "ro"},
        str(files.dashboards): {"bind": CONTAINER_DASHBOARDS, "mode": "ro"},
        str(files.target / "data"): {"bind": CONTAINER_DATA, "mode": "rw"},
    }
    db_file = sqlite_path(files.db_url)
    if db_file is not None:
        volumes[str(db_file.parent)] = {"bind": str(db_file.parent), "mode": "rw"}
    return volumes


def _reuse_container(
    client: docker.DockerClient, summary: Mapping[str, Any], url: str
) -> GrafanaStatus:
    container_id = str(summary["Id"])
    labels = summary.get("Labels") or {}
    if summary.get("State") == "running":
        detail = f"container {CONTAINER_NAME} ({container_id[:12]}) already running"
        log.info("Grafana: %s; %s", detail, url)
        return GrafanaStatus("container", True, detail, url, container_id=container_id)
    if labels.get("rulectl.grafana") != "true":
        detail = (
            f"a stopped container named {CONTAINER_NAME} ({container_id[:12]}) "
            f"exists that rulectl did not create; leaving it alone (remove it "
            f"with docker rm {CONTAINER_NAME} to let rulectl start its own)"
        )
        log.warning("Grafana not started: %s", detail)
        return GrafanaStatus("container", False, detail, container_id=container_id)
    client.api.start(container_id)
    detail = f"container {CONTAINER_NAME} ({container_id[:12]}) started again"
    log.info("Grafana: %s; %s", detail, url)
    return GrafanaStatus("container", True, detail, url, container_id=container_id)
