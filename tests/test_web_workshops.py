"""Workshop sign-up on HQ's customer pages: seats, waitlist, the signed ticket, cancellation,
what reaches the box, and the attendance report."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2
import pytest

from cli.hq import main
from edge import tokens
from edge.box import Box, init_home
from edge.hqdata import decode_workshops
from edge.keys import Purpose
from edge.verdict import Reason
from hq.db import Database
from hq.ingest.eventstore import EventStore
from hq.issuing import keystore
from hq.issuing.registry import DeviceRegistry
from hq.publishing.fanout import seal_pending
from hq.reports import workshops as report
from hq.web.app import WebSettings, build_app
from hq.web.operators import Role, add_operator
from hq.web.workshops import Session, SignupStatus, Workshops, add_session, get_session
from sync.contract import EventBatch, Reported, Topics
from sync.inbound import Inbound
from tests.dash_support import csv_rows, html_tables, without_tokens
from tests.dash_support import login as dash_login
from tests.factory import DEVICE, STORE
from tests.factory import Hq as Issuer
from tests.hq_support import Hq, Inbox, hq_fixture, register, wait_until  # noqa: F401
from tests.web_support import WebHq, form_fields, make_web_hq, qr_from_page, serving

TOPICS = Topics("se")
RACERS = 50


def make_session(web: WebHq, session_id: str = "W-BAKE", capacity: int = 4,
                 party_max: int = 4, starts_in: float = 600) -> Session:
    """A session starting soon at the box's store (check-in already open: 30 min early)."""
    now = int(time.time())
    session = Session(session_id, STORE, "亲子烘焙课", now + int(starts_in),
                      now + int(starts_in) + 7200, capacity, party_max, "请穿围裙")
    add_session(web.db, session, TOPICS)
    return session


def sign_up(phone: httpx2.Client | object, session_id: str, holder: str,
            party: int) -> tuple[int, str]:
    """A phone opens the sign-up link and posts the form; (status, where it was sent)."""
    page = phone.get(f"/w/{session_id}")  # type: ignore[attr-defined]
    assert page.status_code == 200
    fields = form_fields(page.text)
    r = phone.post(f"/w/{session_id}", data={**fields, "holder": holder,  # type: ignore[attr-defined]
                                              "party": str(party)})
    return r.status_code, r.headers.get("location", "")


def deliver(web: WebHq, box: Box) -> int:
    """What HQ queued for the store's box, signed as the fan-out sender does and applied
    through the box's real inbound path (the config key signs data on a box before roles)."""
    key = keystore.signing_key(web.home, Purpose.CONFIG)
    inbound = Inbound(box.ledger, box.counter.identity, TOPICS)
    sent = 0
    for out in seal_pending(web.db, key, time.time()):
        result = inbound.handle(out.topic, out.payload)
        assert result is not None and result.applied, result
        sent += 1
    web.db.query("UPDATE hq_outbox SET sent_at=? WHERE sent_at IS NULL", (time.time(),))
    return sent


def close(web: WebHq) -> None:
    web.box.close()
    web.db.close()


