"""Fan-out: data for stores that ingest causes (remote uses, catch-ups), sent in order.

A row is queued in ``hq_outbox`` inside the transaction of the message that caused it
(:func:`enqueue`, by every ingest worker); the one fan-out sender versions and signs rows
only when it sends them (:func:`seal_pending`), so each store receives its versions in the
order they were given, and marks them sent on the broker's PUBACK (:func:`mark_sent`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from edge.keys import SigningKey
from hq.db import Cursor, Database
from hq.publishing.versions import next_version
from sync.contract import DataKind, HqData, seal


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A signed envelope waiting in ``hq_outbox`` to be published."""

    id: int
    topic: str
    payload: bytes



def enqueue(cur: Cursor, topic: str, store: str, kind: DataKind, body: dict[str, Any],
            now: float) -> None:
    """Queue ``body`` for ``store`` on ``topic``, in the caller's transaction ``cur``."""
    cur.execute("INSERT INTO hq_outbox(store, kind, topic, body, created_at)"
                " VALUES (?,?,?,?,?)",
                (store, kind.value, topic,
                 json.dumps(body, ensure_ascii=False, separators=(",", ":")), now))


def seal_pending(db: Database, signer: SigningKey, now: float, skip: Iterable[int] = (),
                 limit: int = 500) -> list[Outgoing]:
    """Unsent fan-out in creation order, versioned and signed now if not yet.

    A row keeps the version and signature it got the first time, so a resend after a
    lost connection is the same envelope (the box ignores a version it applied).
    ``skip``: rows already in flight.

    Raises:
        hq.db.DbError: the database failed.
    """
    skipped = set(skip)
    out = []
    with db.tx() as cur:
        cur.execute("SELECT id, store, kind, topic, body, payload FROM hq_outbox"
                    " WHERE sent_at IS NULL ORDER BY id LIMIT ?", (limit + len(skipped),))
        for row_id, store, kind, topic, body, payload in cur.fetchall():
            if row_id in skipped:
                continue
            if payload is None:
                data_kind = DataKind(kind)
                version = next_version(cur, store, data_kind, now)
                payload = seal(signer, HqData(data_kind, store, version, now,
                                              json.loads(body))).encode().decode()
                cur.execute("UPDATE hq_outbox SET version=?, payload=? WHERE id=?",
                            (version, payload, row_id))
            out.append(Outgoing(int(row_id), str(topic), str(payload).encode()))
    return out[:limit]


def mark_sent(db: Database, ids: Iterable[int], now: float) -> None:
    """Record the broker's PUBACK for these outbox rows."""
    with db.tx() as cur:
        for i in ids:
            cur.execute("UPDATE hq_outbox SET sent_at=? WHERE id=? AND sent_at IS NULL",
                        (now, i))
