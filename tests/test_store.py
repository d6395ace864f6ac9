"""The SQLite store: typed tables, one transaction per tick, WAL, pruning."""

import sqlite3

import pytest

from rulectl.model import ContainerFacts, Decision, HostFacts, ProcessFacts, Snapshot
from rulectl.store import Store

CID = "ab" * 32


def snapshot(t: float) -> Snapshot:
    return Snapshot(
        t,
        HostFacts("node-1", 2, 1000, 400, 500, 12.5),
        [ContainerFacts(CID, "low-1", "img", {}, t - 5, [7], None, 100, 10.0, 200)],
        [ProcessFacts(7, 1, "sleep", "sleep 1", "S", CID, 200, 100, 10.0, 0.5)],
    )


def decision() -> Decision:
    d = Decision(
        "keep-three-low",
        "remove",
        CID,
        "low-1",
        1,
        "rank 1 of 4",
        {"mem_percent": 10.0},
    )
    d.outcome, d.detail = "done", "stopped and removed"
    return d


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'r.db'}", host="node-1")
    yield s
    s.close()


def test_tables_exist_with_explicit_types_before_any_insert(tmp_path, store):
    con = sqlite3.connect(tmp_path / "r.db")
    columns = {row[1]: row[2] for row in con.execute("pragma table_info(decisions)")}
    assert columns["time"] == "FLOAT"
    assert columns["rank"] == "BIGINT"
    assert columns["reason"] == "TEXT"
    host_columns = {r[1]: r[2] for r in con.execute("pragma table_info(host_samples)")}
    assert host_columns["cpu_percent"] == "FLOAT"
    assert con.execute("select count(*) from host_samples").fetchone() == (0,)


def test_wal_mode_and_busy_timeout(store):
    conn = store.db.executable
    assert conn.exec_driver_sql("pragma journal_mode").fetchone() == ("wal",)
    assert conn.exec_driver_sql("pragma busy_timeout").fetchone() == (10000,)


def test_a_tick_is_stored_with_host_and_epoch_seconds(tmp_path, store):
    store.record_tick(
        3, snapshot(1733318400.5), {CID: "low"}, [decision()], 1733318401.0
    )
    con = sqlite3.connect(tmp_path / "r.db")
    assert con.execute(
        "select time, host, tick, cpu_percent, mem_used_kb, n_containers "
        "from host_samples"
    ).fetchall() == [(1733318400.5, "node-1", 3, 12.5, 500, 1)]
    assert con.execute(
        "select name, type, cpu_percent, mem_rss_kb from container_samples"
    ).fetchall() == [("low-1", "low", None, 100)]
    assert con.execute(
        "select time, rule, container_name, rank, outcome, facts from decisions"
    ).fetchall() == [
        (1733318401.0, "keep-three-low", "low-1", 1, "done", '{"mem_percent": 10.0}')
    ]


def test_a_tick_that_fails_half_way_leaves_nothing(tmp_path, store):
    broken = decision()
    broken.facts = {"bad": object()}  # cannot be serialised
    with pytest.raises(TypeError):
        store.record_tick(1, snapshot(100.0), {}, [broken])
    con = sqlite3.connect(tmp_path / "r.db")
    for table in ("host_samples", "container_samples", "process_samples", "decisions"):
        assert con.execute(f"select count(*) from {table}").fetchone() == (0,)


def test_a_reader_in_a_long_transaction_does_not_block_a_tick(tmp_path, store):
    store.record_tick(1, snapshot(100.0), {}, [])
    reader = sqlite3.connect(tmp_path / "r.db")
    reader.execute("begin")
    assert reader.execute("select count(*) from host_samples").fetchone() == (1,)
    store.record_tick(2, snapshot(120.0), {}, [])  # would block without WAL
    assert reader.execute("select count(*) from host_samples").fetchone() == (1,)
    reader.rollback()
    assert reader.execute("select count(*) from host_samples").fetchone() == (2,)


def test_prune_removes_only_old_rows(tmp_path, store):
    store.record_tick(1, snapshot(100.0), {}, [decision()], 100.0)
    store.record_tick(2, snapshot(200.0), {}, [decision()], 200.0)
    assert store.prune(150.0) == 4
    con = sqlite3.connect(tmp_path / "r.db")
    assert con.execute("select tick from host_samples").fetchall() == [(2,)]
    assert con.execute("select tick from decisions").fetchall() == [(2,)]


def test_ruleset_versions_count_up_only_on_change(store):
    assert store.record_ruleset(1.0, "aaa", {"rules/main.yaml": "h1"}, 3) == 1
    assert store.record_ruleset(2.0, "aaa", {"rules/main.yaml": "h1"}, 3) == 1
    assert store.record_ruleset(3.0, "bbb", {"rules/main.yaml": "h2"}, 4) == 2


def test_decisions_for_a_container_by_name_or_id_prefix(store):
    store.record_tick(1, snapshot(100.0), {}, [decision()], 100.0)
    store.record_tick(2, snapshot(200.0), {}, [decision()], 200.0)
    assert [r["tick"] for r in store.decisions_for("low-1")] == [2, 1]
    assert [r["tick"] for r in store.decisions_for(CID[:12])] == [2, 1]
