from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from edge import tokens
from edge.box import Box
from edge.keys import Purpose, SigningKey, TrustedKey
from edge.orders import learn_pickup_code, upsert_order
from edge.rules import VoidRefused
from edge.verdict import Reason
from hq.issuing.codes import sign_token
from tests.factory import NOW, STORE, Clock, Hq, sample_pickup


def rows(box: Box, sql: str, *args: object) -> list[tuple[object, ...]]:
    return box.ledger.conn.execute(sql, args).fetchall()


# -- each reason, produced through the real path ----------------------------------------


@dataclass
class Case:
    reason: Reason
    code: Callable[[Hq, Box], str]
    setup: Callable[[Hq, Box], None] = lambda hq, box: None
    party: int | None = None  # a workshop check-in's party (default: the ticket's)


def _campaign(state: str) -> Callable[[Hq, Box], None]:
    def setup(hq: Hq, box: Box) -> None:
        with box.ledger.immediate() as conn:
            conn.execute("INSERT INTO campaign(campaign_id, state, name) VALUES (?, ?, '')",
                         ("LIVE1125", state))
    return setup


def _redeem_first(hq: Hq, box: Box) -> None:
    assert box.counter.redeem(hq.coupon(), till="T2").accepted
    assert box.counter.redeem(hq.pickup(), till="T2").accepted


def _remote_use(hq: Hq, box: Box) -> None:
    with box.ledger.immediate() as conn:
        conn.execute("INSERT INTO remote_use(code_id, store_id, uses, last_at) VALUES (?,?,?,?)",
                     ("C:LIVE-0001", "SH002", 1, NOW - 100))


def _cancel_order(hq: Hq, box: Box) -> None:
    with box.ledger.immediate() as conn:
        upsert_order(conn, sample_pickup(), "cancelled")


def _expired_key(hq: Hq, box: Box) -> None:
    with box.ledger.immediate() as conn:
        box.ledger.put_trusted_key(conn, TrustedKey(
            hq.key.key_id, hq.key.public_key, frozenset({Purpose.COUPON}), int(NOW - 1)))


def _coupon_only_key(hq: Hq, box: Box) -> None:
    with box.ledger.immediate() as conn:
        box.ledger.put_trusted_key(conn, TrustedKey(
            hq.key.key_id, hq.key.public_key, frozenset({Purpose.COUPON})))


def _revoke(hq: Hq, box: Box) -> None:
    with box.ledger.immediate() as conn:
        conn.execute("INSERT INTO revoked_code(code_id, reason) VALUES ('C:LIVE-0001', 'leak')")


def _forged(hq: Hq, box: Box) -> str:
    code = hq.coupon()
    parsed = tokens.parse(code)
    assert isinstance(parsed, tokens.Signed)
    other = tokens.Coupon(**{**{f: getattr(parsed.token, f) for f in
                               tokens.Coupon.__dataclass_fields__}, "max_uses": 99})
    return tokens.assemble(other, parsed.signature)  # a real signature over other bytes


def _five_misses_at_t1(hq: Hq, box: Box) -> None:
    for n in range(5):
        box.counter.redeem(f"90000{n}", till="T1", source="keyboard")


def _card(hq: Hq, box: Box) -> str:
    return tokens.code_from_url(box.issue_card().url)


def _ticket(**overrides: object) -> Callable[[Hq, Box], str]:
    def make(hq: Hq, box: Box) -> str:
        return sign_token(hq.key, tokens.Ticket(**{
            "key_id": hq.key.key_id, "ticket_id": "T1", "session_id": "W1", "store_id": STORE,
            "party": 2, "starts": int(NOW), "ends": int(NOW + 3600), "holder": "王",
            **overrides}))
    return make


def _check_in_first(hq: Hq, box: Box) -> None:
    assert box.counter.redeem(_ticket()(hq, box), till="T2").accepted


def _cancel_ticket(hq: Hq, box: Box) -> None:
    with box.ledger.immediate() as conn:
        conn.execute("INSERT INTO workshop_revoked(ticket_id, session_id) VALUES ('T1', 'W1')")


