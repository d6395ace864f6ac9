"""Store: every sample and decision, through `dataset`, for Grafana to read.

The default is an SQLite file; any SQLAlchemy URL works (a fleet can point
every host at one PostgreSQL server). Tables are created with explicit column
types before the first insert, times are epoch seconds (REAL) and every row
carries the host name. One transaction per tick. On SQLite the database runs
in WAL mode with a busy timeout, so Grafana can read while a tick is written.

    table              one row per
    host_samples       tick
    container_samples  container per tick
    process_samples    process per tick
    decisions          decision (done, dry-run, skipped, gone, failed)
    ruleset_versions   rule set loaded
"""

from __future__ import annotations

import json
import logging
import operator
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import dataset
import sqlalchemy as sa

from rulectl.model import Decision, Snapshot

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000

_REAL, _INT, _TEXT = sa.Float, sa.BigInteger, sa.Text

SCHEMA: dict[str, dict[str, Any]] = {
    "host_samples": {
        "time": _REAL,
        "host": _TEXT,
        "tick": _INT,
        "source": _TEXT,
        "ncpu": _INT,
        "cpu_percent": _REAL,
        "mem_total_kb": _INT,
        "mem_free_kb": _INT,
        "mem_used_kb": _INT,
        "mem_used_percent": _REAL,
        "n_containers": _INT,
        "n_processes": _INT,
    },
    "container_samples": {
        "time": _REAL,
        "host": _TEXT,
        "tick": _INT,
        "container_id": _TEXT,
        "name": _TEXT,
        "image": _TEXT,
        "type": _TEXT,
        "created": _REAL,
        "n_pids": _INT,
        "cpu_percent": _REAL,
        "mem_rss_kb": _INT,
        "mem_percent": _REAL,
        "vsz_kb": _INT,
        "mem_working_set_kb": _INT,
        "labels": _TEXT,
    },
    "process_samples": {
        "time": _REAL,
        "host": _TEXT,
        "tick": _INT,
        "pid": _INT,
        "ppid": _INT,
        "name": _TEXT,
        "cmdline": _TEXT,
        "state": _TEXT,
        "container_id": _TEXT,
        "vsz_kb": _INT,
        "rss_kb": _INT,
        "mem_percent": _REAL,
        "cpu_percent": _REAL,
    },
    "decisions": {
        "time": _REAL,
        "host": _TEXT,
        "tick": _INT,
        "rule": _TEXT,
        "action": _TEXT,
        "container_id": _TEXT,
        "container_name": _TEXT,
        "rank": _INT,
        "reason": _TEXT,
        "facts": _TEXT,
        "outcome": _TEXT,
        "detail": _TEXT,
        "held": sa.Boolean,
    },
    "ruleset_versions": {
        "time": _REAL,
        "host": _TEXT,
        "version": _INT,
        "fingerprint": _TEXT,
        "files": _TEXT,
        "n_rules": _INT,
        "changes": _TEXT,
    },
}

INDEXES = {
    "host_samples": [["time"]],
    "container_samples": [["time"], ["container_id"]],
    "process_samples": [["time"]],
    "decisions": [["time"], ["container_id"]],
}


