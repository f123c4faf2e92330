"""sync.outbox: the wire form of events, batches, acknowledgements and the growth policy."""

from __future__ import annotations

import json
import time
from pathlib import Path

import peewee as pw
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.events import EventType
from edge.ledger import MIGRATIONS, SCHEMA_VERSION, Ledger
from edge.storeconfig import SyncPolicy
from sync.contract import CONTENT_JSON, CONTENT_JSON_ZLIB, EventBatch, encode_batch_text
from sync.outbox import Outbox
from tests.sync_fixtures import IDENTITY, append_events, confirm, events_of

_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                     | st.text(), lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)


@settings(max_examples=60, deadline=None)
@given(body=st.dictionaries(st.text(max_size=8), _json, max_size=4),
       at=st.floats(min_value=0, max_value=4e9), trusted=st.booleans())
def test_wire_text_equals_event_to_wire(tmp_path_factory, body, at, trusted) -> None:  # type: ignore[no-untyped-def]
    """GIVEN any event body, time and clock flag WHEN the drain builds its batch from the
    text stored at append time THEN the plain batch is byte for byte the batch encoded from
    Event.to_wire (the definition of the wire form); and WHEN that stored text is missing
    THEN the SQL fallback still parses to exactly the same events."""
    ledger = Ledger(tmp_path_factory.mktemp("w") / "l.sqlite")
    try:
        with ledger.immediate() as conn:
            ledger.append_event(conn, EventType.DECISION, at, trusted, body)
            ledger.append_event(conn, EventType.CLOCK, at + 1, not trusted, {"n": 1})
        expected = [e.to_wire(IDENTITY.store_id, IDENTITY.device_id)
                    for e in ledger.pending_events()]
        texts = [json.dumps(e, ensure_ascii=False, separators=(",", ":")) for e in expected]
        want, _ = encode_batch_text(IDENTITY.store_id, IDENTITY.device_id, texts, False)
        batch = Outbox(ledger, IDENTITY, compress=False).next_batch(0, 10)
        assert batch is not None and batch.payload == want
        ledger.conn.execute("DELETE FROM outbox_wire WHERE seq = 1")
        batch = Outbox(ledger, IDENTITY).next_batch(0, 10)
        assert batch is not None and batch.count == 2
        decoded = EventBatch.decode(batch.payload, batch.content_type)
        assert decoded.events == json.loads(json.dumps(expected))
    finally:
        ledger.close()


def test_batches_cover_unsent_ranges_and_acks_mark_exactly_them(tmp_path: Path) -> None:
    """GIVEN 250 events WHEN read in batches of 100 after a cursor and the middle batch is
    acknowledged THEN batches are seq ranges, big ones are compressed, and only the middle
    range is marked sent."""
    ledger = Ledger(tmp_path / "l.sqlite")
    append_events(ledger, 250)
    outbox = Outbox(ledger, IDENTITY)
    b1 = outbox.next_batch(0, 100)
    assert b1 is not None
    b2 = outbox.next_batch(b1.last, 100)
    assert b2 is not None
    b3 = outbox.next_batch(b2.last, 100)
    assert b3 is not None
    assert (b1.first, b1.last, b2.first, b2.last, b3.first, b3.last, b3.count) == \
        (1, 100, 101, 200, 201, 250, 50)
    assert b1.content_type == CONTENT_JSON_ZLIB
    assert outbox.mark_acked([(b2.first, b2.last)]) == 100
    assert outbox.mark_acked([(b2.first, b2.last)]) == 0
    assert outbox.backlog() == 150
    assert [e.seq for e in ledger.pending_events(limit=1000)] == \
        list(range(1, 101)) + list(range(201, 251))
    small = EventBatch("S", "D", [{"id": "x", "seq": 1, "type": "t", "at": 1, "body": {}}])
    assert small.encode()[1] == CONTENT_JSON


