"""HQ's catch-up for a box the broker held no session for: what it sends, and when not."""

from __future__ import annotations

import json
import time

import pytest

from edge.hqdata import OrderStatus
from hq.db import Database
from hq.ingest.eventstore import EventStore, Handled
from sync.contract import ContractError, OrderUpdate, Reported, Topics, decode_orders

TOPICS = Topics()
NOW = time.time()


def _store(db_url: str) -> tuple[EventStore, Database]:
    db = Database(db_url)
    store = EventStore(db, TOPICS, clock=lambda: NOW)
    with db.tx() as cur:
        for o, end in ((OrderUpdate("O-1", "4001", int(NOW) - 60, int(NOW) + 600), NOW + 600),
                       (OrderUpdate("O-2", "4002", int(NOW) - 60, int(NOW) + 600), NOW + 600),
                       (OrderUpdate("O-OLD", "4003", int(NOW) - 7200, int(NOW) - 3600),
                        NOW - 3600)):
            cur.execute("INSERT INTO hq_order(store, order_id, body, window_end, updated_at)"
                        " VALUES ('SN', ?, ?, ?, ?)",
                        (o.order_id, json.dumps(o.to_dict()), int(end), NOW))
    return store, db


def _report(resync: bool) -> bytes:
    return Reported(0, None, "", NOW, {}, resync).encode()


def test_a_live_resync_report_queues_open_orders_with_the_collected_marked(
        hq_db_url: str) -> None:
    """GIVEN HQ knows three orders of store SN (one over) and saw O-1 collected there WHEN a
    live report asks for a resync THEN one orders envelope is queued with O-1 collected and
    O-2 waiting, nothing for the finished one; WHEN the same report is replayed retained (an
    ingest restart) or a report without the flag arrives THEN nothing more is queued."""
    store, db = _store(hq_db_url)
    with db.tx() as cur:
        cur.execute("INSERT INTO hq_event(device, store, seq, event_id, type, at, clock_trusted,"
                    " body, received_at, kind, code_id, accepted) VALUES ('SN-T1', 'SN', 1,"
                    " 'e1', 'decision', ?, 1, '{}', ?, 'pickup', 'P:O-1', 1)", (NOW, NOW))
    topic = TOPICS.reported("SN", "SN-T2")
    out = store.handle(topic, _report(True))
    assert out.handled is Handled.REPORTED and out.fanout == 1
    (kind, body), = db.query("SELECT kind, body FROM hq_outbox WHERE store='SN'")
    assert kind == "orders"
    statuses = {o.order_id: o.status for o in decode_orders(json.loads(body))}
    assert statuses == {"O-1": OrderStatus.COLLECTED, "O-2": OrderStatus.WAITING}
    assert store.handle(topic, _report(True), retained=True).fanout == 0
    assert store.handle(topic, _report(False)).fanout == 0
    assert db.query("SELECT COUNT(*) FROM hq_outbox")[0][0] == 1
    db.close()


def test_reported_resync_flag_is_optional_and_strict() -> None:
    """GIVEN a report from before the flag existed THEN it reads as no resync; GIVEN a flag
    that is not a boolean THEN the report is refused, naming it."""
    old = json.dumps({"v": 1, "applied_version": 3}).encode()
    assert Reported.decode(old).resync is False
    assert Reported.decode(_report(True)).resync is True
    with pytest.raises(ContractError, match="resync"):
        Reported.decode(json.dumps({"v": 1, "applied_version": 3, "resync": "yes"}).encode())