CASES = [
    Case(Reason.BAD_FORMAT, lambda hq, box: "6901234567892"),
    Case(Reason.FORGED, _forged),
    Case(Reason.UNKNOWN_KEY, lambda hq, box: Hq(SigningKey.generate("ROGUE")).coupon()),
    Case(Reason.KEY_EXPIRED, lambda hq, box: hq.coupon(), _expired_key),
    Case(Reason.KEY_EXPIRED, lambda hq, box: hq.pickup(), _coupon_only_key),
    Case(Reason.NOT_YET_VALID, lambda hq, box: hq.coupon(valid_from=int(NOW + 3600))),
    Case(Reason.EXPIRED, lambda hq, box: hq.coupon(valid_until=int(NOW - 1))),
    Case(Reason.WRONG_STORE, lambda hq, box: hq.coupon(stores=("SH002", "SH003"))),
    Case(Reason.WRONG_STORE, lambda hq, box: hq.pickup(store_id="SH002")),
    Case(Reason.CAMPAIGN_PAUSED, lambda hq, box: hq.coupon(), _campaign("paused")),
    Case(Reason.CAMPAIGN_REVOKED, lambda hq, box: hq.coupon(), _campaign("revoked")),
    Case(Reason.COUPON_REVOKED, lambda hq, box: hq.coupon(), _revoke),
    Case(Reason.ALREADY_USED_HERE, lambda hq, box: hq.coupon(), _redeem_first),
    Case(Reason.USED_AT_OTHER_STORE, lambda hq, box: hq.coupon(), _remote_use),
    Case(Reason.ORDER_CANCELLED, lambda hq, box: hq.pickup(), _cancel_order),
    Case(Reason.ALREADY_COLLECTED, lambda hq, box: hq.pickup(), _redeem_first),
    Case(Reason.OUTSIDE_PICKUP_WINDOW, lambda hq, box: hq.pickup(window_start=int(NOW + 600))),
    Case(Reason.OUTSIDE_PICKUP_WINDOW,
         lambda hq, box: hq.pickup(window_end=int(NOW - 3 * 3600))),  # past the 2 h grace
    Case(Reason.UNKNOWN_PICKUP_NUMBER, lambda hq, box: "4242"),
    Case(Reason.TOO_MANY_ATTEMPTS, lambda hq, box: "4242", _five_misses_at_t1),
    Case(Reason.NOT_REDEEMABLE, _card),
    Case(Reason.WRONG_STORE, _ticket(store_id="SH002")),
    Case(Reason.ALREADY_CHECKED_IN, _ticket(), _check_in_first),
    Case(Reason.OUTSIDE_SESSION_WINDOW, _ticket(starts=int(NOW + 7200), ends=int(NOW + 9000))),
    Case(Reason.TICKET_CANCELLED, _ticket(), _cancel_ticket),
    Case(Reason.PARTY_TOO_LARGE, _ticket(), party=3),
]


def test_every_reason_has_a_case() -> None:
    """GIVEN the Reason enum THEN every member is produced by a case below."""
    assert {c.reason for c in CASES} == set(Reason)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.reason.value)
def test_reason(case: Case, hq: Hq, box: Box) -> None:
    """GIVEN a box in a given state WHEN a code is redeemed THEN it is rejected for exactly
    that reason, and the decision and its outbox event are both on disk."""
    case.setup(hq, box)
    code = case.code(hq, box)
    before = box.ledger.backlog()
    verdict = box.counter.redeem(code, till="T1", source="test", party=case.party)
    assert not verdict.accepted
    assert verdict.reason is case.reason
    assert verdict.decision_id is not None
    (reason, accepted, event_id), = rows(
        box, "SELECT reason, accepted, event_id FROM decision WHERE id=?", verdict.decision_id)
    assert (reason, accepted) == (case.reason.value, 0)
    (body,), = rows(box, "SELECT body FROM outbox WHERE event_id=?", event_id)
    assert json.loads(body)["reason"] == case.reason.value
    assert box.ledger.backlog() == before + 1


def test_already_used_here_says_when_and_which_till(hq: Hq, box: Box, clock: Clock) -> None:
    """GIVEN a coupon used at till T2 WHEN shown again later THEN the verdict says when and T2."""
    first = box.counter.redeem(hq.coupon(), till="T2")
    clock.now += 120
    again = box.counter.redeem(hq.coupon(), till="T1")
    assert again.reason is Reason.ALREADY_USED_HERE
    assert again.facts["used_till"] == "T2"
    assert again.facts["used_at"] == first.decided_at


def test_used_elsewhere_names_the_store(hq: Hq, box: Box) -> None:
    """GIVEN HQ told the box the coupon was used at SH002 WHEN shown THEN SH002 is named."""
    _remote_use(hq, box)
    v = box.counter.redeem(hq.coupon())
    assert v.facts["used_store"] == "SH002"


# -- acceptance ---------------------------------------------------------------------------


