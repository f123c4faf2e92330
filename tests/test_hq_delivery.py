"""HQ's side of delivery: what it confirms to a device, what it asks for, and when."""

from __future__ import annotations

from hq.db import Database
from hq.ingest import delivery
from hq.ingest.delivery import Delivery, DeliveryTiming, Versions
from hq.ingest.eventstore import EventStore
from hq.issuing.registry import DeviceRegistry
from hq.reports import stores as report
from sync.contract import DataKind, EventBatch, Presence, PresenceState, Topics
from tests.hq_support import event

TOPICS = Topics()
TIMING = DeliveryTiming(confirm_every_s=1.0, ask_after_s=5.0, ask_max_s=30.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1_764_040_000.0

    def __call__(self) -> float:
        return self.now


def _setup(db_url: str) -> tuple[EventStore, Database, Clock]:
    db = Database(db_url)
    clock = Clock()
    return EventStore(db, TOPICS, DeviceRegistry(), clock=clock, timing=TIMING), db, clock


def _batch(store: EventStore, *seqs: int) -> None:
    store.ingest_batch("S1", "S1-T1", EventBatch("S1", "S1-T1",
                                                 [event("S1", "S1-T1", s) for s in seqs]))


def _due(db: Database, clock: Clock) -> list[tuple[DataKind, dict[str, int | str]]]:
    return [(d.kind, d.body) for d in delivery.take_due(db, clock(), TIMING)]


def test_hq_confirms_what_it_holds_and_asks_for_a_gap_with_backoff(hq_db_url: str) -> None:
    """GIVEN seqs 1, 2 and 4 of a device committed WHEN the sender takes what is due THEN
    it confirms 2 (not 4: 3 is missing), at most once a second, and asks for 3-3 only after
    5 s (a gap may heal by itself), then after 10 s, 20 s, capped at 30 s; WHEN 3 arrives
    THEN the request stops and 4 is confirmed."""
    store, db, clock = _setup(hq_db_url)
    _batch(store, 1, 2)
    _batch(store, 4)
    assert _due(db, clock) == [(DataKind.CONFIRMED, {"device": "S1-T1", "seq": 2})]
    _batch(store, 4)  # a duplicate still owes a confirmation, but not within the second
    assert _due(db, clock) == []
    clock.now += 5
    assert _due(db, clock) == [(DataKind.CONFIRMED, {"device": "S1-T1", "seq": 2}),
                               (DataKind.RESEND, {"device": "S1-T1", "first": 3, "last": 3})]
    waits = []
    for _ in range(4):
        start = clock.now
        while not _due(db, clock):
            clock.now += 1
        waits.append(clock.now - start)
    assert waits == [10, 20, 30, 30]
    _batch(store, 3)
    clock.now += 100
    assert _due(db, clock) == [(DataKind.CONFIRMED, {"device": "S1-T1", "seq": 4})]


def test_a_tail_learnt_from_presence_is_asked_for_and_shown_in_the_report(
        hq_db_url: str) -> None:
    """GIVEN HQ holds seqs 1-4 of a device WHEN its presence says its newest seq is 9 with 5
    sent and unconfirmed THEN after 5 s HQ asks for 5-9, and the report shows HQ holding
    1-4, the 5 awaiting confirmation and the request; a lower last_seq later (an old
    retained will) does not shrink what HQ knows."""
    store, db, clock = _setup(hq_db_url)
    _batch(store, 1, 2, 3, 4)
    store.record_presence("S1", "S1-T1", Presence(PresenceState.ONLINE, last_seq=9,
                                                  unconfirmed=5))
    store.record_presence("S1", "S1-T1", Presence(PresenceState.OFFLINE, last_seq=6),
                          seen=False)
    clock.now += 5
    assert _due(db, clock)[-1] == (DataKind.RESEND,
                                   {"device": "S1-T1", "first": 5, "last": 9})
    text = report.to_text(report.build(db))
    assert "HQ holds 1-4" in text and "ASKING for seq 5-9 (1 request so far)" in text
    dev = report.build(db)[0].devices[0]
    assert (dev.held, dev.last_seq, dev.asking) == (4, 9, (5, 9))


def test_a_settled_presence_owes_no_confirmation(hq_db_url: str) -> None:
    """GIVEN HQ holds and has confirmed seqs 1-3 of a device
    WHEN its presence says 0 unconfirmed with newest seq 3 THEN no confirmation is due (the
    box would verify a signed no-op after every decision);
    WHEN a presence says 2 unconfirmed, or a newest seq HQ lacks THEN HQ confirms again."""
    store, db, clock = _setup(hq_db_url)
    _batch(store, 1, 2, 3)
    assert _due(db, clock) == [(DataKind.CONFIRMED, {"device": "S1-T1", "seq": 3})]
    clock.now += 10
    store.record_presence("S1", "S1-T1", Presence(PresenceState.ONLINE, last_seq=3,
                                                  unconfirmed=0))
    assert _due(db, clock) == []
    store.record_presence("S1", "S1-T1", Presence(PresenceState.ONLINE, last_seq=3,
                                                  unconfirmed=2))
    assert _due(db, clock) == [(DataKind.CONFIRMED, {"device": "S1-T1", "seq": 3})]
    clock.now += 10
    store.record_presence("S1", "S1-T1", Presence(PresenceState.ONLINE, last_seq=4,
                                                  unconfirmed=0))
    assert _due(db, clock) == [(DataKind.CONFIRMED, {"device": "S1-T1", "seq": 3})]


def test_delivery_versions_rise_past_a_clock_that_stands_still_and_are_signed() -> None:
    """GIVEN a clock that does not move WHEN versions are taken THEN each is above the last
    (a millisecond clock: a restored database cannot make them go back); a sealed delivery
    goes to the device's hq topic and verifies as the kind it carries."""
    from edge.keys import Purpose, SigningKey, TrustedKey
    from sync.contract import Envelope, open_envelope

    v = Versions(lambda: 1000.0)
    assert [v.next(), v.next(), v.next()] == [1_000_000, 1_000_001, 1_000_002]
    key = SigningKey.generate("hq")
    topic, payload = delivery.sealed(
        Delivery("S1", "S1-T1", DataKind.CONFIRMED, {"device": "S1-T1", "seq": 3}), key,
        7, 1000.0, TOPICS)
    assert topic == "se/v1/s/S1/d/S1-T1/hq"
    data = open_envelope(Envelope.decode(payload), [TrustedKey(
        "hq", key.public_key, frozenset({Purpose.CONFIG}))], 1000.0)
    assert (data.kind, data.version, data.body) == (DataKind.CONFIRMED, 7,
                                                    {"device": "S1-T1", "seq": 3})
