"""Store row: one tick written, against sqlite3's executemany (the floor).

rulectl's side is `Store.record_tick` (through `dataset` and SQLAlchemy) on
an SQLite file. The floor writes the same rows into another file with the
same schema (made by `Store` itself), with the standard library's sqlite3:
one transaction, one `executemany` per table, the same pragmas (WAL,
synchronous=NORMAL). Both sides turn the snapshot's dataclasses into rows
inside the timed call, and every call writes a new tick.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from bench import workloads
from bench.common import Row, compare, fill

_PROCESS_COLUMNS = (
    "time host tick pid ppid name cmdline state container_id vsz_kb rss_kb "
    "mem_percent cpu_percent"
).split()
_CONTAINER_COLUMNS = (
    "time host tick container_id name image type created n_pids cpu_percent "
    "mem_rss_kb mem_percent vsz_kb mem_working_set_kb labels"
).split()
_HOST_COLUMNS = (
    "time host tick source ncpu cpu_percent mem_total_kb mem_free_kb mem_used_kb "
    "mem_used_percent n_containers n_processes"
).split()


def _insert(table: str, columns: list[str]) -> str:
    marks = ", ".join("?" for _ in columns)
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"


class SqliteFloor:
    def __init__(self, path: Path, host: str) -> None:
        self.host = host
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA busy_timeout=10000")
        self.host_sql = _insert("host_samples", _HOST_COLUMNS)
        self.container_sql = _insert("container_samples", _CONTAINER_COLUMNS)
        self.process_sql = _insert("process_samples", _PROCESS_COLUMNS)

    def record_tick(self, tick: int, snapshot, types: dict) -> None:
        t, host, h = snapshot.time, self.host, snapshot.host
        db = self.db
        db.execute("BEGIN")
        db.execute(
            self.host_sql,
            (
                t,
                host,
                tick,
                snapshot.source,
                h.ncpu,
                h.cpu_percent,
                h.mem_total_kb,
                h.mem_free_kb,
                h.mem_used_kb,
                h.mem_used_percent,
                len(snapshot.containers),
                len(snapshot.processes),
            ),
        )
        db.executemany(
            self.container_sql,
            [
                (
                    t,
                    host,
                    tick,
                    c.id,
                    c.name,
                    c.image,
                    types.get(c.id),
                    c.created,
                    len(c.pids),
                    c.cpu_percent,
                    c.mem_rss_kb,
                    c.mem_percent,
                    c.vsz_kb,
                    c.mem_working_set_kb,
                    json.dumps(c.labels, sort_keys=True),
                )
                for c in snapshot.containers
            ],
        )
        db.executemany(
            self.process_sql,
            [
                (
                    t,
                    host,
                    tick,
                    p.pid,
                    p.ppid,
                    p.name,
                    p.cmdline,
                    p.state,
                    p.container_id,
                    p.vsz_kb,
                    p.rss_kb,
                    p.mem_percent,
                    p.cpu_percent,
                )
                for p in snapshot.processes
            ],
        )
        db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()


class _Ticks:
    def __init__(self, record, snapshot, types) -> None:
        self.record, self.snapshot, self.types, self.tick = record, snapshot, types, 0

    def __call__(self) -> None:
        self.tick += 1
        self.record(self.tick, self.snapshot, self.types)


def run(n_containers: int, n_processes: int, repeat: int, workdir: Path) -> list[Row]:
    from rulectl.store import Store

    snapshot = workloads.snapshot(n_containers, n_processes, seed=3, tick=1)
    types = {c.id: c.labels.get("app.kind") for c in snapshot.containers}

    ours_path = workdir / "store-rulectl.db"
    floor_path = workdir / "store-floor.db"
    for path in (ours_path, floor_path):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    store = Store(f"sqlite:///{ours_path}", host="bench")
    Store(f"sqlite:///{floor_path}", host="bench").close()  # same schema
    floor = SqliteFloor(floor_path, "bench")

    ours, theirs = compare(
        _Ticks(
            lambda tick, snap, ty: store.record_tick(tick, snap, ty, []),
            snapshot,
            types,
        ),
        _Ticks(floor.record_tick, snapshot, types),
        repeat,
    )
    store.close()
    floor.close()
    _check_same_rows(ours_path, floor_path)

    row = Row(
        what="one tick stored",
        size=f"{n_containers} container rows, {n_processes} process rows",
        rulectl="Store.record_tick",
        peer="sqlite3 executemany (floor)",
        target="within 2× of the floor",
        notes="both sides build the rows from the snapshot inside the timed call",
    )
    fill(row, ours, theirs).judge_floor(2.0)
    return [row]


def _check_same_rows(a: Path, b: Path) -> None:
    """Both files must hold the same rows: the comparison is of equal work."""
    with sqlite3.connect(a) as da, sqlite3.connect(b) as db:
        for table in ("host_samples", "container_samples", "process_samples"):
            cols = ", ".join(
                _HOST_COLUMNS
                if table == "host_samples"
                else _CONTAINER_COLUMNS
                if table == "container_samples"
                else _PROCESS_COLUMNS
            )
            query = f"SELECT {cols} FROM {table} ORDER BY tick, rowid"
            if da.execute(query).fetchall() != db.execute(query).fetchall():
                raise RuntimeError(f"store bench: {table} differs from the floor's")


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for r in run(500, 5000, 7, Path(tmp)):
            print(r.size, r.rulectl_s, r.peer_s, r.ratio)