def test_sign_up_ticket_check_in_cancel_and_waitlist(tmp_path: Path, hq_db_url: str) -> None:
    """GIVEN a session of 4 seats (party limit 4) at the box's store
    WHEN Wang signs up 3 people, Li 2 (no room: waitlist), Zhao 1 (fits)
    THEN Wang's page shows a ticket QR the box accepts for 3 people offline, Li's page says
    waitlist place 1; WHEN Wang cancels THEN Li is moved up and gets a ticket, the box is
    told (through the signed workshops data) and refuses Wang's ticket as cancelled, and
    takes Li's; the seats never exceed 4."""
    web = make_web_hq(tmp_path, db_url=hq_db_url)
    session = make_session(web)
    wang, li, zhao = web.client(), web.client(), web.client()
    status, where = sign_up(wang, session.session_id, "王小明", 3)
    assert status == 303 and where.startswith("/t/T")
    page = wang.get(where)
    wang_code = qr_from_page(page.text, "ticket-qr")
    parsed = tokens.parse(wang_code)
    assert isinstance(parsed, tokens.Signed) and isinstance(parsed.token, tokens.Ticket)
    assert (parsed.token.party, parsed.token.holder, parsed.token.store_id) == (3, "王小明",
                                                                                 STORE)
    _, li_where = sign_up(li, session.session_id, "李雷", 2)
    assert "候补第 1 位" in li.get(li_where).text
    assert f'href="{li_where}"' in li.get("/me").text  # "my coupons" lists the sign-up
    assert sign_up(zhao, session.session_id, "赵", 1)[0] == 303
    again = wang.get(f"/w/{session.session_id}")
    assert "剩余 0 人" in again.text and "名额已满" in again.text
    # The box learns the session, and checks Wang's party in offline.
    assert deliver(web, web.box) == 3  # the session, Wang's seats, Zhao's
    v = web.box.counter.redeem(wang_code, till="T1")
    assert v.accepted and v.facts["party"] == 3 and v.facts["title"] == "亲子烘焙课"
    # Wang cancels (a check-in does not stop a customer cancelling; the seat frees).
    r = wang.post(f"{where}/cancel", data={"csrf": form_fields(page.text)["csrf"]})
    assert r.status_code == 303 and "已取消" in wang.get(where).text
    mine = wang.get("/me").text
    assert "我的活动" in mine and "亲子烘焙课" in mine and "已取消" in mine
    li_page = li.get(li_where)
    li_code = qr_from_page(li_page.text, "ticket-qr")
    assert "到店时向店员出示此码签到（2人）" in li_page.text
    got = get_session(web.db, session.session_id)
    assert got is not None and got.taken == 3  # Li's 2 + Zhao's 1
    assert deliver(web, web.box) == 1
    second = web.box.counter.redeem(wang_code, till="T1")
    assert second.reason is Reason.TICKET_CANCELLED
    assert web.box.counter.redeem(li_code, till="T1", party=2).accepted
    close(web)


def test_sign_up_refusals_are_specific(tmp_path: Path, hq_db_url: str) -> None:
    """GIVEN a session with a party limit of 2 WHEN a phone asks for 3, gives no name, signs
    up twice, or opens an unknown session or one already started
    THEN each gets its own answer and no seat is taken by the refused ones."""
    web = make_web_hq(tmp_path, db_url=hq_db_url)
    session = make_session(web, party_max=2)
    phone = web.client()
    status, _ = sign_up(phone, session.session_id, "王", 3)
    assert status == 400
    page = phone.get(f"/w/{session.session_id}")
    r = phone.post(f"/w/{session.session_id}", data={**form_fields(page.text), "holder": " ",
                                                      "party": "1"})
    assert r.status_code == 400 and "请填写称呼" in r.text
    first = sign_up(phone, session.session_id, "王", 2)[1]
    assert sign_up(phone, session.session_id, "王", 1)[1] == first  # the one they have
    assert phone.get("/w/NOPE").status_code == 404
    started = make_session(web, "W-PAST", starts_in=-60)
    assert "本场活动已停止报名" in phone.get(f"/w/{started.session_id}").text
    late = phone.post(f"/w/{started.session_id}", data={**form_fields(page.text),
                                                         "holder": "王", "party": "1"})
    assert late.status_code == 400 and "本场活动已停止报名" in late.text
    got = get_session(web.db, session.session_id)
    assert got is not None and got.taken == 2
    close(web)


