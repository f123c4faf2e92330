"""The box's side of HQ's confirmations: ledger schema 4, applying confirmations and
resend requests, and what may be pruned."""

from __future__ import annotations

import json
import shutil
import zlib
from pathlib import Path

import pytest

from edge.delivery import apply_delivery
from edge.events import EventType
from edge.keys import SigningKey
from edge.ledger import SCHEMA_VERSION, Ledger
from edge.storeconfig import Outcome, SyncPolicy
from sync.contract import (
    Confirmed,
    ContractError,
    DataKind,
    Presence,
    PresenceState,
    Reported,
    ResendRequest,
    Topics,
)
from sync.inbound import Inbound
from sync.outbox import Outbox
from tests.sync_fixtures import (
    DEVICE,
    IDENTITY,
    STORE,
    append_events,
    events_of,
    hq_data,
    new_ledger,
    sealed,
)

SCHEMA_3 = Path(__file__).parent / "data" / "ledger-schema3.sqlite"


def _confirmed(seq: int, device: str = DEVICE) -> dict[str, object]:
    return Confirmed(device, seq).to_dict()


def _resend(first: int, last: int, device: str = DEVICE) -> dict[str, object]:
    return ResendRequest(device, first, last).to_dict()


def test_a_real_schema_3_ledger_migrates_with_nothing_confirmed(tmp_path: Path) -> None:
    """GIVEN a ledger written by the schema-3 code (30 events; 1-20 acknowledged by the
    broker, 1-10 pruned, the wire texts of 11-20 pruned) WHEN this software opens it THEN it
    is schema 4 (or later) with nothing confirmed: 11-20 are sent and unconfirmed, 21-30 unsent, and
    the policy prunes nothing more; WHEN HQ asks for 1-20 THEN 11-20 are built again from
    their rows (no wire text) and the batch holds exactly 11-30; WHEN HQ confirms 30 THEN
    the old rows may go."""
    path = tmp_path / "ledger.sqlite"
    shutil.copy(SCHEMA_3, path)
    ledger = Ledger(path)
    assert ledger.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 4
    assert ledger.confirmed() == (0, 0)
    assert (ledger.backlog(), ledger.unconfirmed(), ledger.newest_seq()) == (10, 10, 30)
    outbox = Outbox(ledger, IDENTITY)
    # An hour after event 16 (at +15): 11-15 are older than the policy keeps, and the
    # oldest unsent one (21, at +20) is not yet old enough for the alarm.
    old, now = SyncPolicy(outbox_max_age_s=3600), 1764040000.0 + 3615
    assert outbox.check(old, now=now).pruned == 0 and ledger.newest_seq() == 30
    result = apply_delivery(ledger, IDENTITY, hq_data(DataKind.RESEND, 5, _resend(1, 20)))
    assert result.applied and result.changed == 10  # 1-10 are gone: nothing to send
    assert ledger.backlog() == 20 and ledger.unconfirmed() == 0
    batch = outbox.next_batch(0, 100)
    assert batch is not None and (batch.first, batch.last, batch.count) == (11, 30, 20)
    payload = zlib.decompress(batch.payload) if batch.content_type.endswith("zlib") \
        else batch.payload
    sent = json.loads(payload)["events"]
    assert [e["seq"] for e in sent] == list(range(11, 31))
    assert sent[0]["body"] == {"accepted": True, "kind": "coupon", "code_id": "C:S3-10", "n": 10}
    ledger.mark_sent([(11, 30)])
    assert apply_delivery(ledger, IDENTITY, hq_data(DataKind.CONFIRMED, 6,
                                                    _confirmed(30))).changed == 30
    assert outbox.check(old, now=now).pruned == 5  # 11-15: confirmed and old
    ledger.close()


