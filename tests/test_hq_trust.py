"""Issue 11's attacks on HQ ingest, each tried as a hostile tester would, on a real mosquitto.

HQ believes only what a registered box signed (``docs/security.md``, "Event
authentication"): a stranger's batch, presence or report is one ``hq_reject`` row with its
reason, acknowledged, and nothing else changes. HQ decides coupon limits from its own
issue records, counts uses per device, and answers at most one catch-up per device per
interval.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from edge.keys import Purpose, SigningKey, TrustedKey
from edge.storeconfig import apply_remote_uses
from edge.verdict import Reason
from hq.ingest.eventstore import CATCH_UP_EVERY_S
from sync.contract import (
    CONTENT_JSON,
    MAX_BATCH_EVENTS,
    MAX_MESSAGE_BYTES,
    DataKind,
    Envelope,
    EventBatch,
    OrderUpdate,
    Presence,
    PresenceState,
    RemoteUse,
    Reported,
    decode_remote_uses,
    encode_orders,
    open_envelope,
    sign_device_message,
)
from tests.hq_support import (  # noqa: F401
    TOPICS,
    Hq,
    Inbox,
    RawBox,
    StoreBox,
    coupon_code,
    event,
    hq_fixture,
    wait_until,
)

pytestmark = pytest.mark.network

# Every table an accepted message could change; a rejected one must leave them all as they were.
STATE_TABLES = ("hq_event", "hq_device", "hq_store", "hq_gap", "hq_code_use", "hq_device_use",
                "hq_conflict", "hq_outbox", "hq_catch_up")


def _accepted(code_id: str, facts: dict[str, Any] | None = None,
              kind: str = "coupon") -> dict[str, Any]:
    return {"accepted": True, "reason": None, "kind": kind, "code_id": code_id,
            "campaign_id": "LIVE1", "till": "T1", "source": "scanner", "facts": facts or {}}


def _state(hq: Hq) -> dict[str, list[tuple[Any, ...]]]:
    db = hq.dbs[0]
    return {t: db.query(f"SELECT * FROM {t} ORDER BY 1, 2") for t in STATE_TABLES}


def _rejects(hq: Hq) -> list[tuple[str, str]]:
    return [(str(r[0]), str(r[1])) for r in
            hq.dbs[0].query("SELECT reason, topic FROM hq_reject ORDER BY id")]


def _trust(hq: Hq, coupon_key: SigningKey) -> list[TrustedKey]:
    return [TrustedKey(coupon_key.key_id, coupon_key.public_key, frozenset({Purpose.COUPON})),
            *hq.trusted]


def test_attack_1_a_stranger_cannot_spend_coupons_or_invent_stores(hq: Hq) -> None:
    """GIVEN HQ knowing stores A and B, with a registered box in each
    WHEN a client that is no registered box publishes, unsigned, a batch from made-up store
    EVIL saying coupon X was accepted; the same signed with a key of its own; a batch on
    A's registered device's topic unsigned and signed by another key; and the registered
    B box's batch on A's topic
    THEN each is one hq_reject row with its reason (unknown_device, unsigned, bad_signature,
    wrong_store), every one is acknowledged (the worker goes on: a genuine batch sent after
    them is stored), EVIL never becomes a store and no remote use is queued for anyone."""
    w = hq.worker()
    w.store.add_stores(["A", "B"])
    box_a, box_b = hq.box("A", "A1"), hq.box("B", "B1")
    stranger = RawBox(hq.broker, "EVIL", "E1")
    before = _state(hq)
    batch = [event("EVIL", "E1", 1, body=_accepted("C:X"))]
    stranger.send(batch)
    stranger.raw(TOPICS.events("EVIL", "E1"), EventBatch("EVIL", "E1", batch).encode()[0],
                 CONTENT_JSON, key=SigningKey.generate("E1"))
    forged = EventBatch("A", "A1", [event("A", "A1", 1, body=_accepted("C:X"))]).encode()[0]
    stranger.raw(TOPICS.events("A", "A1"), forged, CONTENT_JSON)
    stranger.raw(TOPICS.events("A", "A1"), forged, CONTENT_JSON, key=SigningKey.generate("A1"))
    box_b.raw(TOPICS.events("A", "B1"), EventBatch(
        "A", "B1", [event("A", "B1", 1, body=_accepted("C:X"))]).encode()[0], CONTENT_JSON)
    wait_until(lambda: len(_rejects(hq)) == 5, what="five rejects")
    assert [r for r, _t in _rejects(hq)] == ["unknown_device", "unknown_device", "unsigned",
                                            "bad_signature", "wrong_store"]
    assert _state(hq) == before
    # The rows are committed before the worker counts the message: wait for its count.
    wait_until(lambda: w.counters.messages == 5, what="five messages counted")
    assert w.counters.rejected == 5 and w.counters.new_events == 0
    box_a.send([event("A", "A1", 1)])
    wait_until(lambda: hq.count() == 1, what="the genuine batch stored after the rejects")
    assert hq.count("SELECT COUNT(*) FROM hq_store WHERE store='EVIL'") == 0
    assert hq.count("SELECT COUNT(*) FROM hq_outbox") == 0
    stranger.close()


def test_attack_1_a_registered_box_cannot_flood_fanout_or_lie_about_limits(
        hq: Hq, tmp_path: Path) -> None:
    """GIVEN stores A and B with a registered box each, and HQ having issued coupon X as
    single-use (recorded when issued)
    WHEN A's box sends one batch of 2,000 accepted uses, then one over the size limit
    THEN both are rejected (too_many_events, too_large) with nothing queued;
    WHEN it sends 1,000 uses of coupons valid everywhere in one batch
    THEN B is told in 2 envelopes (500 lines each), not 1,000;
    WHEN A and B each report X accepted once, both claiming facts.max_uses 10^9
    THEN HQ records a conflict with max_uses 1 (its own number), not a hidden double use."""
    coupon_key = SigningKey.generate("cpn")
    hq.worker().store.add_stores(["A", "B"])
    box_a, box_b = hq.box("A", "A1"), hq.box("B", "B1")
    coupon_code(coupon_key, "X", record=hq.dbs[0])
    many = [event("A", "A1", s, body=_accepted(f"C:F{s}")) for s in range(1, 2001)]
    assert len(many) > MAX_BATCH_EVENTS
    box_a.send(many)
    box_a.raw(TOPICS.events("A", "A1"), b"x" * (MAX_MESSAGE_BYTES + 1), CONTENT_JSON)
    wait_until(lambda: len(_rejects(hq)) == 2, what="two rejects")
    assert [r for r, _t in _rejects(hq)] == ["too_many_events", "too_large"]
    assert hq.count("SELECT COUNT(*) FROM hq_outbox") == 0 and hq.count() == 0
    box_a.send(many[:MAX_BATCH_EVENTS])
    wait_until(lambda: hq.count() == MAX_BATCH_EVENTS, what="the full batch stored")
    assert hq.dbs[0].query("SELECT store, COUNT(*) FROM hq_outbox GROUP BY store") == [("B", 2)]
    lie = {"max_uses": 10**9, "stores": []}
    box_a.send([event("A", "A1", MAX_BATCH_EVENTS + 1, body=_accepted("C:X", lie))])
    box_b.send([event("B", "B1", 1, body=_accepted("C:X", lie))])
    wait_until(lambda: hq.count("SELECT COUNT(*) FROM hq_conflict") == 1, what="the conflict")
    assert hq.dbs[0].query("SELECT code_id, stores, uses, max_uses FROM hq_conflict") == [
        ("C:X", "A,B", 2, 1)]


def test_attack_2_only_the_device_can_spend_its_sequence_numbers(hq: Hq) -> None:
    """GIVEN a registered box D1 of store S1 that has sent seqs 1-2
    WHEN someone else publishes seqs 3-4 on D1's topic first (unsigned, then signed with
    another key)
    THEN both are rejected and D1's genuine seqs 3-4 that follow are stored, none of them
    refused as seq_reused."""
    hq.worker()
    box = hq.box("S1", "D1")
    box.send([event("S1", "D1", s) for s in (1, 2)])
    wait_until(lambda: hq.count() == 2, what="the first two events")
    intruder = RawBox(hq.broker, "S1", "D1")
    fake = EventBatch("S1", "D1", [event("S1", "D1", s) for s in (3, 4)]).encode()[0]
    intruder.raw(TOPICS.events("S1", "D1"), fake, CONTENT_JSON)
    intruder.raw(TOPICS.events("S1", "D1"), fake, CONTENT_JSON, key=SigningKey.generate("D1"))
    wait_until(lambda: len(_rejects(hq)) == 2, what="the forgeries rejected")
    genuine = [event("S1", "D1", s) for s in (3, 4)]
    box.send(genuine)
    wait_until(lambda: hq.count() == 4, what="the genuine seqs 3-4")
    assert {r for r, _t in _rejects(hq)} == {"unsigned", "bad_signature"}
    stored = {str(r[0]) for r in hq.dbs[0].query("SELECT event_id FROM hq_event WHERE seq>2")}
    assert stored == {e["id"] for e in genuine}
    intruder.close()


def test_attack_3_forged_collection_and_resync_change_nothing(hq: Hq) -> None:
    """GIVEN order O-1 pushed to store S1 (box D1 registered there)
    WHEN a stranger publishes on D1's topics a forged "pickup accepted" for O-1, a report
    asking for a resync, and a presence with the backlog alarm on
    THEN all three are rejected and nothing changes: no event, no catch-up queued, no alarm;
    WHEN D1 itself asks for a resync twice within the interval (a replayed signed report)
    THEN exactly one catch-up is queued, and it still says O-1 is waiting."""
    now = int(time.time())
    with hq.db().tx() as cur:
        cur.execute("INSERT INTO hq_order(store, order_id, body, window_end, updated_at)"
                    " VALUES ('S1', 'O-1', ?, ?, ?)", (
                        json.dumps(OrderUpdate("O-1", "4001", now - 60,
                                                             now + 3600).to_dict()),
                        now + 3600, now))
    w = hq.worker()
    box = hq.box("S1", "D1")
    box.send([event("S1", "D1", 1)])
    wait_until(lambda: hq.count() == 1, what="D1 known to HQ")
    before = _state(hq)
    stranger = RawBox(hq.broker, "S1", "D1")
    stranger.send([event("S1", "D1", 2, body=_accepted("P:O-1", kind="pickup"))])
    stranger.raw(TOPICS.reported("S1", "D1"), Reported(0, resync=True, at=now).encode())
    stranger.raw(TOPICS.status("S1", "D1"),
                 Presence(PresenceState.ONLINE, "x", 0, 99_999, True, now, True).encode())
    wait_until(lambda: len(_rejects(hq)) == 3, what="three rejects")
    assert [r for r, _t in _rejects(hq)] == ["unsigned"] * 3
    assert _state(hq) == before
    report = Reported(0, resync=True, at=now).encode()
    box.raw(TOPICS.reported("S1", "D1"), report)
    box.raw(TOPICS.reported("S1", "D1"), report)
    wait_until(lambda: w.counters.messages >= 6, what="both reports handled")
    assert CATCH_UP_EVERY_S >= 10
    rows = hq.dbs[0].query("SELECT kind, body FROM hq_outbox WHERE store='S1'")
    assert [k for k, _b in rows] == ["orders"]
    assert json.loads(rows[0][1]) == encode_orders(
        [OrderUpdate("O-1", "4001", now - 60, now + 3600)])
    stranger.close()


def test_attack_4_two_boxes_of_one_store_cannot_both_spend_a_single_use_coupon(
        hq: Hq, tmp_path: Path) -> None:
    """GIVEN store A with two registered boxes A1 and A2, and a single-use coupon HQ issued
    WHEN A1 accepts it and syncs
    THEN HQ tells store A of A1's use (naming the device): A2 applies it and refuses the
    coupon, A1 applying the same envelope skips its own line;
    WHEN A2 had already accepted it offline too and syncs
    THEN HQ records a conflict though only one store is involved."""
    coupon_key = SigningKey.generate("cpn")
    trust = _trust(hq, coupon_key)
    code = coupon_code(coupon_key, "SOLO", record=hq.db())
    a1, a2, a3 = (StoreBox(tmp_path, "A", d, trust) for d in ("A1", "A2", "A3"))
    inbox = Inbox(hq.broker, TOPICS.data("A"))
    hq.worker().store.add_stores(["A"])
    box1, box2 = hq.box("A", "A1"), hq.box("A", "A2")
    hq.register("A", "A3")
    assert a1.counter.redeem(code).accepted and a2.counter.redeem(code).accepted
    a1.drain(box1)
    wait_until(lambda: len(inbox.messages) == 1, what="A1's use told to store A")
    data = open_envelope(Envelope.decode(inbox.messages[0].payload), hq.trusted, time.time())
    assert data.kind is DataKind.REMOTE_USES
    assert decode_remote_uses(data.body) == [RemoteUse("C:SOLO", "A", 1,
                                                       decode_remote_uses(data.body)[0].last_at,
                                                       "A1")]
    for box in (a1, a3):
        assert apply_remote_uses(box.ledger, box.counter.identity, data).applied
    assert a1.ledger.conn.execute("SELECT COUNT(*) FROM remote_use").fetchone()[0] == 0
    assert a3.counter.redeem(code).reason is Reason.USED_AT_OTHER_STORE
    assert hq.count("SELECT COUNT(*) FROM hq_conflict") == 0
    a2.drain(box2)
    wait_until(lambda: hq.count("SELECT COUNT(*) FROM hq_conflict") == 1, what="the conflict")
    assert hq.dbs[0].query("SELECT stores, uses, max_uses FROM hq_conflict") == [("A", 2, 1)]
    assert sorted(hq.dbs[0].query("SELECT device, uses FROM hq_device_use")) == [
        ("A1", 1), ("A2", 1)]
    inbox.close()
    for s in (a1, a2, a3):
        s.close()


async def test_the_box_signs_what_it_sends_prepared_batches_included(
        hq: Hq, tmp_path: Path) -> None:
    """GIVEN a box registered at HQ with 250 events, 200 of them prepared and signed ahead
    as the service does while offline (zlib batches of 100)
    WHEN its real SyncService drains to HQ
    THEN HQ stores all 250 with no reject: the prepared batches' signatures (packed with
    their properties ahead) and those signed while sending verify, and so do presence and
    report;
    WHEN the connection dies THEN the broker's copy of the will, signed at connect, is
    believed too (the device reads offline at HQ)."""
    import asyncio
    import contextlib

    from edge.ledger import Ledger
    from edge.rules import Identity
    from sync.link import signed_properties
    from sync.outbox import Outbox
    from sync.service import SyncService
    from sync.service import _batch_mark as _mark
    from sync.settings import MqttSettings
    from tests.sync_fixtures import append_events

    identity = Identity("S1", "S1-T1")
    path = tmp_path / "box.sqlite"
    ledger = Ledger(path)
    append_events(ledger, 250)
    with ledger.immediate() as conn:
        ledger.put_setting(conn, "sync_policy", {"batch_size": 100, "linger_ms": 10})
    hq.worker()
    settings = MqttSettings(port=hq.broker.port, backoff_min_s=5.0, backoff_max_s=10.0)
    key = hq.register("S1", "S1-T1")
    service = SyncService(path, identity, settings, software="t", device_key=key)
    outbox = Outbox(ledger, identity)
    assert outbox.seal(100, presign=service.presign) == 2
    sealed = [outbox.next_batch(0, 100), outbox.next_batch(100, 100)]
    assert [service._presigned[_mark(b)] for b in sealed if b is not None] == [
        signed_properties(b.content_type, sign_device_message(
            key, TOPICS.events("S1", "S1-T1"), b.content_type, b.payload))
        for b in sealed if b is not None]
    task = asyncio.create_task(service.run())
    try:
        deadline = time.monotonic() + 20
        while hq.count() < 250 or hq.count(
                "SELECT COUNT(*) FROM hq_device WHERE state='online'") < 1:
            assert time.monotonic() < deadline, f"{hq.count()} of 250 stored"
            await asyncio.sleep(0.05)
        assert service._link is not None
        service._link.abort("the test cuts the line")  # no DISCONNECT: the broker sends the will
        while hq.count("SELECT COUNT(*) FROM hq_device WHERE state='offline'") < 1:
            assert time.monotonic() < deadline + 10, "the will did not reach HQ"
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        ledger.close()
    assert _rejects(hq) == [] and service._presigned == {}


def test_issue_coupon_records_what_hq_issued(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """GIVEN an HQ home with a coupon key WHEN `edge-hq issue coupon` issues a coupon for
    stores A and B, three uses THEN HQ's database records those limits under its code id
    before the code is printed, and fan-out reads them back (hq.issuing.issued.issued)."""
    from cli.hq import main
    from hq.db import Database
    from hq.issuing.issued import IssuedCode, issued

    home = ["--home", str(tmp_path / "hq")]
    assert main([*home, "keygen", "--key-id", "cpn", "--purposes", "coupon"]) == 0
    capsys.readouterr()
    db_url = f"sqlite:///{tmp_path / 'hq.sqlite'}"
    assert main([*home, "issue", "coupon", "--id", "LIVE-7", "--campaign", "LIVE1",
                 "--benefit", "free:coffee", "--stores", "A,B", "--max-uses", "3",
                 "--db", db_url]) == 0
    assert capsys.readouterr().out.startswith("SEC")
    db = Database(db_url)
    with db.tx() as cur:
        assert issued(cur, "C:LIVE-7") == IssuedCode("C:LIVE-7", "LIVE1", ("A", "B"), 3)
        assert issued(cur, "C:NEVER") == IssuedCode("C:NEVER", None, (), 1)
    db.close()


def test_an_hq_database_from_before_counts_its_past_uses_per_device(tmp_path: Path) -> None:
    """GIVEN an HQ database from before per-device counts, holding coupon uses (two
    accepted at D1, one of them voided; one at D2) WHEN this version opens it THEN
    hq_device_use holds those net counts, once: opening it again adds nothing."""
    from hq.db import Database

    url = f"sqlite:///{tmp_path / 'hq.sqlite'}"
    db = Database(url)
    with db.tx() as cur:  # as the old version left it
        cur.execute("DELETE FROM hq_meta WHERE key='device_use'")
        for device, seq, type_, accepted in (("D1", 1, "decision", 1), ("D1", 2, "decision", 1),
                                             ("D1", 3, "void", None), ("D2", 1, "decision", 1),
                                             ("D2", 2, "decision", 0)):
            cur.execute("INSERT INTO hq_event(device, store, seq, event_id, type, at,"
                        " clock_trusted, body, received_at, kind, code_id, accepted)"
                        " VALUES (?, 'S1', ?, ?, ?, 1.0, 1, '{}', 1.0, 'coupon', 'C:X', ?)",
                        (device, seq, f"{device}-{seq}", type_, accepted))
    db.close()
    for _ in range(2):
        db = Database(url)
        assert sorted(db.query("SELECT device, uses FROM hq_device_use")) == [("D1", 1),
                                                                            ("D2", 1)]
        db.close()
