"""HQ's database seam (``hq/db.py``) on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from pathlib import Path

from hq.db import SCHEMA_VERSION, Database, DbError


def test_processes_starting_together_create_the_schema_once(hq_db_url: str) -> None:
    """GIVEN an empty database WHEN eight connections open it at the same moment (ingest
    workers and the web service starting together) THEN every one opens (on PostgreSQL the
    schema's migration INSERTs used to deadlock two of them) and the schema is recorded
    once."""
    start = threading.Barrier(8)
    errors: list[DbError] = []
    opened: list[Database] = []

    def open_one() -> None:
        start.wait()
        try:
            opened.append(Database(hq_db_url))
        except DbError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
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
    errors: list[str] = []
    for n in range(40):
        url = f"sqlite:///{tmp_path / f'hq{n}.sqlite'}"
        start = threading.Barrier(8)

        def open_one(url: str = url, start: threading.Barrier = start) -> None:
            start.wait()
            try:
                Database(url).close()
            except DbError as exc:
                errors.append(str(exc))

        threads = [threading.Thread(target=open_one) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert errors == []
