"""HQ's durable version counters: one per store and kind of HQ-to-box message.

The box refuses a config or data envelope whose version is not above the last it applied,
so a counter must never go back, even if HQ restarts: it lives in the HQ database and is
bumped inside the caller's transaction (a version used by a failed publish is simply skipped).
"""

from __future__ import annotations

from hq.db import Cursor
from sync.contract import DataKind


class VersionError(ValueError):
    """A requested version is not above the last one given; the box would refuse it."""


def last_version(cur: Cursor, store: str, kind: DataKind) -> int:
    """The last version given for ``(store, kind)``, 0 if none."""
    cur.execute("SELECT version FROM hq_version WHERE store=? AND kind=?", (store, kind.value))
    row = cur.fetchone()
    return int(row[0]) if row else 0


def next_version(cur: Cursor, store: str, kind: DataKind, now: float,
                 requested: int | None = None) -> int:
    """Take the next version for ``(store, kind)`` (or ``requested``), inside ``cur``'s tx.

    Raises:
        VersionError: ``requested`` is not above the last version given.
    """
    if requested is not None and requested <= (last := last_version(cur, store, kind)):
        raise VersionError(f"{kind.value} version {requested} for store {store} is not above "
                           f"the last one given ({last}): the box would refuse it")
    # One upsert that both bumps and returns: it holds the row lock, so two ingest workers
    # on PostgreSQL cannot hand out the same version.
    bump = "hq_version.version + 1" if requested is None else "excluded.version"
    cur.execute("INSERT INTO hq_version(store, kind, version, at) VALUES (?,?,?,?)"
                f" ON CONFLICT (store, kind) DO UPDATE SET version={bump}, at=excluded.at"
                " RETURNING version", (store, kind.value, requested or 1, now))
    version = int(cur.fetchone()[0])
    cur.execute("INSERT INTO hq_store(store, first_seen) VALUES (?, ?)"
                " ON CONFLICT (store) DO NOTHING", (store, now))
    return version
