"""HQ's database seam (``hq/db.py``) on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from pathlib import Path

from hq.db import SCHEMA_VERSION, Database, DbError


def open_together(url: str, n: int = 8) -> tuple[list[Database], list[DbError]]:
    """``n`` connections opening ``url`` at the same moment: those opened, the errors."""
    start = threading.Barrier(n)
    errors: list[DbError] = []
    opened: list[Database] = []

    def open_one() -> None:
        start.wait()
        try:
            opened.append(Database(url))
        except DbError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return opened, errors


def test_processes_starting_together_create_the_schema_once(hq_db_url: str) -> None:
    """GIVEN an empty database WHEN eight connections open it at the same moment (ingest
    workers and the web service starting together) THEN every one opens (on PostgreSQL the
    schema's migration INSERTs used to deadlock two of them) and the schema is recorded
    once."""
    opened, errors = open_together(hq_db_url)
    assert errors == []
    assert len(opened) == 8
    assert opened[0].query("SELECT value FROM hq_meta WHERE key='schema'") == [
        (str(SCHEMA_VERSION),)]
    for db in opened:
        db.close()


def test_many_fresh_sqlite_databases_opened_together_all_open(tmp_path: Path) -> None:
    """GIVEN 40 fresh SQLite files WHEN eight connections open each at the same moment
    THEN all 320 open: SQLite refuses the switch to WAL at once, without waiting, to one of
    two connections racing for it (it failed about one round in ten, CI included)."""
    errors: list[DbError] = []
    for n in range(40):
        opened, failed = open_together(f"sqlite:///{tmp_path / f'hq{n}.sqlite'}")
        errors += failed
        for db in opened:
            db.close()
    assert errors == []


def test_a_pipelined_transaction_reads_counts_and_deferred_rows(hq_db_url: str) -> None:
    """In pipeline mode (PostgreSQL) a row count and a row read later still come right."""
    db = Database(hq_db_url)
    try:
        with db.tx(pipelined=True) as cur:
            cur.executemany("INSERT INTO hq_store(store, first_seen) VALUES (?, ?)",
                            [(f"S{i}", float(i)) for i in range(5)])
            later = cur.another()
            later.execute("INSERT INTO hq_store(store, first_seen) VALUES (?, ?)"
                          " RETURNING store", ("S9", 9.0))
            cur.execute("UPDATE hq_store SET first_seen=first_seen+1 WHERE first_seen<3")
            assert cur.rowcount == 3
            cur.execute("SELECT COUNT(*) FROM hq_store")
            assert cur.fetchone()[0] == 6
            assert later.fetchone()[0] == "S9"
        with db.tx(pipelined=True) as cur:
            cur.execute("DELETE FROM hq_store WHERE store>=?", ("S3",))
            assert cur.rowcount == 3
        assert db.query("SELECT store FROM hq_store ORDER BY store") == [("S0",), ("S1",),
                                                                          ("S2",)]
    finally:
        db.close()