def test_confirmations_move_forward_only_and_replays_change_nothing(tmp_path: Path) -> None:
    """GIVEN 10 events, 1-8 acknowledged WHEN HQ confirms 5 (v10) THEN 5 is confirmed and 3
    wait for HQ; WHEN a confirmation of 3 (v11) comes THEN the confirmation stays at 5;
    WHEN v10 is delivered again or v9 replayed THEN nothing changes (duplicate); WHEN HQ
    confirms 10 though 9-10 had no PUBACK THEN they count as sent: nothing waits."""
    ledger = Ledger(tmp_path / "l.sqlite")
    append_events(ledger, 10)
    ledger.mark_sent([(1, 8)])
    assert apply_delivery(ledger, IDENTITY, hq_data(DataKind.CONFIRMED, 10,
                                                    _confirmed(5))).changed == 5
    assert ledger.confirmed() == (5, 10) and ledger.unconfirmed() == 3
    apply_delivery(ledger, IDENTITY, hq_data(DataKind.CONFIRMED, 11, _confirmed(3)))
    assert ledger.confirmed() == (5, 11)
    for version in (11, 9):
        again = apply_delivery(ledger, IDENTITY,
                               hq_data(DataKind.RESEND, version, _resend(1, 10)))
        assert again.outcome is Outcome.DUPLICATE
    assert ledger.backlog() == 2
    apply_delivery(ledger, IDENTITY, hq_data(DataKind.CONFIRMED, 12, _confirmed(99)))
    assert ledger.confirmed()[0] == 10 and ledger.backlog() == 0 == ledger.unconfirmed()
    assert events_of(ledger, EventType.CONFIG_REJECTED) == []  # applying records no event
    ledger.close()


def test_a_resend_request_takes_back_a_confirmation_and_unsends_the_range(
        tmp_path: Path) -> None:
    """GIVEN 10 events all sent and confirmed WHEN HQ (restored from a backup) asks for
    4-6 THEN the confirmation drops to 3, 4-6 are unsent again (the drain sends them next)
    and 7-10 stay sent, unconfirmed; the acknowledged ranges are split around the hole."""
    ledger = Ledger(tmp_path / "l.sqlite")
    append_events(ledger, 10)
    ledger.mark_sent([(1, 10)])
    apply_delivery(ledger, IDENTITY, hq_data(DataKind.CONFIRMED, 1, _confirmed(10)))
    result = apply_delivery(ledger, IDENTITY, hq_data(DataKind.RESEND, 2, _resend(4, 6)))
    assert result.applied and result.changed == 3
    assert ledger.confirmed()[0] == 3 and ledger.unconfirmed() == 4
    assert [e.seq for e in ledger.pending_events()] == [4, 5, 6]
    assert ledger.conn.execute("SELECT first, last FROM outbox_acked ORDER BY first"
                               ).fetchall() == [(1, 3), (7, 10)]
    ledger.close()


def test_delivery_for_another_device_or_malformed_is_refused_and_recorded(
        tmp_path: Path) -> None:
    """GIVEN a box WHEN a confirmation names another device, or a resend range ends before
    it starts THEN each is refused (wrong_store, invalid), recorded as a config_rejected
    event, and the outbox is untouched."""
    ledger = Ledger(tmp_path / "l.sqlite")
    append_events(ledger, 3)
    ledger.mark_sent([(1, 3)])
    other = apply_delivery(ledger, IDENTITY, hq_data(DataKind.CONFIRMED, 1,
                                                     _confirmed(3, "BJ001-T9")))
    bad = apply_delivery(ledger, IDENTITY, hq_data(DataKind.RESEND, 2,
                                                   {"device": DEVICE, "first": 5, "last": 2}))
    assert (other.reason, bad.reason) == ("wrong_store", "invalid")
    assert "BJ001-T9" in other.detail and "ends before it starts" in bad.detail
    assert len(events_of(ledger, EventType.CONFIG_REJECTED)) == 2
    assert ledger.confirmed() == (0, 0) and ledger.unconfirmed() == 3
    ledger.close()


