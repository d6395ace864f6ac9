"""Grafana: the provisioning files, the dashboards' queries and start_grafana.

No Grafana runs here. Instead:
  - the provisioning and dashboard files are parsed, and every panel must name
    the data source uid that the provisioning file defines;
  - every panel query is expanded the way Grafana and the SQLite plugin
    expand it ($__from/$__to in epoch milliseconds, the plugin's one macro
    $__unixEpochGroupSeconds) and run against the database of a real daemon
    run that removed containers; results are checked against values
    recomputed here from the raw samples;
  - each way start_grafana can take runs against fakes, and the container
    way also against a real Docker engine with a stand-in image.

The real run and the stand-in container use the Docker engine the test set-up
started, shared with the rest of the suite. The daemon acts on every
container of that engine and, when it stops, removes every rulectl.managed
container there: run the suite on a host whose test load you can spare. Like
every Docker test here, these fail (never skip) when the engine is missing.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
import yaml

from rulectl import grafana, workload
from rulectl.config import Config
from rulectl.rules import load_rules

REPO = Path(__file__).resolve().parent.parent
SOURCE = REPO / "grafana"
DATASOURCES_FILE = SOURCE / "provisioning" / "datasources" / "rulectl.yaml"
PROVIDER_FILE = SOURCE / "provisioning" / "dashboards" / "rulectl.yaml"
DASHBOARD_FILES = sorted((SOURCE / "dashboards").glob("*.json"))
PLUGIN_TYPE = "frser-sqlite-datasource"
TEST_LABEL = "rulectl.test"


def load_dashboard(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def all_panels() -> list[tuple[str, dict[str, Any]]]:
    return [
        (load_dashboard(path)["uid"], panel)
        for path in DASHBOARD_FILES
        for panel in load_dashboard(path)["panels"]
    ]


PANELS = all_panels()
PANEL_IDS = [f"{uid}:{panel['title']}" for uid, panel in PANELS]


# -- how Grafana and the plugin turn a panel's SQL into the SQL that runs ----

# The plugin's macro syntax and its only macro, as in its pkg/plugin/macros.go:
# $__unixEpochGroupSeconds(col, n) becomes cast((col / n) as int) * n.
MACRO = re.compile(r"\$__([_a-zA-Z0-9]+)\(([^\)]*)\)")


def expand(sql: str, from_ms: int, to_ms: int) -> str:
    """The query as the plugin runs it for the range [from_ms, to_ms]."""
    sql = sql.replace("$__from", str(from_ms)).replace("$__to", str(to_ms))

    def macro(match: re.Match[str]) -> str:
        name, args = match.group(1), match.group(2).split(",")
        assert name == "unixEpochGroupSeconds", f"the plugin has no macro {name}"
        assert len(args) == 2, "the NULL gap filling form is not used here"
        seconds = int(args[1].strip())
        return f"cast(({args[0]} / {seconds}) as int) * {seconds}"

    return MACRO.sub(macro, sql)


def the_target(panel: dict[str, Any]) -> dict[str, Any]:
    assert len(panel["targets"]) == 1, panel["title"]
    return panel["targets"][0]


def panel_of(dashboard: str, title: str) -> dict[str, Any]:
    [panel] = [p for uid, p in PANELS if uid == dashboard and p["title"] == title]
    return panel


# -- (a) the files ------------------------------------------------------------


def test_datasource_file_defines_sqlite_and_postgres_with_fixed_uids():
    doc = yaml.safe_load(DATASOURCES_FILE.read_text())

    assert doc["apiVersion"] == 1
    by_uid = {ds["uid"]: ds for ds in doc["datasources"]}
    assert set(by_uid) == {"rulectl-sqlite", "rulectl-postgres"}
    sqlite = by_uid["rulectl-sqlite"]
    assert sqlite["type"] == PLUGIN_TYPE
    assert sqlite["jsonData"] == {
        "path": "/var/lib/rulectl/rulectl.db",
        "pathPrefix": "file:",
        "pathOptions": "mode=ro",
    }
    assert sqlite["isDefault"] is True
    postgres = by_uid["rulectl-postgres"]
    assert postgres["type"] == "postgres"
    assert postgres["secureJsonData"] == {"password": "${RULECTL_PG_PASSWORD}"}
    assert [ds.get("isDefault", False) for ds in doc["datasources"]].count(True) == 1


def test_dashboard_provider_loads_the_dashboards_into_the_rulectl_folder():
    doc = yaml.safe_load(PROVIDER_FILE.read_text())

    assert doc["apiVersion"] == 1
    [provider] = doc["providers"]
    assert provider["type"] == "file"
    assert provider["folder"] == "rulectl"
    assert provider["options"]["path"] == "/usr/share/rulectl/grafana/dashboards"


def test_both_dashboards_parse_and_have_the_panels_of_the_design():
    kinds = {
        load_dashboard(p)["title"]: sorted(
            panel["type"] for panel in load_dashboard(p)["panels"]
        )
        for p in DASHBOARD_FILES
    }

    expected = sorted(["stat"] * 3 + ["timeseries"] * 2 + ["piechart"] * 2 + ["table"])
    assert kinds == {"Containers": expected, "System processes": expected}
    titles = {panel["title"] for _, panel in PANELS}
    assert {"Total RAM", "Free RAM", "Used RAM", "RAM use over time"} <= titles
    assert "Containers removed per minute" in titles
    uids = [load_dashboard(p)["uid"] for p in DASHBOARD_FILES]
    assert sorted(uids) == ["rulectl-containers", "rulectl-processes"]


@pytest.mark.parametrize(("dashboard", "panel"), PANELS, ids=PANEL_IDS)
def test_every_panel_uses_the_provisioned_sqlite_data_source(dashboard, panel):
    provisioned = {
        ds["uid"]: ds["type"]
        for ds in yaml.safe_load(DATASOURCES_FILE.read_text())["datasources"]
    }
    target = the_target(panel)

    for reference in (panel["datasource"], target["datasource"]):
        assert reference == {"type": PLUGIN_TYPE, "uid": "rulectl-sqlite"}
        assert provisioned[reference["uid"]] == reference["type"]


@pytest.mark.parametrize(("dashboard", "panel"), PANELS, ids=PANEL_IDS)
def test_every_query_is_bounded_by_the_dashboard_time_range(dashboard, panel):
    target = the_target(panel)

    # The plugin's front end runs rawQueryText through Grafana's variables
    # and sends the result as queryText; both are stored the same.
    assert target["queryText"] == target["rawQueryText"]
    assert "$__from / 1000" in target["rawQueryText"]
    assert "$__to / 1000" in target["rawQueryText"]
    assert target["queryType"] in ("table", "time series")
    if panel["type"] in ("timeseries", "stat"):
        assert target["timeColumns"] == ["time"]


# -- (b) the queries against a real run ---------------------------------------


@dataclass
class Engine:
    client: docker.DockerClient
    url: str


@pytest.fixture(scope="module")
def engine(docker_client: docker.DockerClient) -> Iterator[Engine]:
    """The Docker engine the test set-up started, shared by the whole suite."""
    yield Engine(
        docker_client, os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    )


@dataclass
class RealRun:
    db: Path
    from_ms: int
    to_ms: int
    spawned: list[workload.SpawnedContainer] = field(default_factory=list)

    def connect(self) -> sqlite3.Connection:
        # Read-only, like the provisioned data source (pathOptions mode=ro).
        return sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)

    def query(self, sql: str) -> tuple[list[str], list[tuple]]:
        with self.connect() as con:
            cursor = con.execute(expand(sql, self.from_ms, self.to_ms))
            return [c[0] for c in cursor.description], cursor.fetchall()


@pytest.fixture(scope="module")
def real_run(
    engine: Engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RealRun]:
    """`rulectl run` for three ticks over 5 low, 3 high-mem and 2 high-cpu
    containers: the first tick removes 2 low and 3 high ones."""
    labels = {TEST_LABEL: uuid.uuid4().hex}
    rng = random.Random(7)
    spawned: list[workload.SpawnedContainer] = []
    for types, count in ((("low",), 5), (("high-mem",), 3), (("high-cpu",), 2)):
        cfg = workload.WorkloadConfig(types=types, high_mem_mib=64)
        spawned += workload.spawn(engine.client, cfg, count, rng, extra_labels=labels)
    time.sleep(1.0)  # let the high-mem containers touch their memory

    tmp = tmp_path_factory.mktemp("real-run")
    shutil.copytree(REPO / "rules", tmp / "rules")
    config = tmp / "config.yaml"
    config.write_text(
        "interval_s: 2\n"
        "rules_dir: rules\n"
        "data_dir: data\n"
        "cron: {enabled: false}\n"
        f'docker: {{url: "{engine.url}"}}\n'
        "workload: {high_mem_mib: 64}\n"
        "guard: {stop_grace_s: 2}\n"
    )
    db = tmp / "data" / "rulectl.db"

    started_s = time.time()
    daemon = subprocess.Popen(
        [sys.executable, "-m", "rulectl", "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd="/",
    )
    try:
        _wait_for_ticks(db, 3, daemon)
    finally:
        daemon.send_signal(signal.SIGTERM)
        output, _ = daemon.communicate(timeout=60)
    stopped_s = time.time()
    assert daemon.returncode == 0, output

    yield RealRun(
        db=db,
        from_ms=int((started_s - 60) * 1000),
        to_ms=int((stopped_s + 60) * 1000),
        spawned=spawned,
    )
    workload.remove_managed(engine.client, extra_labels=labels)


def _wait_for_ticks(db: Path, ticks: int, daemon: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            pytest.fail(f"the daemon exited early:\n{daemon.stdout.read()}")
        try:
            with sqlite3.connect(db) as con:
                (done,) = con.execute("select count(*) from host_samples").fetchone()
            if done >= ticks:
                return
        except sqlite3.OperationalError:
            pass  # the file exists before its tables do
        time.sleep(0.3)
    pytest.fail(f"the daemon did not record {ticks} ticks within 120 s")


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@pytest.mark.parametrize(("dashboard", "panel"), PANELS, ids=PANEL_IDS)
def test_every_panel_query_returns_what_its_panel_needs(real_run, dashboard, panel):
    target = the_target(panel)

    columns, rows = real_run.query(target["rawQueryText"])

    assert rows, f"{panel['title']}: no rows"
    for name in target["timeColumns"]:
        index = columns.index(name)
        for row in rows:
            # epoch seconds, as the plugin expects of a numeric time column
            assert real_run.from_ms / 1000 - 60 <= row[index] <= real_run.to_ms / 1000
    if panel["type"] in ("stat", "timeseries"):
        assert columns[0] == "time"
        values = [c for c in columns[1:] if c != "rule"]
        assert values
        assert all(is_number(row[columns.index(c)]) for row in rows for c in values)
    if panel["type"] == "stat":
        assert len(columns) == 2
    if panel["type"] == "piechart":
        # one text column names each slice, one number sizes it
        assert len(columns) == 2
        assert 1 <= len(rows) <= 5
        assert all(isinstance(r[0], str) and is_number(r[1]) for r in rows)
        assert len({r[0] for r in rows}) == len(rows)


def test_ram_stats_show_the_newest_host_sample(real_run):
    by_title = {p["title"]: p for uid, p in PANELS if uid == "rulectl-containers"}
    with real_run.connect() as con:
        newest = con.execute(
            "select mem_total_kb, mem_free_kb, mem_used_kb from host_samples "
            "order by time desc limit 1"
        ).fetchone()

    shown = [
        real_run.query(the_target(by_title[title])["rawQueryText"])[1][-1][1]
        for title in ("Total RAM", "Free RAM", "Used RAM")
    ]

    assert shown == [kb * 1024 for kb in newest]


def test_removed_per_minute_counts_the_five_removals_of_the_first_tick(real_run):
    panel = panel_of("rulectl-containers", "Containers removed per minute")

    columns, rows = real_run.query(the_target(panel)["rawQueryText"])

    assert columns == ["time", "rule", "removed"]
    per_rule: dict[str, int] = {}
    for _, rule, removed in rows:
        per_rule[rule] = per_rule.get(rule, 0) + removed
    assert per_rule == {"keep-three-low": 2, "keep-two-high": 3}
    assert all(t % 60 == 0 for t, _, _ in rows)


def test_containers_ram_over_time_sums_the_container_rss_of_each_tick(real_run):
    panel = panel_of("rulectl-containers", "RAM use over time")
    with real_run.connect() as con:
        expected = con.execute(
            "select h.time, h.mem_used_kb * 1024, "
            "(select sum(mem_rss_kb) * 1024 from container_samples c "
            " where c.time = h.time) from host_samples h order by h.time"
        ).fetchall()

    columns, rows = real_run.query(the_target(panel)["rawQueryText"])

    assert columns == ["time", "host used", "containers RSS"]
    assert rows == expected
    assert len(rows) >= 3


def removed_ids(run: RealRun) -> set[str]:
    with run.connect() as con:
        rows = con.execute(
            "select container_id from decisions "
            "where action = 'remove' and outcome = 'done'"
        ).fetchall()
    return {r[0] for r in rows}


def container_ranking(run: RealRun, value_sql: str) -> list[tuple[str, float]]:
    """Labels and values recomputed from the raw rows, best first."""
    with run.connect() as con:
        samples = con.execute(
            f"select container_id, name, {value_sql} from container_samples"
        ).fetchall()
        pids = dict(
            con.execute(
                "select container_id, min(pid) from process_samples "
                "where container_id is not null group by container_id"
            ).fetchall()
        )
    values: dict[str, list[float]] = {}
    names: dict[str, str] = {}
    for cid, name, value in samples:
        names[cid] = name
        if value is not None:
            values.setdefault(cid, []).append(value)
    return [
        (f"{names[cid]} {cid[:12]} pid {pids.get(cid, '?')}", value)
        for cid, value in sorted(
            ((cid, agg) for cid, agg in _aggregate(values, value_sql)),
            key=lambda item: (-item[1], item[0]),
        )
    ]


def _aggregate(values: dict[str, list[float]], value_sql: str):
    for cid, seen in values.items():
        if value_sql == "mem_rss_kb":
            yield cid, max(seen) * 1024
        else:
            yield cid, sum(seen) / len(seen)


def test_top_five_containers_by_ram_is_the_peak_rss_ranking(real_run):
    expected = container_ranking(real_run, "mem_rss_kb")[:5]

    _, rows = real_run.query(
        the_target(panel_of("rulectl-containers", "Top 5 containers by RAM"))[
            "rawQueryText"
        ]
    )

    assert rows == expected
    for label, _ in rows:
        assert re.fullmatch(r"\S+ [0-9a-f]{12} pid (\d+|\?)", label), label


def test_top_five_containers_by_cpu_is_the_average_cpu_ranking(real_run):
    expected = container_ranking(real_run, "cpu_percent")[:5]

    _, rows = real_run.query(
        the_target(panel_of("rulectl-containers", "Top 5 containers by CPU"))[
            "rawQueryText"
        ]
    )

    assert [r[0] for r in rows] == [e[0] for e in expected]
    assert [r[1] for r in rows] == pytest.approx([e[1] for e in expected])


@pytest.mark.parametrize(
    ("dashboard", "title"),
    [
        ("rulectl-containers", "Top 5 containers by RAM"),
        ("rulectl-containers", "Top 5 containers by CPU"),
        ("rulectl-processes", "Top 5 processes by RAM"),
        ("rulectl-processes", "Top 5 processes by CPU"),
    ],
)
def test_pie_rankings_include_the_removed_containers(real_run, dashboard, title):
    sql = the_target(panel_of(dashboard, title))["rawQueryText"]
    assert sql.rstrip().endswith("LIMIT 5")
    removed = removed_ids(real_run)
    assert len(removed) == 5

    # The whole ranking the top 5 are cut from: every removed container is in
    # it, although none of them runs any more.
    _, rows = real_run.query(sql.rstrip()[: -len("LIMIT 5")] + "LIMIT -1")

    labels = " | ".join(r[0] for r in rows)
    for container_id in removed:
        assert container_id[:12] in labels


def test_top_five_processes_by_ram_is_the_peak_rss_ranking(real_run):
    with real_run.connect() as con:
        expected = con.execute(
            "select pid, name, coalesce(substr(container_id, 1, 12), 'host'), "
            "max(rss_kb) * 1024 from process_samples "
            "group by pid, name, container_id"
        ).fetchall()
    expected.sort(key=lambda r: (-r[3], r[0], r[1]))

    _, rows = real_run.query(
        the_target(panel_of("rulectl-processes", "Top 5 processes by RAM"))[
            "rawQueryText"
        ]
    )

    assert rows == [(f"pid {p} {n} {c}", v) for p, n, c, v in expected[:5]]


def test_latest_decisions_table_lists_every_decision_newest_first(real_run):
    with real_run.connect() as con:
        (count,) = con.execute("select count(*) from decisions").fetchone()

    columns, rows = real_run.query(
        the_target(panel_of("rulectl-containers", "Latest decisions and why"))[
            "rawQueryText"
        ]
    )

    assert columns == [
        "time",
        "rule",
        "action",
        "container",
        "id",
        "rank",
        "outcome",
        "reason",
        "detail",
    ]
    assert len(rows) == min(count, 200)
    assert [r[0] for r in rows] == sorted((r[0] for r in rows), reverse=True)
    done = [r for r in rows if r[2] == "remove" and r[6] == "done"]
    assert len(done) == 5
    assert all(r[7].startswith("rank ") for r in done)


def test_heaviest_processes_table_shows_the_newest_sample(real_run):
    with real_run.connect() as con:
        (newest,) = con.execute("select max(time) from process_samples").fetchone()
        (count,) = con.execute(
            "select count(*) from process_samples where time = ?", (newest,)
        ).fetchone()

    columns, rows = real_run.query(
        the_target(
            panel_of("rulectl-processes", "Heaviest processes in the latest sample")
        )["rawQueryText"]
    )

    assert columns[:3] == ["time", "pid", "name"]
    assert {r[0] for r in rows} == {newest}
    assert len(rows) == min(count, 25)
    rss = [r[columns.index("rss")] for r in rows]
    assert rss == sorted(rss, reverse=True)


# -- (c) start_grafana: rendering ---------------------------------------------


def make_config(tmp_path: Path, **overrides: Any) -> Config:
    return Config(
        path=tmp_path / "config.yaml", data_dir=tmp_path / "data", **overrides
    )


def read_yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def datasource(provisioning: Path, uid: str) -> dict[str, Any]:
    doc = read_yaml(provisioning / "datasources" / "rulectl.yaml")
    return {ds["uid"]: ds for ds in doc["datasources"]}[uid]


def test_installed_datasource_points_at_the_configured_sqlite_file(tmp_path):
    config = make_config(tmp_path)
    layout = grafana.Layout(SOURCE, config.data_dir / "grafana", config.db_url)

    layout.install(layout.provisioning, "/where/grafana/sees/dashboards")

    sqlite = datasource(layout.provisioning, "rulectl-sqlite")
    assert sqlite["jsonData"]["path"] == str(tmp_path / "data" / "rulectl.db")
    assert sqlite["jsonData"]["pathOptions"] == "mode=ro"
    provider = read_yaml(layout.provisioning / "dashboards" / "rulectl.yaml")
    assert provider["providers"][0]["options"]["path"] == (
        "/where/grafana/sees/dashboards"
    )
    assert sorted(p.name for p in layout.dashboards.iterdir()) == [
        "containers.json",
        "system-processes.json",
    ]


def test_postgres_url_fills_host_user_and_database_but_never_the_password(
    tmp_path,
):
    url = "postgresql://rulectl:s3cret@db.example:5433/fleet"
    config = make_config(tmp_path, database_url=url)
    layout = grafana.Layout(SOURCE, config.data_dir / "grafana", config.db_url)

    layout.install(layout.provisioning, "/d")

    postgres = datasource(layout.provisioning, "rulectl-postgres")
    assert postgres["url"] == "db.example:5433"
    assert postgres["user"] == "rulectl"
    assert postgres["jsonData"]["database"] == "fleet"
    assert postgres["secureJsonData"] == {"password": "${RULECTL_PG_PASSWORD}"}
    text = (layout.provisioning / "datasources" / "rulectl.yaml").read_text()
    assert "s3cret" not in text


def test_installing_twice_reports_no_change_the_second_time(tmp_path):
    config = make_config(tmp_path)
    layout = grafana.Layout(SOURCE, config.data_dir / "grafana", config.db_url)

    first = layout.install(layout.provisioning, "/d")
    second = layout.install(layout.provisioning, "/d")

    assert (first, second) == (True, False)


# -- (c) start_grafana: the ways, with fakes ----------------------------------


class FakeHost:
    """PATH, systemctl and Popen as a test wants them; records every call."""

    def __init__(
        self,
        on_path: tuple[str, ...] = (),
        unit: str = "not-found",
        active: bool = False,
        start_status: int = 0,
        exits_with: int | None = None,
        port_taken: bool = False,
    ) -> None:
        self.on_path = on_path
        self.unit = unit
        self.active = active
        self.start_status = start_status
        self.exits_with = exits_with
        self.port_taken = port_taken
        self.commands: list[list[str]] = []
        self.spawned: list[dict[str, Any]] = []

    def tools(self) -> grafana.HostTools:
        return grafana.HostTools(
            which=lambda name: f"/opt/bin/{name}" if name in self.on_path else None,
            run=self.run,
            popen=self.popen,
            port_open=lambda host, port: self.port_taken,
            sleep=lambda seconds: None,
            uid_gid=lambda: (1000, 1000),
        )

    def run(self, command: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
        self.commands.append(command)
        if command[1] == "show":
            return subprocess.CompletedProcess(command, 0, f"{self.unit}\n", "")
        if command[1] == "is-active":
            return subprocess.CompletedProcess(command, 0 if self.active else 3)
        if command[1] == "start":
            return subprocess.CompletedProcess(
                command, self.start_status, "", "Job failed"
            )
        raise AssertionError(f"unexpected command {command}")

    def popen(self, command: list[str], **kwargs: Any) -> Any:
        self.spawned.append({"command": command, **kwargs})
        exits_with = self.exits_with

        class Process:
            pid = 4242

            def poll(self) -> int | None:
                return exits_with

        return Process()


class FakeImage:
    def __init__(self, tags: list[str], created: str) -> None:
        self.tags = tags
        self.attrs = {"Created": created}


class FakeDocker:
    """Just what start_grafana asks of a Docker client; pulling fails."""

    def __init__(self, tags: list[str], existing: list[dict] | None = None) -> None:
        self.run_calls: list[tuple[str, dict[str, Any]]] = []
        self.started: list[str] = []
        images = [FakeImage([tag], f"2024-01-0{i + 1}") for i, tag in enumerate(tags)]
        outer = self

        class Images:
            def list(self) -> list[FakeImage]:
                return images

            def pull(self, *args: Any, **kwargs: Any) -> None:
                raise AssertionError("start_grafana must never pull")

        class Containers:
            def run(self, image: str, **kwargs: Any) -> Any:
                outer.run_calls.append((image, kwargs))
                return type("Container", (), {"id": "c0ffee" * 10 + "abcd"})()

        class Api:
            def containers(self, **kwargs: Any) -> list[dict]:
                return existing or []

            def start(self, container_id: str) -> None:
                outer.started.append(container_id)

        self.images = Images()
        self.containers = Containers()
        self.api = Api()


def test_service_way_installs_the_files_and_starts_the_unit(tmp_path):
    host = FakeHost(on_path=("systemctl", "grafana-server"), unit="loaded")
    system = tmp_path / "etc-grafana-provisioning"
    config = make_config(tmp_path)

    status = grafana.start_grafana(
        config, tools=host.tools(), system_provisioning_dir=system
    )

    assert (status.way, status.running) == ("service", True)
    assert ["systemctl", "start", "grafana-server.service"] in host.commands
    assert host.spawned == []
    sqlite = datasource(system, "rulectl-sqlite")
    assert sqlite["jsonData"]["path"] == str(config.data_dir / "rulectl.db")
    provider = read_yaml(system / "dashboards" / "rulectl.yaml")
    assert provider["providers"][0]["options"]["path"] == str(
        config.data_dir / "grafana" / "dashboards"
    )


def test_service_already_running_with_new_files_asks_for_a_restart(tmp_path, caplog):
    host = FakeHost(on_path=("systemctl",), unit="loaded", active=True)

    with caplog.at_level(logging.WARNING, logger="rulectl.grafana"):
        status = grafana.start_grafana(
            make_config(tmp_path),
            tools=host.tools(),
            system_provisioning_dir=tmp_path / "prov",
        )

    assert (status.way, status.running) == ("service", True)
    [warning] = caplog.records
    assert "systemctl restart grafana-server.service" in warning.getMessage()


def test_service_that_fails_to_start_is_a_warning_not_an_error(tmp_path, caplog):
    host = FakeHost(on_path=("systemctl",), unit="loaded", start_status=1)

    with caplog.at_level(logging.WARNING, logger="rulectl.grafana"):
        status = grafana.start_grafana(
            make_config(tmp_path),
            tools=host.tools(),
            system_provisioning_dir=tmp_path / "prov",
        )

    assert (status.way, status.running) == ("service", False)
    [warning] = caplog.records
    assert "journalctl -u grafana-server.service" in warning.getMessage()


def test_binary_way_starts_grafana_server_with_the_rendered_provisioning(tmp_path):
    host = FakeHost(on_path=("grafana-server",))
    config = make_config(tmp_path)

    status = grafana.start_grafana(config, tools=host.tools(), port=3999)

    assert (status.way, status.running, status.pid) == ("binary", True, 4242)
    assert status.url == "http://127.0.0.1:3999"
    [spawned] = host.spawned
    assert spawned["command"][0] == "/opt/bin/grafana-server"
    provisioning = config.data_dir / "grafana" / "provisioning"
    assert spawned["env"]["GF_PATHS_PROVISIONING"] == str(provisioning)
    assert spawned["env"]["GF_SERVER_HTTP_ADDR"] == "127.0.0.1"
    assert spawned["env"]["GF_SERVER_HTTP_PORT"] == "3999"
    assert spawned["start_new_session"] is True
    sqlite = datasource(provisioning, "rulectl-sqlite")
    assert sqlite["jsonData"]["path"] == str(config.data_dir / "rulectl.db")


def test_binary_named_grafana_is_started_with_the_server_subcommand(tmp_path):
    host = FakeHost(on_path=("grafana",))

    grafana.start_grafana(make_config(tmp_path), tools=host.tools())

    assert host.spawned[0]["command"][:2] == ["/opt/bin/grafana", "server"]


def test_binary_that_exits_at_once_is_a_warning(tmp_path, caplog):
    host = FakeHost(on_path=("grafana-server",), exits_with=1)

    with caplog.at_level(logging.WARNING, logger="rulectl.grafana"):
        status = grafana.start_grafana(make_config(tmp_path), tools=host.tools())

    assert (status.way, status.running) == ("binary", False)
    [warning] = caplog.records
    assert "exited at once with status 1" in warning.getMessage()


def test_binary_is_not_started_twice_when_the_port_answers(tmp_path):
    host = FakeHost(on_path=("grafana-server",), port_taken=True)

    status = grafana.start_grafana(make_config(tmp_path), tools=host.tools())

    assert (status.way, status.running) == ("binary", True)
    assert host.spawned == []


def test_image_way_runs_the_newest_local_grafana_image_protected(tmp_path):
    client = FakeDocker(
        ["busybox:latest", "grafana/grafana-oss:10.4.0", "grafana/grafana:11.1.0"]
    )
    config = make_config(tmp_path)

    status = grafana.start_grafana(
        config, docker_client=client, tools=FakeHost().tools()
    )

    assert (status.way, status.running) == ("container", True)
    [(image, kwargs)] = client.run_calls
    assert image == "grafana/grafana:11.1.0"
    assert kwargs["name"] == "grafana"
    assert kwargs["labels"]["rulectl.protect"] == "true"
    assert kwargs["ports"] == {"3000/tcp": ("127.0.0.1", 3000)}
    assert kwargs["user"] == "1000:1000"
    target = config.data_dir / "grafana"
    assert kwargs["volumes"] == {
        str(target / "provisioning"): {
            "bind": "/etc/grafana/provisioning",
            "mode": "ro",
        },
        str(target / "dashboards"): {
            "bind": "/etc/grafana/rulectl-dashboards",
            "mode": "ro",
        },
        str(target / "data"): {"bind": "/var/lib/grafana", "mode": "rw"},
        str(config.data_dir): {"bind": str(config.data_dir), "mode": "rw"},
    }


def test_running_grafana_container_is_left_as_it_is(tmp_path):
    running = [{"Id": "ab" * 32, "State": "running", "Labels": {}}]
    client = FakeDocker(["grafana/grafana:11.1.0"], existing=running)

    status = grafana.start_grafana(
        make_config(tmp_path), docker_client=client, tools=FakeHost().tools()
    )

    assert (status.way, status.running) == ("container", True)
    assert client.run_calls == [] and client.started == []


def test_stopped_container_of_someone_else_named_grafana_is_not_touched(
    tmp_path, caplog
):
    stopped = [{"Id": "cd" * 32, "State": "exited", "Labels": {}}]
    client = FakeDocker(["grafana/grafana:11.1.0"], existing=stopped)

    with caplog.at_level(logging.WARNING, logger="rulectl.grafana"):
        status = grafana.start_grafana(
            make_config(tmp_path), docker_client=client, tools=FakeHost().tools()
        )

    assert (status.way, status.running) == ("container", False)
    assert client.run_calls == [] and client.started == []
    assert "did not create" in caplog.records[0].getMessage()


def test_no_grafana_anywhere_gives_exactly_one_warning_with_the_install_hint(
    tmp_path, caplog
):
    client = FakeDocker(["busybox:latest", "rulectl/workload:low"])

    with caplog.at_level(logging.DEBUG, logger="rulectl.grafana"):
        status = grafana.start_grafana(
            make_config(tmp_path), docker_client=client, tools=FakeHost().tools()
        )

    assert (status.way, status.running) == ("none", False)
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert message.startswith("Grafana not started: ")
    assert "grafana cli plugins install frser-sqlite-datasource" in message
    assert "no local grafana/grafana* image" in message


def test_unreachable_docker_is_named_in_the_one_warning(tmp_path, caplog):
    config = make_config(tmp_path, docker_url=f"unix://{tmp_path}/no.sock")

    with caplog.at_level(logging.DEBUG, logger="rulectl.grafana"):
        status = grafana.start_grafana(config, tools=FakeHost().tools())

    assert status.way == "none"
    [record] = caplog.records
    assert "Docker is not reachable" in record.getMessage()


def test_broken_provisioning_files_are_a_warning_never_an_exception(tmp_path, caplog):
    broken = tmp_path / "broken"
    shutil.copytree(SOURCE, broken)
    (broken / "provisioning" / "datasources" / "rulectl.yaml").write_text(
        "datasources: ["
    )
    host = FakeHost(on_path=("grafana-server",))

    with caplog.at_level(logging.WARNING, logger="rulectl.grafana"):
        status = grafana.start_grafana(
            make_config(tmp_path), tools=host.tools(), source_dir=broken
        )

    assert (status.way, status.running) == ("none", False)
    assert caplog.records[0].levelno == logging.WARNING
    assert host.spawned == []


# -- (c) start_grafana: the image way against a real engine ------------------


def free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_local_grafana_image_runs_as_a_protected_container_with_the_mounts(
    engine, tmp_path
):
    client = engine.client
    if client.api.containers(all=True, filters={"name": "^/grafana$"}):
        pytest.fail(
            "a container named grafana exists on this engine; this test needs the "
            "name and will not touch a real Grafana",
            pytrace=False,
        )
    workload.ensure_images(client, workload.WorkloadConfig())
    # The stand-in: the locally built FROM-scratch workload image, tagged as
    # a Grafana image. It sleeps, which is all this test needs of it.
    client.images.get("rulectl/workload:low").tag("grafana/grafana", "rulectl-test")
    config = make_config(tmp_path, docker_url=engine.url)
    port = free_loopback_port()
    no_local_grafana = grafana.HostTools(which=lambda name: None)

    try:
        status = grafana.start_grafana(
            config, docker_client=client, tools=no_local_grafana, port=port
        )
        again = grafana.start_grafana(
            config, docker_client=client, tools=no_local_grafana, port=port
        )

        assert (status.way, status.running) == ("container", True)
        assert again.detail.endswith("already running")
        container = client.containers.get("grafana")
        assert container.id == status.container_id == again.container_id
        assert container.status == "running"
        assert container.attrs["Config"]["Image"] == "grafana/grafana:rulectl-test"
        assert container.labels["rulectl.protect"] == "true"
        host_config = container.attrs["HostConfig"]
        target = config.data_dir / "grafana"
        assert sorted(host_config["Binds"]) == sorted(
            [
                f"{target / 'provisioning'}:/etc/grafana/provisioning:ro",
                f"{target / 'dashboards'}:/etc/grafana/rulectl-dashboards:ro",
                f"{target / 'data'}:/var/lib/grafana:rw",
                f"{config.data_dir}:{config.data_dir}:rw",
            ]
        )
        assert host_config["PortBindings"] == {
            "3000/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]
        }
        assert host_config["RestartPolicy"]["Name"] == "unless-stopped"
        sqlite = datasource(target / "provisioning", "rulectl-sqlite")
        assert sqlite["jsonData"]["path"] == str(config.data_dir / "rulectl.db")

        # Both protect entries of the shipped rules cover it, each on its own.
        ruleset = load_rules([REPO / "rules"]).ruleset
        image = "grafana/grafana:rulectl-test"
        for name, labels in (("grafana", {}), ("other", container.labels)):
            assert any(m.matches(name, image, labels) for m in ruleset.protect)
    finally:
        for summary in client.api.containers(all=True, filters={"name": "^/grafana$"}):
            client.api.remove_container(summary["Id"], force=True)
        client.images.remove("grafana/grafana:rulectl-test")

    assert client.api.containers(all=True, filters={"name": "^/grafana$"}) == []