def test_alarm_goes_on_and_off_and_unsent_events_are_never_dropped(tmp_path: Path) -> None:
    """GIVEN a policy keeping 1000 rows with an alarm at 1200 unsent WHEN 1500 events wait
    THEN the alarm goes on (one event, not repeated), nothing unsent is pruned; WHEN they are
    sent THEN nothing is pruned and the alarm stays on (HQ has not confirmed them); WHEN HQ
    confirms them THEN they are pruned to the limit and the alarm goes off with an event."""
    ledger = Ledger(tmp_path / "l.sqlite")
    append_events(ledger, 1500, start_at=time.time())
    outbox = Outbox(ledger, IDENTITY)
    policy = SyncPolicy(outbox_max_rows=1000, alarm_backlog=1200)
    health = outbox.check(policy)
    assert health.alarm and "1500 unsent events" in health.why
    assert outbox.check(policy).alarm
    assert len(events_of(ledger, EventType.OUTBOX_ALARM)) == 1
    assert outbox.backlog() == 1501  # the alarm event itself waits too; nothing was dropped
    outbox.mark_acked([(1, 10_000)])
    health = outbox.check(policy)
    assert health.pruned == 0  # sent, but HQ has not confirmed them: kept, still too many
    assert health.alarm and "not confirmed by HQ" in health.why
    confirm(ledger, 1501)
    health = outbox.check(policy)
    assert not health.alarm and health.pruned >= 500
    alarms = events_of(ledger, EventType.OUTBOX_ALARM)
    assert [a["alarm"] for a in alarms] == [True, False]
    assert ledger.conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] <= 1001
    # The stored wire texts of sent events are pruned too; the unsent alarm event keeps its.
    assert ledger.conn.execute("SELECT seq FROM outbox_wire").fetchall() == \
        [(e.seq,) for e in ledger.pending_events()]


def test_old_unsent_event_raises_the_alarm(tmp_path: Path) -> None:
    """GIVEN one unsent event two days old and a one-day age limit WHEN checked THEN the
    alarm is on, naming the age, and the event is still there."""
    ledger = Ledger(tmp_path / "l.sqlite")
    append_events(ledger, 1, start_at=time.time() - 2 * 86400)
    health = Outbox(ledger, IDENTITY).check(SyncPolicy(outbox_max_age_s=86400))
    assert health.alarm and "h old" in health.why
    assert ledger.conn.execute("SELECT COUNT(*) FROM outbox WHERE type='decision'"
                               ).fetchone()[0] == 1


def test_schema_1_ledger_migrates_and_drains_the_same_wire_bytes(tmp_path: Path) -> None:
    """GIVEN a schema-1 ledger (no stored wire texts) holding sent and unsent events WHEN
    this software opens it THEN it is migrated to the current schema, each unsent event gets
    its wire text, and the drain's batch is byte for byte the batch encoded from
    Event.to_wire; the sent event is left alone and new events continue the seq."""
    path = tmp_path / "old.sqlite"
    db = pw.SqliteDatabase(str(path))
    db.connect()
    MIGRATIONS[0](db)
    conn = db.connection()
    conn.execute("PRAGMA user_version = 1")
    for i, (body, at) in enumerate([({"n": 0}, 1.5e9), ({"咖啡": [1.25, None, "x\"y"]}, 0.1),
                                    ({"big": 2 ** 60, "f": 1e-300}, 1700000000.123456)]):
        conn.execute(  # schema 1's append_event, as it shipped
            "INSERT INTO outbox(event_id, type, at, clock_trusted, body) VALUES (?, ?, ?, ?, ?)",
            (f"e{i:031x}", EventType.DECISION.value, at, i % 2,
             json.dumps(body, ensure_ascii=False, separators=(",", ":"))))
    conn.execute("UPDATE outbox SET sent_at = 5 WHERE seq = 1")
    conn.commit()
    db.close()

    ledger = Ledger(path)
    try:
        assert ledger.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert ledger.conn.execute("SELECT seq FROM outbox_wire ORDER BY seq").fetchall() == \
            [(2,), (3,)]
        with ledger.immediate() as c:
            assert ledger.append_event(c, EventType.CLOCK, 2e9, True, {"k": 1})[0] == 4
        expected = [json.dumps(e.to_wire(IDENTITY.store_id, IDENTITY.device_id),
                               ensure_ascii=False, separators=(",", ":"))
                    for e in ledger.pending_events()]
        assert [json.loads(t)["seq"] for t in expected] == [2, 3, 4]
        want, _ = encode_batch_text(IDENTITY.store_id, IDENTITY.device_id, expected, False)
        batch = Outbox(ledger, IDENTITY, compress=False).next_batch(0, 100)
        assert batch is not None and (batch.first, batch.last, batch.count) == (2, 4, 3)
        assert batch.payload == want
    finally:
        ledger.close()


def test_adjacent_and_overlapping_acked_ranges_mark_exactly_their_union(tmp_path: Path) -> None:
    """GIVEN 300 unsent events WHEN acknowledged ranges arrive out of order, adjacent and
    overlapping (joined into fewer UPDATEs) THEN exactly their union is marked sent, and a
    gap between them stays unsent."""
    ledger = Ledger(tmp_path / "l.sqlite")
    append_events(ledger, 300)
    outbox = Outbox(ledger, IDENTITY)
    assert outbox.mark_acked([(101, 150), (1, 100), (90, 120), (201, 250), (251, 260)]) == 210
    unsent = [e.seq for e in ledger.pending_events(limit=1000)]
    assert unsent == list(range(151, 201)) + list(range(261, 301))
    ledger.close()
