"""Workshop tickets at the box: the token, the ``workshops`` data, and the offline check-in."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest

from cli.edge import main as edge_main
from edge import i18n, tokens, workshops
from edge.box import Box
from edge.hqdata import (
    ContractError,
    DataKind,
    HqData,
    SessionStatus,
    WorkshopSession,
    decode_workshops,
    encode_workshops,
    seal,
)
from edge.qrfit import CODE_MAX_VERSION
from edge.storeconfig import Outcome
from edge.verdict import Reason
from hq.issuing.codes import sign_token
from sync.contract import Topics
from sync.inbound import Inbound
from tests.factory import NOW, STORE, Clock, Hq, make_box
from tests.test_tokens import decode_qr

START = int(NOW + 3600)  # the session: an hour from "now", for two hours
END = START + 7200


def ticket(hq: Hq, **overrides: object) -> tokens.Ticket:
    base = tokens.Ticket(hq.key.key_id, "T8K2M9QZ4XA", "W1124-BAKE", STORE, 3, START, END,
                         "王小明")
    return replace(base, **overrides)


def code(hq: Hq, **overrides: object) -> str:
    return sign_token(hq.key, ticket(hq, **overrides))


def session(**overrides: object) -> WorkshopSession:
    base = WorkshopSession("W1124-BAKE", "亲子烘焙课", START, END, 10, 4, 3, 1, 1800, 900)
    return replace(base, **overrides)


def push(box: Box, hq: Hq, version: int, *sessions: WorkshopSession) -> Outcome:
    """HQ's signed ``workshops`` data, through the box's real inbound path."""
    topics = Topics("se")
    inbound = Inbound(box.ledger, box.counter.identity, topics, box.counter.wall_clock)
    env = seal(hq.key, HqData(DataKind.WORKSHOPS, STORE, version, NOW - 30,
                              encode_workshops(list(sessions))))
    result = inbound.handle(topics.data(STORE), env.encode())
    assert result is not None
    return result.outcome


def test_ticket_fits_version_10_and_reads_back(hq: Hq) -> None:
    """GIVEN a ticket with generous real-world fields (a long session id, a Chinese name of
    the 20 characters the web form takes, a party of 12)
    WHEN HQ signs it and it is drawn as a QR and read with the camera's decoder
    THEN it is within QR version 10 at ECC M and parses to the same ticket, kind ticket."""
    big = ticket(hq, ticket_id="T" + "9" * 10, session_id="W1125-COFFEE-TASTING-01",
                 store_id="BJ001-WANGJING", party=12, holder="欧阳" * 10)
    version, read = decode_qr(sign_token(hq.key, big))
    assert version <= CODE_MAX_VERSION
    parsed = tokens.parse(read)
    assert isinstance(parsed, tokens.Signed) and parsed.token == big
    assert parsed.kind is tokens.Kind.TICKET and big.code_id == "W:T9999999999"


def test_a_coupon_signature_does_not_pass_as_a_ticket(hq: Hq) -> None:
    """GIVEN a signed coupon WHEN its payload is relabelled with the ticket prefix
    THEN it does not parse as a valid ticket, or does not verify (the prefix is signed)."""
    text = hq.coupon()
    parsed = tokens.parse("SEW1" + text[4:])
    assert isinstance(parsed, tokens.FormatError)


def test_check_in_accepted_with_party_and_words(box: Box, hq: Hq, clock: Clock) -> None:
    """GIVEN HQ described the session and a ticket for 3, half an hour before the start
    WHEN the cashier checks 2 people in
    THEN it is accepted, the cashier reads who, which session and how many, and today's
    sessions show 2 people (1 ticket) checked in next to HQ's 3 signed up."""
    assert push(box, hq, 1, session()) is Outcome.APPLIED
    clock.now = START - 1700
    v = box.counter.redeem(code(hq), till="T1", party=2)
    assert v.accepted and v.kind == "ticket" and v.code_id == "W:T8K2M9QZ4XA"
    assert v.facts["party"] == 2 and v.facts["ticket_party"] == 3
    head, what, _ = i18n.verdict_lines(v)
    assert head == "通过"
    assert "亲子烘焙课" in what and "王小明" in what and "2人" in what and "票面3人" in what
    (day,) = workshops.sessions(box.ledger, START - 86400, START + 86400)
    assert (day["signed_up"], day["checked_in"], day["checked_in_tickets"]) == (3, 2, 1)