def test_fifty_sign_ups_for_ten_seats(tmp_path: Path, hq_db_url: str) -> None:
    """GIVEN a session of 10 seats and two web workers (each its own database connection)
    on uvicorn WHEN 50 phones, each with its own cookie, post a sign-up for 1 at once
    THEN exactly 10 hold a ticket (10 distinct signed codes) and 40 are on the waitlist in
    places 1..40, and the session counts 10 seats taken."""
    web = make_web_hq(tmp_path, db_url=hq_db_url)
    session = make_session(web, capacity=10)
    second_db = Database(web.db_url)
    second = build_app(WebSettings(web.home, "", claim_limit=1000, check_limit=1000), second_db)
    with serving(web.app) as base_a, serving(second) as base_b:
        phones = [httpx2.Client(base_url=base_a if i % 2 else base_b, timeout=60)
                  for i in range(RACERS)]
        forms = [form_fields(p.get(f"/w/{session.session_id}").text) for p in phones]
        start = threading.Barrier(RACERS)

        def race(i: int) -> int:
            start.wait()
            return phones[i].post(f"/w/{session.session_id}", data={
                **forms[i], "holder": f"顾客{i}", "party": "1"}).status_code

        with ThreadPoolExecutor(RACERS) as pool:
            codes = list(pool.map(race, range(RACERS)))
        for p in phones:
            p.close()
    assert codes == [303] * RACERS
    rows = web.db.query("SELECT status, code FROM web_ticket")
    tickets = [c for s, c in rows if s == SignupStatus.TICKET.value]
    assert len(tickets) == 10 and len(set(tickets)) == 10 and all(tickets)
    assert sum(1 for s, _ in rows if s == SignupStatus.WAITLIST.value) == 40
    got = get_session(web.db, session.session_id)
    assert got is not None and got.taken == 10
    places = sorted(s.position for s in (web.app.state.web.workshops.signup(str(t))
                                         for (t,) in web.db.query(
                                             "SELECT ticket_id FROM web_ticket WHERE"
                                             " status='waitlist'")) if s is not None)
    assert places == list(range(1, 41))
    second_db.close()
    close(web)


def attended(web: WebHq) -> None:
    """Two sessions at STORE: one ended (4 sign-ups of 2, one cancelled, one checked in at
    the till, its events ingested by HQ), one tomorrow with 1 sign-up."""
    ended = make_session(web, "W-ENDED", capacity=10)
    later = make_session(web, "W-LATER", capacity=10, starts_in=86400)
    shop = web.app.state.web.workshops
    signed = [shop.sign_up(ended.session_id, f"cust-{i:016d}", f"顾客{i}", 2, f"idem-{i:016d}")
              for i in range(4)]
    shop.sign_up(later.session_id, "cust-9999999999999999", "后来", 1, "idem-9999999999999999")
    assert shop.cancel(signed[3].ticket_id, signed[3].customer) is not None
    assert signed[0].code is not None
    assert web.box.counter.redeem(signed[0].code, till="T1").accepted
    events = [e.to_wire(STORE, DEVICE) for e in web.box.ledger.pending_events(1000)]
    EventStore(web.db, TOPICS, DeviceRegistry(web.home)).ingest_batch(
        STORE, DEVICE, EventBatch(STORE, DEVICE, events))
    # The first session is over now (its end is in HQ's database).
    web.db.query("UPDATE web_workshop SET starts=starts-86400, ends=? WHERE session_id=?",
                 (int(time.time()) - 60, ended.session_id))


