"""sync.outbox: the wire form of events, batches, acknowledgements and the growth policy."""

from __future__ import annotations

import json
import time
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.events import EventType
from edge.ledger import Ledger
from edge.storeconfig import SyncPolicy
from sync.contract import CONTENT_JSON, CONTENT_JSON_ZLIB, EventBatch
from sync.outbox import Outbox
from tests.sync_fixtures import IDENTITY, append_events, events_of

_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                     | st.text(), lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)


@settings(max_examples=60, deadline=None)
@given(body=st.dictionaries(st.text(max_size=8), _json, max_size=4),
       at=st.floats(min_value=0, max_value=4e9), trusted=st.booleans())
def test_wire_text_equals_event_to_wire(tmp_path_factory, body, at, trusted) -> None:  # type: ignore[no-untyped-def]
    """GIVEN any event body, time and clock flag WHEN the drain's fast serialiser writes it
    THEN it parses to exactly Event.to_wire (the definition of the wire form)."""
    ledger = Ledger(tmp_path_factory.mktemp("w") / "l.sqlite")
    try:
        with ledger.immediate() as conn:
            ledger.append_event(conn, EventType.DECISION, at, trusted, body)
        outbox = Outbox(ledger, IDENTITY)
        batch = outbox.next_batch(0, 10)
        assert batch is not None
        decoded = EventBatch.decode(batch.payload, batch.content_type)
        expected = [e.to_wire(IDENTITY.store_id, IDENTITY.device_id)
                    for e in ledger.pending_events()]
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
    sent THEN sent rows are pruned to the limit and the alarm goes off with an event."""
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
    assert not health.alarm and health.pruned >= 500
    alarms = events_of(ledger, EventType.OUTBOX_ALARM)
    assert [a["alarm"] for a in alarms] == [True, False]
    assert ledger.conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] <= 1001


def test_old_unsent_event_raises_the_alarm(tmp_path: Path) -> None:
    """GIVEN one unsent event two days old and a one-day age limit WHEN checked THEN the
    alarm is on, naming the age, and the event is still there."""
    ledger = Ledger(tmp_path / "l.sqlite")
    append_events(ledger, 1, start_at=time.time() - 2 * 86400)
    health = Outbox(ledger, IDENTITY).check(SyncPolicy(outbox_max_age_s=86400))
    assert health.alarm and "h old" in health.why
    assert ledger.conn.execute("SELECT COUNT(*) FROM outbox WHERE type='decision'"
                               ).fetchone()[0] == 1