@pytest.mark.parametrize(("case", "reason", "words"), [
    ("twice", Reason.ALREADY_CHECKED_IN, "此票已于"),
    ("early", Reason.OUTSIDE_SESSION_WINDOW, "不在签到时间内"),
    ("late", Reason.OUTSIDE_SESSION_WINDOW, "不在签到时间内"),
    ("other_store", Reason.WRONG_STORE, "本店不可用"),
    ("cancelled", Reason.TICKET_CANCELLED, "此票已取消"),
    ("session_cancelled", Reason.TICKET_CANCELLED, "此票已取消"),
    ("party", Reason.PARTY_TOO_LARGE, "人数超出：此票限 3 人，本次 5 人"),
])
def test_each_refusal_has_its_reason_and_words(box: Box, hq: Hq, clock: Clock, case: str,
                                               reason: Reason, words: str) -> None:
    """GIVEN HQ described the session (check-in 30 min before to 15 min after)
    WHEN a ticket is checked in twice, 31 min before the start, 16 min after the end, for
    another store, after the customer cancelled it, after HQ cancelled the session, or with
    more people than it is for
    THEN each is refused, recorded, with its own reason and the cashier's Chinese words;
    and the refusal is in the ledger as a decision."""
    assert push(box, hq, 1, session()) is Outcome.APPLIED
    clock.now = START
    text, party = code(hq), None
    if case == "twice":
        assert box.counter.redeem(text, till="T1").accepted
    elif case == "early":
        clock.now = START - 1800 - 60
    elif case == "late":
        clock.now = END + 900 + 60
    elif case == "other_store":
        text = code(hq, store_id="SH002")
    elif case == "cancelled":
        assert push(box, hq, 2, session(revoked=("T8K2M9QZ4XA",))) is Outcome.APPLIED
    elif case == "session_cancelled":
        assert push(box, hq, 2, session(status=SessionStatus.CANCELLED)) is Outcome.APPLIED
    elif case == "party":
        party = 5
    v = box.counter.redeem(text, till="T1", party=party)
    assert not v.accepted and v.reason is reason and v.decision_id is not None
    _, what, advice = i18n.verdict_lines(v)
    assert words in what and advice
    row = box.ledger.conn.execute("SELECT reason, kind FROM decision WHERE id=?",
                                  (v.decision_id,)).fetchone()
    assert row == (reason.value, "ticket")


def test_margins_come_from_hq_and_default_before_it_spoke(box: Box, hq: Hq,
                                                          clock: Clock) -> None:
    """GIVEN a ticket for a session the box never heard of
    WHEN it is shown 20 min before the start THEN the box's default margin (30 min) lets it
    in; GIVEN HQ then says check-in opens only 10 min early, for another ticket, shown
    20 min before THEN it is refused as outside the window, naming the window."""
    clock.now = START - 1200
    assert box.counter.redeem(code(hq), till="T1").accepted
    assert push(box, hq, 1, session(early_s=600)) is Outcome.APPLIED
    v = box.counter.redeem(code(hq, ticket_id="T2"), till="T1")
    assert v.reason is Reason.OUTSIDE_SESSION_WINDOW
    assert v.facts["opens"] == START - 600 and v.facts["early"] is True


def test_void_gives_the_check_in_back(box: Box, hq: Hq, clock: Clock) -> None:
    """GIVEN a checked-in ticket WHEN the check-in is voided THEN the session counts nobody
    and the ticket can be checked in again (once)."""
    assert push(box, hq, 1, session()) is Outcome.APPLIED
    clock.now = START
    v = box.counter.redeem(code(hq), till="T1")
    assert v.decision_id is not None
    box.counter.void(v.decision_id, "wrong customer", till="T1")
    (day,) = workshops.sessions(box.ledger, START - 10, START + 10)
    assert day["checked_in"] == 0
    assert box.counter.redeem(code(hq), till="T1").accepted
    assert box.counter.redeem(code(hq), till="T1").reason is Reason.ALREADY_CHECKED_IN


def test_a_party_below_one_is_a_caller_error(box: Box, hq: Hq) -> None:
    """GIVEN a ticket WHEN asked to check in 0 people THEN ValueError, nothing recorded."""
    before = box.ledger.conn.execute("SELECT COUNT(*) FROM decision").fetchone()[0]
    with pytest.raises(ValueError, match="1 or more"):
        box.counter.redeem(code(hq), party=0)
    assert box.ledger.conn.execute("SELECT COUNT(*) FROM decision").fetchone()[0] == before


def test_workshops_data_is_versioned_and_strict(box: Box, hq: Hq) -> None:
    """GIVEN the box applied workshops v2 WHEN v1 comes again THEN it is ignored (a QoS 1
    re-delivery); WHEN a body names an unknown field or ends before it starts THEN the
    parser names the field; and a revocation once received is never forgotten."""
    assert push(box, hq, 2, session(revoked=("TX",))) is Outcome.APPLIED
    assert push(box, hq, 1, session(title="old")) is Outcome.DUPLICATE
    assert push(box, hq, 3, session(revoked=())) is Outcome.APPLIED
    assert workshops.is_revoked(box.ledger.conn, "TX", None)
    with pytest.raises(ContractError, match=r"sessions\[0\]: unknown field"):
        decode_workshops({"sessions": [{**session().to_dict(), "price": 5}]})
    with pytest.raises(ContractError, match="ends before it starts"):
        decode_workshops({"sessions": [{**session().to_dict(), "ends": START - 1}]})
    bad = seal(hq.key, HqData(DataKind.WORKSHOPS, STORE, 9, NOW, {"sessions": [{}]}))
    topics = Topics("se")
    result = Inbound(box.ledger, box.counter.identity, topics).handle(topics.data(STORE),
                                                                       bad.encode())
    assert result is not None and result.outcome is Outcome.REJECTED
    assert result.reason is not None and result.reason.value == "invalid"


def test_edge_scan_checks_in_a_party(tmp_path: Path, hq: Hq,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """GIVEN a box with no daemon running and a ticket for 3 for a session now
    WHEN `edge scan CODE --party 2 --json` runs (it decides on the ledger directly)
    THEN 2 people are checked in; --party 0 is refused with exit code 2, nothing recorded."""
    box = make_box(tmp_path / "box", hq)
    box.close()
    now = int(time.time())
    text = code(hq, starts=now - 60, ends=now + 3600)
    home = str(tmp_path / "box")
    assert edge_main(["--home", home, "scan", text, "--party", "0"]) == 2
    assert "--party must be 1-100" in capsys.readouterr().err
    assert edge_main(["--home", home, "scan", text, "--party", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["accepted"] and out["facts"]["party"] == 2