def test_accept_coupon_records_decision_use_and_event(hq: Hq, box: Box) -> None:
    """GIVEN a valid coupon WHEN redeemed THEN accepted with its benefit, one use recorded,
    and a decision event with the next sequence number is waiting to sync."""
    v = box.counter.redeem(hq.coupon(), till="T1", source="serial")
    assert v.accepted and v.reason is None
    assert v.facts["benefit"] == {"kind": "free_item", "value": 1, "item": "咖啡一杯"}
    assert rows(box, "SELECT uses FROM code_use WHERE code_id='C:LIVE-0001'") == [(1,)]
    (event,) = box.ledger.pending_events()
    assert event.seq == 1 and event.event_id == v.event_id and event.body["accepted"] is True
    wire = event.to_wire(STORE, "BJ001-T1")
    assert wire["store"] == STORE and wire["type"] == "decision"


def test_multi_use_coupon_counts_down(hq: Hq, box: Box) -> None:
    """GIVEN a 3-use coupon WHEN redeemed 4 times THEN 3 accepts then already-used."""
    code = hq.coupon(max_uses=3)
    results = [box.counter.redeem(code) for _ in range(4)]
    assert [r.accepted for r in results] == [True, True, True, False]
    assert [r.facts.get("uses_left") for r in results[:3]] == [2, 1, 0]
    assert results[3].reason is Reason.ALREADY_USED_HERE


def test_remote_uses_count_towards_max_uses(hq: Hq, box: Box) -> None:
    """GIVEN a 2-use coupon used once elsewhere WHEN used here twice THEN once accepted."""
    _remote_use(hq, box)
    code = hq.coupon(max_uses=2)
    assert box.counter.redeem(code).accepted
    assert box.counter.redeem(code).reason is Reason.ALREADY_USED_HERE


def test_pickup_code_collects_order(hq: Hq, box: Box) -> None:
    """GIVEN a pickup code WHEN redeemed THEN accepted, and the order is collected."""
    v = box.counter.redeem(hq.pickup())
    assert v.accepted and v.facts["number"] == "0815"
    assert rows(box, "SELECT status FROM pickup_order WHERE order_id='ORD-88'") == [("collected",)]


def test_late_pickup_inside_grace_is_accepted_and_flagged(hq: Hq, box: Box) -> None:
    """GIVEN a pickup whose window ended an hour ago (grace 2 h) WHEN redeemed THEN accepted,
    marked late."""
    v = box.counter.redeem(hq.pickup(window_end=int(NOW - 3600), window_start=int(NOW - 7200)))
    assert v.accepted and v.facts["late"] is True


def test_typed_pickup_number_for_known_order(hq: Hq, box: Box) -> None:
    """GIVEN an order the store learned WHEN its short number is typed THEN it is collected
    once; typed again it is already collected."""
    learn_pickup_code(box.ledger, STORE, hq.pickup())
    first = box.counter.redeem("0815", till="T1", source="keyboard")
    assert first.accepted and first.facts["items"] == "吐司x2 牛角包x1"
    again = box.counter.redeem(" 0815\r\n")
    assert again.reason is Reason.ALREADY_COLLECTED


def test_check_records_nothing(hq: Hq, box: Box) -> None:
    """GIVEN a valid coupon WHEN only checked THEN accepted but nothing is recorded."""
    v = box.counter.check(hq.coupon())
    assert v.accepted and v.decision_id is None
    assert box.ledger.backlog() == 0
    assert rows(box, "SELECT COUNT(*) FROM decision") == [(0,)]


# -- void ---------------------------------------------------------------------------------


def test_void_restores_the_use_and_emits_event(hq: Hq, box: Box, clock: Clock) -> None:
    """GIVEN an accepted coupon WHEN voided within the window with a reason THEN the coupon
    can be used again, and a void event follows the decision event."""
    v = box.counter.redeem(hq.coupon(), till="T1")
    assert v.decision_id is not None
    clock.now += 60
    result = box.counter.void(v.decision_id, "顾客改用现金", till="T1")
    assert result["code_id"] == "C:LIVE-0001"
    assert [e.type for e in box.ledger.pending_events()] == ["decision", "void"]
    assert box.counter.redeem(hq.coupon()).accepted


def test_void_pickup_returns_order_to_waiting(hq: Hq, box: Box) -> None:
    """GIVEN a collected pickup WHEN voided THEN the order waits again and can be collected."""
    v = box.counter.redeem(hq.pickup())
    assert v.decision_id is not None
    box.counter.void(v.decision_id, "wrong bag")
    assert rows(box, "SELECT status FROM pickup_order") == [("waiting",)]
    assert box.counter.redeem("0815").accepted


@pytest.mark.parametrize("refusal", ["reason_required", "not_found", "not_accepted",
                                     "already_voided", "window_passed"])