class Store:
    def __init__(self, url: str, host: str) -> None:
        self.host = host
        sqlite = url.startswith("sqlite")
        statements = [
            f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",
            "PRAGMA synchronous=NORMAL",
        ]
        self.db = dataset.connect(
            url,
            sqlite_wal_mode=sqlite,
            on_connect_statements=statements if sqlite else [],
        )
        self._create_tables()

    def _create_tables(self) -> None:
        self._tables: dict[str, sa.Table] = {}
        for name, columns in SCHEMA.items():
            table = self.db.create_table(name)
            for column, kind in columns.items():
                table.create_column(column, kind)
            for index in INDEXES.get(name, []):
                table.create_index(index)
            self._tables[name] = table.table
        self._direct = {
            name: _DirectInsert(self._tables[name], SCHEMA[name], self.db.executable)
            for name in _DIRECT_TABLES
        }

    def _insert_many(self, name: str, rows: list[dict[str, Any]]) -> None:
        """Inserts rows that hold exactly the table's SCHEMA columns, in the
        transaction in progress, as one executemany.

        This is what dataset's insert_many ends in, without its first pass
        over every row looking for columns it would have to create (these
        tables got all their columns at start-up), which cost more than the
        insert itself on a tick of thousands of processes. The per-sample
        tables skip SQLAlchemy's per-row parameter handling too (see
        _DirectInsert).
        """
        if not rows:  # an empty parameter list would insert one empty row
            return
        direct = self._direct.get(name)
        if direct is not None:
            direct.insert(self.db.executable, rows)
        else:
            self.db.executable.execute(self._tables[name].insert(), rows)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _transaction(self) -> Iterator[dataset.Database]:
        """One transaction; after a failure the connection is usable again.

        dataset takes its transaction off its stack before committing, so a
        commit that fails (a full disk) would leave the connection inside a
        transaction nobody ends, and every later tick would fail too.
        """
        try:
            with self.db as tx:
                yield tx
        except BaseException:
            self.db.local.tx = []
            try:
                # A failed commit leaves a transaction that in_transaction()
                # no longer reports but begin() still trips over.
                self.db.executable.rollback()
            except sa.exc.SQLAlchemyError:
                pass  # the next transaction will say what is wrong
            raise

    def record_tick(
        self,
        tick: int,
        snapshot: Snapshot,
        types: dict[str, str | None],
        decisions: Iterable[Decision],
        decided_at: float | None = None,
    ) -> None:
        """Writes one tick in one transaction: all of it, or none of it."""
        t, host = snapshot.time, self.host
        h = snapshot.host
        with self._transaction() as tx:
            tx["host_samples"].insert(
                dict(
                    time=t,
                    host=host,
                    tick=tick,
                    source=snapshot.source,
                    ncpu=h.ncpu,
                    cpu_percent=h.cpu_percent,
                    mem_total_kb=h.mem_total_kb,
                    mem_free_kb=h.mem_free_kb,
                    mem_used_kb=h.mem_used_kb,
                    mem_used_percent=h.mem_used_percent,
                    n_containers=len(snapshot.containers),
                    n_processes=len(snapshot.processes),
                )
            )
            self._insert_many(
                "container_samples",
                [
                    dict(
                        time=t,
                        host=host,
                        tick=tick,
                        container_id=c.id,
                        name=c.name,
                        image=c.image,
                        type=types.get(c.id),
                        created=c.created,
                        n_pids=len(c.pids),
                        cpu_percent=c.cpu_percent,
                        mem_rss_kb=c.mem_rss_kb,
                        mem_percent=c.mem_percent,
                        vsz_kb=c.vsz_kb,
                        mem_working_set_kb=c.mem_working_set_kb,
                        labels=json.dumps(c.labels, sort_keys=True),
                    )
                    for c in snapshot.containers
                ],
            )
            self._insert_many(
                "process_samples",
                [
                    dict(
                        time=t,
                        host=host,
                        tick=tick,
                        pid=p.pid,
                        ppid=p.ppid,
                        name=p.name,
                        cmdline=p.cmdline,
                        state=p.state,
                        container_id=p.container_id,
                        vsz_kb=p.vsz_kb,
                        rss_kb=p.rss_kb,
                        mem_percent=p.mem_percent,
                        cpu_percent=p.cpu_percent,
                    )
                    for p in snapshot.processes
                ],
            )
            self._insert_many(
                "decisions",
                [_decision_row(d, decided_at or t, host, tick) for d in decisions],
            )

    def record_ruleset(
        self,
        time_s: float,
        fingerprint: str,
        files: dict[str, str],
        n_rules: int,
        changes: str = "",
    ) -> int:
        """Records a loaded rule set; returns its version number (1, 2, ...)."""
        table = self.db["ruleset_versions"]
        last = table.find_one(host=self.host, order_by="-version")
        if last and last["fingerprint"] == fingerprint:
            return int(last["version"])
        version = (int(last["version"]) if last else 0) + 1
        with self._transaction() as tx:
            tx["ruleset_versions"].insert(
                dict(
                    time=time_s,
                    host=self.host,
                    version=version,
                    fingerprint=fingerprint,
                    files=json.dumps(files, sort_keys=True),
                    n_rules=n_rules,
                    changes=changes,
                )
            )
        return version

    def last_tick(self) -> int:
        """The highest tick stored for this host: tick numbers go on across
        restarts, so (host, tick) names one tick."""
        table = self.db["host_samples"]
        row = table.find_one(host=self.host, order_by="-tick")
        return int(row["tick"]) if row else 0

    def prune(self, older_than_s: float) -> int:
        """Deletes samples and decisions older than a wall-clock time."""
        removed = 0
        with self._transaction() as tx:
            for name in (
                "host_samples",
                "container_samples",
                "process_samples",
                "decisions",
            ):
                table = tx[name]
                removed += table.delete(table.table.c.time < older_than_s) or 0
        return removed

    def decisions_for(self, container: str) -> list[dict[str, Any]]:
        """Every decision about a container (id prefix or name), newest first."""
        table = self.db["decisions"]
        col = table.table.c
        rows = table.find(
            sa.or_(
                col.container_id.like(f"{container}%"), col.container_name == container
            ),
            order_by="-time",
        )
        return [dict(r) for r in rows]


# The tables with a row per process or container every tick.
_DIRECT_TABLES = ("container_samples", "process_samples")


class _DirectInsert:
    """An INSERT of one table's SCHEMA columns, run with the driver's own
    executemany.

    SQLAlchemy builds a parameter set per row in Python, which took longer
    than SQLite took to store the rows. Here the statement is compiled once
    for the connection's dialect and the rows go to the driver as they are:
    as tuples in the statement's order for a positional paramstyle (SQLite's
    qmark), as the row dicts for a named one. The only conversion SQLAlchemy
    would apply to these columns is float() on the REAL ones, which the
    database applies itself (REAL affinity in SQLite, double precision
    elsewhere); a column with any other conversion is refused here.
    """

    def __init__(
        self, table: sa.Table, columns: dict[str, Any], connection: sa.Connection
    ) -> None:
        dialect = connection.dialect
        compiled = table.insert().compile(dialect=dialect, column_keys=list(columns))
        for name in columns:
            kind = table.c[name].type
            if kind.dialect_impl(dialect).bind_processor(dialect) and not isinstance(
                kind, sa.Float
            ):
                raise ValueError(f"{table.name}.{name} needs SQLAlchemy's conversion")
        self.sql = str(compiled)
        self.order = (
            operator.itemgetter(*compiled.positiontup) if dialect.positional else None
        )

    def insert(self, connection: sa.Connection, rows: list[dict[str, Any]]) -> None:
        params = list(map(self.order, rows)) if self.order is not None else rows
        connection.exec_driver_sql(self.sql, params)


def _decision_row(d: Decision, t: float, host: str, tick: int) -> dict[str, Any]:
    return dict(
        time=t,
        host=host,
        tick=tick,
        rule=d.rule,
        action=d.action,
        container_id=d.container_id,
        container_name=d.container_name,
        rank=d.rank,
        reason=d.reason,
        facts=json.dumps(d.facts, sort_keys=True),
        outcome=d.outcome,
        detail=d.detail,
        held=d.held,
    )