def test_the_hq_topic_takes_only_signed_delivery_kinds(tmp_path: Path) -> None:
    """GIVEN a box trusting HQ's key WHEN a confirmation signed by that key arrives on the
    device's hq topic THEN it applies; WHEN one signed by another key arrives (a forged
    confirmation would make the box drop events HQ lacks) THEN it is refused as
    untrusted_key; WHEN orders arrive on the hq topic, or a confirmation on the store's
    data topic THEN each is refused as wrong_kind."""
    hq, forger = SigningKey.generate("HQ1"), SigningKey.generate("HQ1")
    ledger = new_ledger(tmp_path / "l.sqlite", hq)
    append_events(ledger, 4)
    ledger.mark_sent([(1, 4)])
    topics = Topics("se")
    inbound = Inbound(ledger, IDENTITY, topics)
    assert topics.hq(STORE, DEVICE) in inbound.topics
    forged = inbound.handle(topics.hq(STORE, DEVICE),
                            sealed(forger, DataKind.CONFIRMED, 1, _confirmed(4)))
    assert forged is not None and forged.reason == "bad_signature"
    assert ledger.confirmed()[0] == 0
    ok = inbound.handle(topics.hq(STORE, DEVICE), sealed(hq, DataKind.CONFIRMED, 2,
                                                          _confirmed(4)))
    assert ok is not None and ok.applied and ledger.confirmed()[0] == 4
    wrong = inbound.handle(topics.hq(STORE, DEVICE),
                           sealed(hq, DataKind.ORDERS, 3, {"orders": []}))
    misplaced = inbound.handle(topics.data(STORE),
                               sealed(hq, DataKind.RESEND, 4, _resend(1, 4)))
    assert wrong is not None and misplaced is not None
    assert (wrong.reason, misplaced.reason) == ("wrong_kind", "wrong_kind")
    assert ledger.backlog() == 3  # the three refusals' events; 1-4 stay sent
    ledger.close()


def test_delivery_bodies_and_last_seq_are_strict_and_optional() -> None:
    """GIVEN the contract WHEN bodies have unknown or mistyped fields THEN ContractError
    names them; Presence and Reported round-trip last_seq (and unconfirmed), read an older
    message without them as 0, and refuse a negative or non-integer last_seq."""
    assert Confirmed.from_dict({"device": "D", "seq": 4}) == Confirmed("D", 4)
    with pytest.raises(ContractError, match="unknown field"):
        Confirmed.from_dict({"device": "D", "seq": 4, "extra": 1})
    with pytest.raises(ContractError, match=r"resend\.first"):
        ResendRequest.from_dict({"device": "D", "first": "1", "last": 2})
    p = Presence(PresenceState.ONLINE, "1", 3, 2, True, 5.0, False, 41, 7)
    assert Presence.decode(p.encode()) == p
    assert Presence.decode(b'{"state": "online"}').last_seq == 0
    r = Reported(3, last_seq=41)
    assert Reported.decode(r.encode()).last_seq == 41
    assert Reported.decode(b'{"applied_version": 1}').last_seq == 0
    for bad in (b'{"state": "online", "last_seq": -1}', b'{"state": "online", "last_seq": 1.5}'):
        with pytest.raises(ContractError, match="last_seq"):
            Presence.decode(bad)


def test_events_hq_never_confirms_are_kept_and_raise_the_alarm_at_the_row_limit(
        tmp_path: Path) -> None:
    """GIVEN a policy of 1000 rows WHEN 1200 events are sent and HQ confirms none (an HQ
    that does not confirm) THEN nothing is pruned and the alarm goes on, naming events not
    confirmed by HQ; WHEN HQ confirms them THEN the alarm goes off and rows are pruned."""
    ledger = Ledger(tmp_path / "l.sqlite")
    append_events(ledger, 1200)
    ledger.mark_sent([(1, 1200)])
    outbox = Outbox(ledger, IDENTITY)
    policy = SyncPolicy(outbox_max_rows=1000)
    health = outbox.check(policy)
    assert health.pruned == 0 and health.alarm and "not confirmed by HQ" in health.why
    apply_delivery(ledger, IDENTITY, hq_data(DataKind.CONFIRMED, 1, _confirmed(1201)))
    health = outbox.check(policy)
    assert not health.alarm and health.pruned >= 200
    ledger.close()


def test_queued_confirmations_coalesce_to_the_last_and_requests_all_stay() -> None:
    """GIVEN delivery messages queued while the box applied others: confirmations, resend
    requests and an unreadable one WHEN coalesced THEN only the last confirmation is kept,
    with every request and the unreadable one, in their order."""
    from sync.service import coalesce_confirmations

    key = SigningKey.generate("HQ1")
    c1, c2, c3 = (sealed(key, DataKind.CONFIRMED, v, _confirmed(v)) for v in (1, 2, 4))
    r = sealed(key, DataKind.RESEND, 3, _resend(1, 2))
    junk = b"not an envelope"
    assert coalesce_confirmations([c1, r, c2, junk, c3]) == [r, junk, c3]
    assert coalesce_confirmations([c1, r]) == [c1, r]
    assert coalesce_confirmations([]) == []
