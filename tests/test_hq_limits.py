"""HQ ingest against a real mosquitto: a zlib bomb and a deep batch are refused and recorded."""

from __future__ import annotations

import zlib

import pytest

from sync.contract import CONTENT_JSON_ZLIB
from tests.hq_support import TOPICS, Hq, RawBox, event, hq_fixture, wait_until  # noqa: F401

pytestmark = pytest.mark.network

DEEP = b"[" * 50_000 + b"]" * 50_000  # ~100 KB: RecursionError in a bare json.loads


def test_hq_ingest_records_a_bomb_and_a_deep_batch_and_goes_on(hq: Hq) -> None:
    """GIVEN an HQ ingest worker on a real broker WHEN a box publishes a zlib bomb and a
    ~100 KB deeply nested batch, then a good batch THEN both bad ones are `bad_batch` rejects
    saying why (acknowledged, not redelivered) and the good batch is stored."""
    w = hq.worker()
    box = hq.box("S1", "D1")  # registered and signing: what is refused is the content
    box.raw(TOPICS.events("S1", "D1"), zlib.compress(b" " * (64 << 20), 9), CONTENT_JSON_ZLIB)
    box.raw(TOPICS.events("S1", "D1"), DEEP)
    box.send([event("S1", "D1", 1)])
    wait_until(lambda: w.counters.messages == 3, what="three messages handled")
    rows = hq.dbs[0].query("SELECT reason, detail FROM hq_reject ORDER BY id")
    assert [r[0] for r in rows] == ["bad_batch", "bad_batch"]
    assert "inflates past" in rows[0][1] and "nested deeper" in rows[1][1]
    assert hq.count() == 1
    box.close()


def test_a_flooding_device_gets_rows_but_not_copies(hq: Hq) -> None:
    """GIVEN an ingest worker WHEN one device publishes 50 junk batches of 100 KB in a row
    THEN each is a reject row (acknowledged), the first keeps the whole payload and the
    rest only a preview, so the flood costs rows, not 5 MB of copies."""
    w = hq.worker()
    box = RawBox(hq.broker, "S1", "D1")
    for i in range(50):
        box.raw(TOPICS.events("S1", "D1"), b"%d" % i + b"x" * 100_000)
    wait_until(lambda: w.counters.messages == 50, what="50 messages handled")
    rows = hq.dbs[0].query("SELECT raw, detail FROM hq_reject ORDER BY id")
    assert len(rows) == 50
    assert rows[0][0] is not None and all(raw is None or len(raw) < 200 for raw, _ in rows[1:])
    assert all("payload not kept" in detail for _, detail in rows[1:])
    box.close()


@pytest.mark.broker_needs(
    "max_packet_size", reason="the broker must hold back a message over HQ's announced maximum")
def test_hq_announces_its_maximum_packet_size(hq: Hq) -> None:
    """GIVEN an ingest worker (it announces the MQTT 5 Maximum Packet Size) WHEN a 9 MB
    message is published on a device's events topic, then a good batch THEN the broker never
    delivers the 9 MB one to HQ (no reject row, no message handled for it) and the good
    batch is stored."""
    w = hq.worker()
    box = hq.box("S1", "D1")
    box.raw(TOPICS.events("S1", "D1"), b"x" * (9 << 20))
    box.send([event("S1", "D1", 1)])
    # Messages on one topic arrive in order: had the broker sent the 9 MB one, it would
    # have been handled before the good batch.
    wait_until(lambda: w.counters.messages >= 1, what="the good batch handled")
    assert w.counters.messages == 1 and w.counters.new_events == 1
    assert hq.count() == 1
    assert hq.dbs[0].query("SELECT COUNT(*) FROM hq_reject")[0][0] == 0
    box.close()