def test_void_refusals_are_specific_and_recorded(refusal: str, hq: Hq, box: Box,
                                                 clock: Clock) -> None:
    """GIVEN each way a void can be wrong WHEN attempted THEN VoidRefused names it, the
    refusal is recorded as an event, and nothing else changes."""
    ok = box.counter.redeem(hq.coupon())
    bad = box.counter.redeem("junk")
    assert ok.decision_id is not None and bad.decision_id is not None
    target, reason = ok.decision_id, "mistake"
    if refusal == "reason_required":
        reason = "  "
    elif refusal == "not_found":
        target = 999
    elif refusal == "not_accepted":
        target = bad.decision_id
    elif refusal == "already_voided":
        box.counter.void(ok.decision_id, "first")
    else:
        clock.now += 16 * 60
    with pytest.raises(VoidRefused) as err:
        box.counter.void(target, reason)
    assert err.value.code == refusal
    assert box.ledger.pending_events()[-1].type == "void_refused"
    assert box.ledger.pending_events()[-1].body["refused"] == refusal


# -- clock --------------------------------------------------------------------------------


def test_clock_behind_trusted_time_decides_with_trusted_time(hq: Hq, box: Box,
                                                             clock: Clock) -> None:
    """GIVEN a wall clock that fell back to 1970 WHEN a coupon is redeemed THEN the decision
    uses the trusted time (so the coupon is not 'not yet valid'), and says the clock is unsure
    in the verdict and in the event."""
    clock.now = 0.0
    v = box.counter.redeem(hq.coupon())
    assert v.accepted
    assert not v.clock_trusted
    assert v.decided_at >= NOW - 60
    assert box.ledger.pending_events()[-1].clock_trusted is False


def test_clock_never_used_earlier_than_trusted(hq: Hq, box: Box, clock: Clock) -> None:
    """GIVEN an expired-by-trusted-time coupon WHEN the wall clock is set back into its window
    THEN it is still expired: a wrong clock cannot revive a coupon."""
    with box.ledger.immediate() as conn:
        box.ledger.advance_trusted_time(conn, NOW + 2 * 86400, "hq")
    clock.now = NOW
    v = box.counter.redeem(hq.coupon())
    assert v.reason is Reason.EXPIRED and not v.clock_trusted


def test_trusted_time_only_moves_forward(box: Box) -> None:
    """GIVEN a trusted time WHEN an earlier one is offered THEN it is ignored."""
    with box.ledger.immediate() as conn:
        assert box.ledger.advance_trusted_time(conn, NOW + 10, "hq")
        assert not box.ledger.advance_trusted_time(conn, NOW, "hq")
    assert box.ledger.trusted_time() == NOW + 10


def test_never_synced_box_decides_but_says_unsure(tmp_path: Path, hq: Hq) -> None:
    """GIVEN a box that never learned a trusted time WHEN redeeming THEN it decides on the
    wall clock and flags the clock as unsure."""
    from edge.box import init_home

    init_home(tmp_path / "b", STORE, "BJ001-T9", [hq.trusted])
    b = Box.open(tmp_path / "b")
    b.counter.wall_clock = Clock()
    try:
        v = b.counter.redeem(hq.coupon())
        assert v.accepted and not v.clock_trusted
    finally:
        b.close()


# -- bad input never escapes as an exception ----------------------------------------------


@pytest.mark.parametrize("junk", ["", "\x00\x01", "SEC1", "X" * 10_000_000, b"\xff\xfe\xfd",
                                  "扫码入群", "SEC1" + "Z" * 300])
def test_junk_is_recorded_with_a_bounded_preview(junk: str | bytes, box: Box) -> None:
    """GIVEN junk (10 MB, binary, CJK, truncated) WHEN redeemed THEN BAD_FORMAT is recorded
    with a short preview, never the whole input."""
    v = box.counter.redeem(junk)
    assert v.reason is Reason.BAD_FORMAT
    (facts,), = rows(box, "SELECT facts FROM decision WHERE id=?", v.decision_id)
    assert len(facts) < 400



@pytest.mark.parametrize("synced", [True, False])
def test_ntp_synchronised_kernel_advances_trusted_time(box: Box, synced: bool) -> None:
    """GIVEN the kernel says (or denies) NTP synchronised the clock WHEN the box notes it a
    minute after its trusted time THEN the trusted time moves to that time (or stays where it
    was). (A jump past the bound: tests/test_clock_trust.py.)"""
    before = box.ledger.trusted_time()
    moved = box.note_synchronised_clock(lambda: synced, lambda: before + 60)
    assert moved is synced
    if synced:
        assert box.ledger.trusted_time() == before + 60
    else:
        assert box.ledger.trusted_time() == before