def test_attendance_report(tmp_path: Path, hq_db_url: str,
                           capsys: pytest.CaptureFixture[str]) -> None:
    """GIVEN two sessions: one that ended with 3 tickets, 1 checked in at the till and one
    cancelled, and one still to come with 1 ticket
    WHEN the box's events reach HQ and edge-hq report workshops --json runs
    THEN per session: tickets, waitlist, cancelled, checked in (tickets and people) and
    no-shows (only for the ended session), and the store's totals."""
    web = make_web_hq(tmp_path, db_url=hq_db_url)
    attended(web)
    capsys.readouterr()
    assert main(["--home", str(web.home), "report", "workshops", "--db", web.db_url,
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    by_id = {s["session_id"]: s for s in out["sessions"]}
    e, la = by_id["W-ENDED"], by_id["W-LATER"]
    assert (e["tickets"], e["seats"], e["waitlist"], e["cancelled"]) == (3, 6, 0, 1)
    assert (e["checked_in"], e["people_in"], e["no_shows"]) == (1, 2, 2)
    assert (la["tickets"], la["checked_in"], la["no_shows"]) == (1, 0, 0)
    assert out["stores"] == [{"store": STORE, "sessions": 2, "tickets": 4, "checked_in": 1,
                              "no_shows": 2}]
    text = report.to_text(report.build(web.db))
    assert f"{STORE}: 2 sessions, 4 tickets, 1 checked in, 2 no-shows" in text
    close(web)


def test_cli_adds_and_lists_sessions_with_their_link(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """GIVEN an HQ home WHEN edge-hq workshop add runs THEN it prints the store group's
    sign-up link (/w/ID) and the session is listed with 0 of its seats taken; a session
    that ends before it starts is refused with exit code 2."""
    home, db = tmp_path / "hq", f"sqlite:///{tmp_path / 'hq.sqlite'}"
    assert main(["--home", str(home), "workshop", "add", "--id", "W-COFFEE", "--store",
                 STORE, "--title", "咖啡品鉴会", "--start", "+1d", "--end", "+26h",
                 "--capacity", "12", "--party-max", "2", "--db", db, "--base-url",
                 "https://q.edge.cn/"]) == 0
    assert "https://q.edge.cn/w/W-COFFEE" in capsys.readouterr().out
    assert main(["--home", str(home), "workshop", "list", "--db", db]) == 0
    listed = capsys.readouterr().out
    assert "W-COFFEE" in listed and "0/12" in listed and "咖啡品鉴会" in listed
    assert main(["--home", str(home), "workshop", "add", "--store", STORE, "--title", "x",
                 "--start", "+2d", "--end", "+1d", "--capacity", "5", "--db", db]) == 2
    assert "ends after it starts" in capsys.readouterr().err


@pytest.mark.network
def test_cancellation_reaches_the_box_over_the_broker(tmp_path: Path, hq: Hq) -> None:
    """GIVEN HQ's ingest worker running as the fan-out sender on a real broker, and the
    store's box subscribed to its data topic (trusting HQ's data key)
    WHEN a customer signs up and then cancels on HQ's page
    THEN the sender publishes the session's signed workshops data, the box applies it
    through its real inbound path, and refuses the cancelled ticket at the till."""
    web = make_web_hq(tmp_path / "web", db_url=hq.db_url)
    register(hq, tmp_path / "web" / "box")
    inbox = Inbox(hq.broker, TOPICS.data(STORE))
    hq.worker(fanout=True)
    make_session(web)
    phone = web.client()
    _status, where = sign_up(phone, "W-BAKE", "王小明", 2)
    page = phone.get(where)
    code = qr_from_page(page.text, "ticket-qr")
    phone.post(f"{where}/cancel", data={"csrf": form_fields(page.text)["csrf"]})
    inbound = Inbound(web.box.ledger, web.box.counter.identity, TOPICS)
    wait_until(lambda: len(inbox.messages) >= 3, what="session, sign-up and cancellation data")
    outcomes = [inbound.handle(m.topic, m.payload) for m in list(inbox.messages)]
    assert all(o is not None and o.applied for o in outcomes), outcomes
    v = web.box.counter.redeem(code, till="T1")
    assert v.reason is Reason.TICKET_CANCELLED
    inbox.close()
    close(web)


def test_a_check_in_at_one_till_is_refused_at_the_other(tmp_path: Path, hq_db_url: str) -> None:
    """GIVEN a store with two registered tills, T1 and T2, and a customer's ticket
    WHEN T1 checks it in and its events reach HQ
    THEN HQ tells T2 (a remote use naming T1, as for coupons) and T2 refuses the ticket as
    already checked in, saying where."""
    web = make_web_hq(tmp_path, db_url=hq_db_url)
    key = keystore.signing_key(web.home, Purpose.COUPON)
    init_home(tmp_path / "box2", STORE, "BJ001-T2", [Issuer(key).trusted], store_name="望京店")
    box2 = Box.open(tmp_path / "box2")
    keystore.register_device(web.home, "BJ001-T2", STORE, box2.device_key.public_key)
    make_session(web)
    signup = web.app.state.web.workshops.sign_up("W-BAKE", "cust-0000000000000001", "王",
                                                 2, "idem-0000000000000001")
    assert signup.code is not None and web.box.counter.redeem(signup.code).accepted
    events = [e.to_wire(STORE, DEVICE) for e in web.box.ledger.pending_events(1000)]
    EventStore(web.db, TOPICS, DeviceRegistry(web.home)).ingest_batch(
        STORE, DEVICE, EventBatch(STORE, DEVICE, events))
    assert deliver(web, box2) >= 2  # the session's data and T1's check-in
    v = box2.counter.redeem(signup.code, till="T2")
    assert v.reason is Reason.ALREADY_CHECKED_IN and v.facts["used_till"] == f"{STORE}/{DEVICE}"
    box2.close()
    close(web)


def test_a_replaced_box_catches_up_on_sessions_and_cancellations(tmp_path: Path,
                                                                  hq_db_url: str) -> None:
    """GIVEN a session whose data went out before the store's new box existed, with one
    ticket cancelled, and a session long over
    WHEN the new box reports that the broker held no session for it (resync)
    THEN HQ's catch-up carries the open session with its cancelled ticket (not the old
    one), and the new box refuses the cancelled ticket and takes the other."""
    web = make_web_hq(tmp_path, db_url=hq_db_url)
    make_session(web)
    make_session(web, "W-OLD", starts_in=-3 * 86400)
    shop = web.app.state.web.workshops
    kept, gone = (shop.sign_up("W-BAKE", f"cust-{i:016d}", "王", 1, f"idem-{i:016d}")
                  for i in range(2))
    assert shop.cancel(gone.ticket_id, gone.customer) is not None
    web.db.query("UPDATE hq_outbox SET sent_at=?", (time.time(),))  # before the new box
    key = keystore.signing_key(web.home, Purpose.COUPON)
    init_home(tmp_path / "box2", STORE, "BJ001-T2", [Issuer(key).trusted], store_name="望京店")
    box2 = Box.open(tmp_path / "box2")
    keystore.register_device(web.home, "BJ001-T2", STORE, box2.device_key.public_key)
    store = EventStore(web.db, TOPICS, DeviceRegistry(web.home))
    assert store.record_reported(STORE, "BJ001-T2", Reported(0, None, "", time.time(), {},
                                                             True)) >= 1
    (body,), = web.db.query("SELECT body FROM hq_outbox WHERE kind='workshops' AND sent_at"
                            " IS NULL")
    (line,) = decode_workshops(json.loads(body))
    assert line.session_id == "W-BAKE" and line.revoked == (gone.ticket_id,)
    deliver(web, box2)
    assert gone.code is not None and kept.code is not None
    assert box2.counter.redeem(gone.code, till="T2").reason is Reason.TICKET_CANCELLED
    assert box2.counter.redeem(kept.code, till="T2").accepted
    box2.close()
    close(web)


def test_hq_calls_a_session_off(tmp_path: Path, hq_db_url: str,
                                capsys: pytest.CaptureFixture[str]) -> None:
    """GIVEN a session with a ticket, its data at the box
    WHEN HQ runs edge-hq workshop cancel
    THEN the sign-up page takes no more sign-ups, the ticket page says the session is off
    (no QR, no cancel button), and once the data reaches the box it refuses the ticket."""
    web = make_web_hq(tmp_path, db_url=hq_db_url)
    make_session(web)
    phone = web.client()
    _status, where = sign_up(phone, "W-BAKE", "王小明", 1)
    code = qr_from_page(phone.get(where).text, "ticket-qr")
    deliver(web, web.box)
    assert main(["--home", str(web.home), "workshop", "cancel", "--id", "W-BAKE", "--db",
                 web.db_url]) == 0
    assert "cancelled" in capsys.readouterr().out
    assert "本场活动已停止报名" in phone.get("/w/W-BAKE").text
    page = phone.get(where).text
    assert "本场活动已取消" in page and "ticket-qr" not in page and "/cancel" not in page
    assert deliver(web, web.box) == 1
    assert web.box.counter.redeem(code, till="T1").reason is Reason.TICKET_CANCELLED
    assert main(["--home", str(web.home), "workshop", "cancel", "--id", "NOPE", "--db",
                 web.db_url]) == 2
    close(web)


def test_cancellations_racing_sign_ups_never_leak_or_oversell(tmp_path: Path,
                                                              hq_db_url: str) -> None:
    """GIVEN a session of 10 seats, full (10 tickets of 1) with 10 on the waitlist, and four
    HQ web workers (each its own database connection)
    WHEN at once every ticket holder and every other waitlisted customer cancels while 10
    new customers sign up
    THEN the seats taken are exactly the seats the tickets hold, never over 10; every seat
    freed went to someone (10 tickets held); each cancelled ticket that was ever signed is
    named as revoked in the state queued for the box."""
    web = make_web_hq(tmp_path, db_url=hq_db_url)
    make_session(web, capacity=10)
    key = keystore.signing_key(web.home, Purpose.COUPON)
    dbs = [Database(web.db_url) for _ in range(4)]
    shops = [Workshops(db, key, TOPICS) for db in dbs]
    first = [shops[0].sign_up("W-BAKE", f"cust-{i:016d}", f"顾客{i}", 1, f"idem-{i:016d}")
             for i in range(20)]
    assert [s.status for s in first] == [SignupStatus.TICKET] * 10 + [SignupStatus.WAITLIST] * 10
    leaving = first[:10] + first[10::2]
    start = threading.Barrier(len(leaving) + 10)

    def act(i: int) -> None:
        shop = shops[i % len(shops)]
        start.wait()
        if i < len(leaving):
            assert shop.cancel(leaving[i].ticket_id, leaving[i].customer) is not None
        else:
            n = 100 + i
            shop.sign_up("W-BAKE", f"cust-{n:016d}", f"新{n}", 1, f"idem-{n:016d}")

    with ThreadPoolExecutor(len(leaving) + 10) as pool:
        list(pool.map(act, range(len(leaving) + 10)))
    (taken,), = web.db.query("SELECT taken FROM web_workshop WHERE session_id='W-BAKE'")
    (held, seats), = web.db.query("SELECT COUNT(*), COALESCE(SUM(party), 0) FROM web_ticket"
                                  " WHERE session_id='W-BAKE' AND status='ticket'")
    assert taken == seats == held == 10
    signed_cancelled = {str(t) for (t,) in web.db.query(
        "SELECT ticket_id FROM web_ticket WHERE status='cancelled' AND code IS NOT NULL")}
    (last,), = web.db.query("SELECT body FROM hq_outbox WHERE kind='workshops' ORDER BY id DESC"
                            " LIMIT 1")
    (state,) = decode_workshops(json.loads(last))
    assert set(state.revoked) == signed_cancelled and state.signed_up == 10
    for db in dbs:
        db.close()
    close(web)


def test_attendance_on_the_dashboard(tmp_path: Path, hq_db_url: str) -> None:
    """GIVEN the sessions of the attendance report, an HQ admin and another store's manager
    WHEN the admin opens /hq/workshops for a range holding both sessions, and its CSVs
    THEN per session and per store: sign-ups, check-ins and no-shows as the report counts
    them, every CSV equal to its table; the other store's manager sees none of them."""
    web = make_web_hq(tmp_path, db_url=hq_db_url)
    attended(web)
    add_operator(web.db, "boss", Role.ADMIN, None, "correct horse battery")
    add_operator(web.db, "mgr9", Role.MANAGER, "S9", "S9 manager's secret")
    today = dt.date.today()
    span = {"from": (today - dt.timedelta(days=2)).isoformat(),
            "to": (today + dt.timedelta(days=2)).isoformat()}
    client = dash_login(web, "boss", "correct horse battery")
    page = client.get("/hq/workshops", params=span)
    assert page.status_code == 200
    tables = html_tables(page.text)
    rows = {r[1]: r for r in tables["t-workshops"][1:]}
    # store, session, title, starts, capacity, tickets, seats, waitlist, cancelled,
    # checked in, people in, no-shows
    assert rows["W-ENDED"][5:] == ["3", "6", "0", "1", "1", "2", "2"]
    assert rows["W-LATER"][5:] == ["1", "1", "0", "0", "0", "0", "0"]
    assert tables["t-workshop_stores"][1:] == [[STORE, "2", "4", "1", "2"]]
    for table in ("workshops", "workshop_stores"):
        got = client.get("/hq/workshops", params={**span, "csv": table})
        assert got.status_code == 200
        assert csv_rows(got.text) == tables[f"t-{table}"]
    other = dash_login(web, "mgr9", "S9 manager's secret").get("/hq/workshops", params=span)
    assert other.status_code == 200
    assert "W-ENDED" not in other.text and STORE not in without_tokens(other.text)
    assert html_tables(other.text)["t-workshops"][1:] == []
    close(web)
