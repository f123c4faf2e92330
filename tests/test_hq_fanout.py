"""Conflicts across stores and the fan-out that lets a third store refuse a spent coupon."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.keys import Purpose, SigningKey, TrustedKey
from edge.verdict import Reason
from sync.contract import DataKind, Envelope, decode_remote_uses, open_envelope
from tests.hq_support import (  # noqa: F401
    TOPICS,
    Hq,
    Inbox,
    RawBox,
    StoreBox,
    coupon_code,
    hq_fixture,
    wait_until,
)

pytestmark = pytest.mark.network


def _trust(hq: Hq, coupon_key: SigningKey) -> list[TrustedKey]:
    return [TrustedKey(coupon_key.key_id, coupon_key.public_key, frozenset({Purpose.COUPON})),
            *hq.trusted]


def test_offline_double_spend_is_a_conflict_and_a_third_store_refuses(
        hq: Hq, tmp_path: Path) -> None:
    """GIVEN stores A, B, C known to HQ and a single-use coupon valid at every store
    WHEN A and B both accept it while offline, then drain their outboxes to HQ
    THEN HQ records a conflict naming A and B, publishes signed remote_uses envelopes to
    C (one per use) that verify with the box's trusted key, and after applying them C's
    real Counter rejects the coupon as used at another store."""
    coupon_key = SigningKey.generate("cpn")
    trust = _trust(hq, coupon_key)
    code = coupon_code(coupon_key, "X1")
    a = StoreBox(tmp_path, "A", "A1", trust)
    b = StoreBox(tmp_path, "B", "B1", trust)
    c = StoreBox(tmp_path, "C", "C1", trust)
    inbox_c = Inbox(hq.broker, TOPICS.data("C"))
    inbox_a = Inbox(hq.broker, TOPICS.data("A"))
    assert a.counter.redeem(code).accepted and b.counter.redeem(code).accepted
    w = hq.worker()
    w.store.add_stores(["A", "B", "C"])
    box_a, box_b = hq.box("A", "A1"), hq.box("B", "B1")
    assert a.drain(box_a) == 1 and b.drain(box_b) == 1
    wait_until(lambda: len(inbox_c.messages) == 2, what="two fan-outs to C")
    assert hq.dbs[0].query("SELECT code_id, stores, uses, max_uses FROM hq_conflict") == [
        ("C:X1", "A,B", 2, 1)]
    seen = []
    for msg in inbox_c.messages:
        data = open_envelope(Envelope.decode(msg.payload), hq.trusted, 0)
        assert data.kind is DataKind.REMOTE_USES and data.store == "C"
        seen += [(u.code_id, u.store, u.uses) for u in decode_remote_uses(data.body)]
        assert c.apply_remote_uses(msg.payload) == 1
    assert sorted(seen) == [("C:X1", "A", 1), ("C:X1", "B", 1)]
    versions = [open_envelope(Envelope.decode(m.payload), hq.trusted, 0).version
                for m in inbox_c.messages]
    assert versions == [1, 2]
    verdict = c.counter.redeem(code)
    assert not verdict.accepted and verdict.reason is Reason.USED_AT_OTHER_STORE
    # A hears about B's use (and not about its own)
    wait_until(lambda: len(inbox_a.messages) == 1, what="fan-out to A")
    assert decode_remote_uses(open_envelope(Envelope.decode(inbox_a.messages[0].payload),
                                            hq.trusted, 0).body)[0].store == "B"
    wait_until(lambda: hq.count("SELECT COUNT(*) FROM hq_outbox WHERE sent_at IS NULL") == 0,
               what="outbox marked sent")
    for x in (inbox_a, inbox_c, box_a, box_b):
        x.close()
    for s in (a, b, c):
        s.close()


def test_fanout_goes_only_to_listed_stores_and_a_void_lowers_the_count(
        hq: Hq, tmp_path: Path) -> None:
    """GIVEN a coupon for stores A and B only, and stores A, B, C known
    WHEN A accepts it, then voids it
    THEN B gets two envelopes (uses 1, then uses 0), C gets none, and no conflict exists."""
    coupon_key = SigningKey.generate("cpn")
    trust = _trust(hq, coupon_key)
    code = coupon_code(coupon_key, "Y1", stores=("A", "B"), record=hq.db())
    a = StoreBox(tmp_path, "A", "A1", trust)
    inbox_b = Inbox(hq.broker, TOPICS.data("B"))
    inbox_c = Inbox(hq.broker, TOPICS.data("C"))
    w = hq.worker()
    w.store.add_stores(["A", "B", "C"])
    box_a = hq.box("A", "A1")
    verdict = a.counter.redeem(code)
    assert verdict.accepted and verdict.decision_id is not None
    a.drain(box_a)
    a.counter.void(verdict.decision_id, "wrong item")
    a.drain(box_a)
    wait_until(lambda: len(inbox_b.messages) == 2, what="two fan-outs to B")
    uses = [decode_remote_uses(open_envelope(Envelope.decode(m.payload), hq.trusted, 0).body)[0]
            .uses for m in inbox_b.messages]
    assert uses == [1, 0]
    assert inbox_c.messages == []
    assert hq.count("SELECT COUNT(*) FROM hq_conflict") == 0
    for x in (inbox_b, inbox_c, box_a):
        x.close()
    a.close()


def test_fanout_recorded_by_a_non_sending_worker_is_sent_by_the_sender(
        hq: Hq, tmp_path: Path) -> None:
    """GIVEN a worker run with --no-fanout (no signer) that ingests a redemption at A
    WHEN the fan-out sender starts later
    THEN the fan-out row waited unsent in hq_outbox, and the sender versions, signs and
    publishes it to B, then marks it sent."""
    w = hq.worker("quiet", fanout=False)
    w.store.add_stores(["A", "B"])
    coupon_key = SigningKey.generate("cpn")
    a = StoreBox(tmp_path, "A", "A1", _trust(hq, coupon_key))
    box_a = hq.box("A", "A1")
    a.counter.redeem(coupon_code(coupon_key, "Z1"))
    a.drain(box_a)
    wait_until(lambda: w.counters.messages == 1)
    assert hq.dbs[0].query("SELECT store, version, payload, sent_at FROM hq_outbox") == [
        ("B", None, None, None)]
    inbox_b = Inbox(hq.broker, TOPICS.data("B"))
    hq.worker("sender", group="other", fanout=True)
    wait_until(lambda: len(inbox_b.messages) == 1, what="outbox published by the sender")
    data = open_envelope(Envelope.decode(inbox_b.messages[0].payload), hq.trusted, 0)
    assert (data.kind, data.store, data.version) == (DataKind.REMOTE_USES, "B", 1)
    wait_until(lambda: hq.count("SELECT COUNT(*) FROM hq_outbox WHERE sent_at IS NULL") == 0,
               what="marked sent")
    for x in (inbox_b, box_a):
        x.close()
    a.close()


def test_versions_reach_a_store_in_order_whichever_worker_ingested(
        hq: Hq, tmp_path: Path) -> None:
    """GIVEN two ingest workers sharing the load, one of them the fan-out sender
    WHEN store A redeems 20 coupons, each sent in its own batch
    THEN store C receives 20 remote_uses envelopes whose versions arrive as 1..20."""
    sender = hq.worker("w1", fanout=True)
    other = hq.worker("w2", fanout=False)
    sender.store.add_stores(["A", "C"])
    coupon_key = SigningKey.generate("cpn")
    a = StoreBox(tmp_path, "A", "A1", _trust(hq, coupon_key))
    inbox_c = Inbox(hq.broker, TOPICS.data("C"))
    box_a = hq.box("A", "A1")
    for i in range(20):
        assert a.counter.redeem(coupon_code(coupon_key, f"V{i}")).accepted
        a.drain(box_a)
    wait_until(lambda: len(inbox_c.messages) == 20, what="20 fan-outs to C")
    assert sender.counters.messages > 0 and other.counters.messages > 0
    versions = [open_envelope(Envelope.decode(m.payload), hq.trusted, 0).version
                for m in inbox_c.messages]
    assert versions == list(range(1, 21))
    codes = {decode_remote_uses(open_envelope(Envelope.decode(m.payload), hq.trusted, 0)
                                .body)[0].code_id for m in inbox_c.messages}
    assert codes == {f"C:V{i}" for i in range(20)}
    for x in (inbox_c, box_a):
        x.close()
    a.close()
