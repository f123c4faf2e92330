"""The dashboard's aggregates and figures, on SQLite and PostgreSQL.

The loop is seeded through HQ's real ingest and the web service's real claims
(tests/dash_support.py); every expected figure is computed from the seeded facts alone.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import time
from collections.abc import Iterator

import pytest

from cli.hq import main
from edge.keys import SigningKey
from hq.db import Database
from hq.ingest.eventstore import EventStore
from hq.issuing.registry import DeviceRegistry
from hq.reports import aggregates
from hq.reports import dashboard as figures
from hq.reports.dashboard import Days, RangeError
from hq.web.operators import (
    OperatorError,
    Role,
    add_operator,
    check_password,
    close_session,
    open_session,
    session_operator,
)
from sync.contract import EventBatch, Presence, PresenceState, Topics
from tests.dash_support import DAYS, START, STORES, Seeded, at, seed


@pytest.fixture
def db(hq_db_url: str) -> Iterator[Database]:
    d = Database(hq_db_url)
    yield d
    d.close()


@pytest.fixture
def seeded(db: Database) -> Seeded:
    return seed(db, SigningKey.generate("HQC"))


def _days(first: int, last: int) -> Days:
    a, b = START + dt.timedelta(days=first), START + dt.timedelta(days=last)
    return Days.parse(a.isoformat(), b.isoformat())


def _funnel(db: Database, days: Days, store: str | None = None) -> dict[str, int]:
    rows = figures.by_day(db, days, store)
    return {s.name: s.count for s in figures.funnel(figures.total(rows))}


def test_funnel_equals_the_seeded_facts(db: Database, seeded: Seeded) -> None:
    """GIVEN six days of cards, claims, welcome redemptions and returns at three stores
    WHEN the funnel is read for the chain, each store, a sub-range and one day
    THEN every count equals the one computed from the facts, by day and by store."""
    whole, part = _days(0, DAYS), _days(2, 3)
    for days, (a, b) in ((whole, (0, DAYS)), (part, (2, 3))):
        first, last = START + dt.timedelta(days=a), START + dt.timedelta(days=b)
        assert _funnel(db, days) == seeded.funnel(first, last)
        for store in STORES:
            assert _funnel(db, days, store) == seeded.funnel(first, last, store)
        per_store = figures.by_store(db, days)
        assert [t.key for t in per_store] == list(STORES)
        assert figures.total(per_store) == figures.total(figures.by_day(db, days))
    assert seeded.funnel(START, START + dt.timedelta(days=DAYS))["came_back"] > 0


def test_shares_of_previous_and_first_step(db: Database, seeded: Seeded) -> None:
    """GIVEN the seeded loop
    WHEN the chain's funnel is built
    THEN each step's share is its count over the step before and over the first."""
    steps = figures.funnel(figures.total(figures.by_day(db, _days(0, DAYS))))
    assert steps[0].of_previous is None and steps[0].of_first is None
    for before, step in itertools.pairwise(steps):
        assert step.of_previous == pytest.approx(step.count / before.count)
        assert step.of_first == pytest.approx(step.count / steps[0].count)


def test_breakdowns_by_campaign_channel_and_reason(db: Database, seeded: Seeded) -> None:
    """GIVEN the seeded loop (welcome and livestream redemptions, three rejection reasons)
    WHEN campaigns, channels and reasons are read for the whole range
    THEN they add up to the facts, and the budget used is the link campaign's issued."""
    days = _days(0, DAYS)
    uses = {u.campaign_id: u for u in figures.campaigns(db, days)}
    assert uses["GIFT"].redeemed == seeded.count("welcome")
    assert uses["GIFT"].redeemed + uses["LIVE1"].redeemed == seeded.count("redeemed")
    assert uses["LIVE1"].budget == 1000 and uses["LIVE1"].issued == uses["LIVE1"].redeemed
    channels = dict(figures.details(db, days, "channel"))
    assert channels == {"welcome": seeded.count("welcome"),
                        "livestream": seeded.count("redeemed") - seeded.count("welcome")}
    reasons = dict(figures.details(db, days, "reason", "S2"))
    assert reasons == {r: seeded.count(f"rejected:{r}", "S2")
                       for r in ("forged", "already_used_here", "wrong_store")}
    s1 = figures.total(figures.by_day(db, days, "S1"))
    assert s1.get("pickups") == seeded.count("pickups", "S1")


def test_rebuild_equals_what_ingest_kept(db: Database, seeded: Seeded) -> None:
    """GIVEN aggregates kept at ingest and claim time
    WHEN they are emptied and `edge-hq dashboard rebuild` recounts them
    THEN every row is as it was; and a redelivered batch counts nothing twice."""
    def snapshot() -> tuple[list[tuple[object, ...]], ...]:
        return (db.query("SELECT * FROM dash_day ORDER BY store, day"),
                db.query("SELECT * FROM dash_month ORDER BY store, month"),
                db.query("SELECT * FROM dash_chain_day ORDER BY day, shard"),
                db.query("SELECT * FROM dash_detail ORDER BY store, day, metric, dim"),
                db.query("SELECT * FROM dash_customer ORDER BY customer"))

    before = snapshot()
    for table in ("dash_day", "dash_month", "dash_chain_day", "dash_customer"):
        db.query(f"DELETE FROM {table}")
    assert main(["dashboard", "rebuild", "--db", db.url.target
                 if db.dialect == "postgresql" else f"sqlite:///{db.url.target}"]) == 0
    assert snapshot() == before
    store = EventStore(db, Topics(), DeviceRegistry())
    again = db.query("SELECT seq, event_id, type, at, body FROM hq_event WHERE device=?"
                     " ORDER BY seq", ("D-S1",))
    wire = [{"v": 1, "id": e, "seq": int(s), "store": "S1", "device": "D-S1", "type": t,
             "at": float(a), "clock_trusted": True, "body": json.loads(b)}
            for s, e, t, a, b in again[:20]]
    assert store.ingest_batch("S1", "D-S1", EventBatch("S1", "D-S1", wire)).duplicates == 20
    assert snapshot() == before


def test_an_absurd_event_time_is_counted_not_fatal(db: Database) -> None:
    """GIVEN a box with a wild clock sends a card printed in the year 300,000
    WHEN HQ ingests it
    THEN the event is stored and counted under the unknown day; ingest goes on."""
    store = EventStore(db, Topics(), DeviceRegistry())
    wild = {"v": 1, "id": "e1", "seq": 1, "store": "S9", "device": "D9", "type": "card_issued",
            "at": 1e13, "clock_trusted": False, "body": {"serial": 1}}
    assert store.ingest_batch("S9", "D9", EventBatch("S9", "D9", [wild])).new == 1
    assert db.query("SELECT day, printed FROM dash_day WHERE store='S9'") == [
        (aggregates.UNKNOWN_DAY, 1)]


def test_a_batch_across_local_midnight_counts_on_both_days(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """GIVEN a store in Kathmandu (UTC+5:45) whose box sends one batch of cards printed at
    23:50 and 00:05 local time WHEN HQ ingests it THEN each counts on its own local day
    (ingest remembers a quarter hour's day within a batch, not an hour's)."""
    monkeypatch.setenv("TZ", "Asia/Kathmandu")
    time.tzset()
    try:
        midnight = dt.datetime(2026, 11, 30, 18, 15, tzinfo=dt.UTC).timestamp()  # 00:00 +5:45
        cards = [{"v": 1, "id": f"e{i}", "seq": i, "type": "card_issued", "at": midnight + off,
                  "clock_trusted": True, "body": {"serial": i}}
                 for i, off in enumerate((-600, -60, 300, 600), start=1)]
        store = EventStore(db, Topics(), DeviceRegistry())
        assert store.ingest_batch("S7", "D7", EventBatch("S7", "D7", cards)).new == 4
        assert db.query("SELECT day, printed FROM dash_day WHERE store='S7' ORDER BY day") == [
            (20261130, 2), (20261201, 2)]
    finally:
        monkeypatch.undo()
        time.tzset()


def test_boxes_trouble_first(db: Database) -> None:
    """GIVEN one healthy box, one offline with a backlog and an untrusted clock, one with a gap
    WHEN the boxes are listed
    THEN the offline one comes first, then the one with the gap, then the healthy one."""
    store = EventStore(db, Topics(), DeviceRegistry())
    now = time.time()
    store.record_presence("S1", "ok", Presence(PresenceState.ONLINE, "1", 1, 0, True, now))
    store.record_presence("S2", "down", Presence(PresenceState.OFFLINE, "1", 1, 9, False, now))
    store.record_presence("S3", "gap", Presence(PresenceState.ONLINE, "1", 1, 0, True, now))
    ev = {"v": 1, "id": "g5", "seq": 5, "store": "S3", "device": "gap", "type": "clock",
          "at": now, "clock_trusted": True, "body": {}}
    store.ingest_batch("S3", "gap", EventBatch("S3", "gap", [ev]))
    found = figures.boxes(db)
    assert [b.status.device for b in found] == ["down", "gap", "ok"]
    assert found[0].problems == ["offline", "backlog", "clock"]
    assert found[1].open_gaps == 4 and found[1].problems == ["gaps"]
    assert [b.status.device for b in figures.boxes(db, "S2")] == ["down"]


def test_pickups_on_time_late_and_not_collected(db: Database) -> None:
    """GIVEN three orders pushed to S1 (one collected in its window, one after, one never)
    WHEN the pickups page's figures are read
    THEN each is counted once where it belongs, with the online share of S1's scans."""
    end = at(1, 20)
    with db.tx() as cur:
        for order in ("A", "B", "C"):
            cur.execute("INSERT INTO hq_order(store, order_id, body, window_end, updated_at)"
                        " VALUES (?,?,?,?,?)", ("S1", order, json.dumps({"status": "waiting"}),
                                                int(end), 0.0))
    store = EventStore(db, Topics(), DeviceRegistry())
    wire = [{"v": 1, "id": f"p{n}", "seq": n, "store": "S1", "device": "D1", "type": "decision",
             "at": t, "clock_trusted": True,
             "body": {"accepted": True, "kind": kind, "code_id": code, "campaign_id": None,
                      "reason": None, "facts": {}}}
            for n, (kind, code, t) in enumerate((("pickup", "P:A", end - 60),
                                                 ("pickup", "P:B", end + 600),
                                                 ("coupon", "C:x", end)), 1)]
    store.ingest_batch("S1", "D1", EventBatch("S1", "D1", wire))
    (row,) = figures.pickups(db, _days(0, 2), now=end + 86400)
    assert (row.assigned, row.on_time, row.late, row.not_collected) == (3, 1, 1, 1)
    assert row.online_share == pytest.approx(2 / 3)


def test_operators_passwords_and_sessions(db: Database) -> None:
    """GIVEN an admin and a manager added with their passwords
    WHEN they sign in, with the right and a wrong password, and a session ends
    THEN only the right password signs in, the hash is argon2id (no password kept), a
    session finds its operator until closed or expired, and bad adds are refused."""
    add_operator(db, "boss", Role.ADMIN, None, "correct horse battery")
    add_operator(db, "mgr1", Role.MANAGER, "S1", "another long secret")
    (hashed,) = db.query("SELECT pw_hash FROM hq_operator WHERE name='boss'")[0]
    assert str(hashed).startswith("$argon2id$") and "correct horse" not in str(hashed)
    assert check_password(db, "boss", "wrong password!!") is None
    assert check_password(db, "nobody", "correct horse battery") is None
    mgr = check_password(db, "mgr1", "another long secret")
    assert mgr is not None and mgr.role is Role.MANAGER and mgr.store == "S1"
    assert mgr.may_see("S1") and not mgr.may_see("S2")
    sid = open_session(db, mgr)
    assert session_operator(db, sid) == mgr
    assert session_operator(db, sid, now=time.time() + 13 * 3600) is None
    assert db.query("SELECT COUNT(*) FROM hq_session WHERE id_hash=?", (sid,)) == [(0,)]
    close_session(db, sid)
    assert session_operator(db, sid) is None
    for name, role, store, pw in (("x", Role.MANAGER, None, "long enough pw"),
                                  ("x", Role.ADMIN, "S1", "long enough pw"),
                                  ("x", Role.ADMIN, None, "short"),
                                  ("bad name", Role.ADMIN, None, "long enough pw")):
        with pytest.raises(OperatorError):
            add_operator(db, name, role, store, pw)


def test_date_ranges_are_checked() -> None:
    """GIVEN malformed, backwards and overlong ranges
    WHEN they are parsed
    THEN each is refused with its reason; a good one spans its days."""
    for a, b in (("2026-13-01", "2026-12-01"), ("2026-03-05", "2026-03-01"),
                 ("2020-01-01", "2026-01-01"), ("x", "2026-01-01")):
        with pytest.raises(RangeError):
            Days.parse(a, b)
    days = Days.parse("2026-03-01", "2026-03-02")
    assert (days.first, days.last) == (20260301, 20260302)
    start, end = days.epoch()
    assert end - start in (2 * 86400, 2 * 86400 - 3600, 2 * 86400 + 3600)  # DST aside


def test_long_ranges_read_whole_months_and_agree_with_days(db: Database) -> None:
    """GIVEN cards printed on every day from mid-January to mid-April at two stores
    WHEN ranges with and without whole months are summed per store and per month
    THEN each equals the count of cards printed in the range, day by day."""
    store = EventStore(db, Topics(), DeviceRegistry())
    first = dt.date(2026, 1, 14)
    printed: list[tuple[str, dt.date]] = []
    for s in ("S1", "S2"):
        wire = []
        for n in range(95):
            day = first + dt.timedelta(days=n)
            t = dt.datetime(day.year, day.month, day.day, 11).timestamp()
            for k in range(1 + n % 3):
                wire.append({"v": 1, "id": f"{s}-{n}-{k}", "seq": len(wire) + 1, "store": s,
                             "device": f"D{s}", "type": "card_issued", "at": t,
                             "clock_trusted": True, "body": {"serial": len(wire)}})
                printed.append((s, day))
        store.ingest_batch(s, f"D{s}", EventBatch(s, f"D{s}", wire))
    for a, b in (("2026-01-20", "2026-04-10"), ("2026-02-01", "2026-03-31"),
                 ("2026-02-01", "2026-02-27"), ("2026-01-31", "2026-03-01")):
        days = Days.parse(a, b)
        lo, hi = dt.date.fromisoformat(a), dt.date.fromisoformat(b)
        want = {s: sum(1 for ps, d in printed if ps == s and lo <= d <= hi) for s in ("S1", "S2")}
        assert {t.key: t.get("printed") for t in figures.by_store(db, days)} == want, (a, b)
        assert figures.total(figures.by_month(db, days)) == figures.total(
            figures.by_day(db, days))
        assert figures.total(figures.by_store(db, days, "S2")).get("printed") == want["S2"]
    months = figures.by_month(db, Days.parse("2026-01-20", "2026-04-10"))
    assert [t.key for t in months] == ["202601", "202602", "202603", "202604"]


def test_operator_add_reads_the_password_from_stdin(db: Database, hq_db_url: str,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """GIVEN `edge-hq operator add` with the password on standard input
    WHEN a manager is added with a store, and one without
    THEN the first can sign in with that password; the second is refused (exit 2, why)."""
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("a password from stdin\n"))
    assert main(["operator", "add", "mgr", "--role", "manager", "--store", "S1",
                 "--db", hq_db_url]) == 0
    op = check_password(db, "mgr", "a password from stdin")
    assert op is not None and op.store == "S1"
    monkeypatch.setattr("sys.stdin", io.StringIO("a password from stdin\n"))
    assert main(["operator", "add", "mgr2", "--role", "manager", "--db", hq_db_url]) == 2
    assert "needs --store" in capsys.readouterr().err


def test_came_back_is_the_second_redemption_even_within_one_batch(db: Database) -> None:
    """GIVEN a web customer's three coupons, redeemed on three days in one batch, then a
    fourth in another batch
    WHEN HQ ingests them
    THEN the customer came back once, on the day of the second redemption."""
    with db.tx() as cur:
        for n in range(4):
            cur.execute("INSERT INTO web_coupon(coupon_id, code, customer, campaign_id, source,"
                        " store, idem_key, issued_at, valid_until, stores) VALUES"
                        " (?,?,?,?,?,?,?,?,?,?)", (f"K{n}", "x", "cust-0123456789abcdef",
                                                   "LIVE1", "link", "", f"i{n}", 0, 0, ""))
    store = EventStore(db, Topics(), DeviceRegistry())

    def redemption(n: int) -> dict[str, object]:
        return {"v": 1, "id": f"r{n}", "seq": n + 1, "store": "S1", "device": "D1",
                "type": "decision", "at": at(n, 12), "clock_trusted": True,
                "body": {"accepted": True, "kind": "coupon", "code_id": f"C:K{n}",
                         "campaign_id": "LIVE1", "reason": None,
                         "facts": {"coupon_id": f"K{n}", "channel": "livestream"}}}

    store.ingest_batch("S1", "D1", EventBatch("S1", "D1", [redemption(n) for n in range(3)]))
    store.ingest_batch("S1", "D1", EventBatch("S1", "D1", [redemption(3)]))
    rows = db.query("SELECT day, came_back, redeemed FROM dash_day ORDER BY day")
    second = int((START + dt.timedelta(days=1)).strftime("%Y%m%d"))
    assert [(int(d), int(c)) for d, c, _r in rows if c] == [(second, 1)]
    assert sum(int(r) for *_x, r in rows) == 4


def test_csv_cells_are_never_formulas() -> None:
    """GIVEN a table whose cells a spreadsheet would run (a box sent such a reason)
    WHEN it is exported as CSV
    THEN those cells are quoted with a leading ', the rest are exactly the table's."""
    from hq.web.dashboard import Table

    t = Table("x", ("a", "b"), (("=HYPERLINK(1)", "-"), ("@x", ("-5", "/hq")), ("+1", "-cmd")))
    assert t.csv().splitlines() == ["a,b", "'=HYPERLINK(1),-", "'@x,-5", "'+1,'-cmd"]


@pytest.mark.parametrize("zone", ["Asia/Shanghai", "America/New_York", "Asia/Kathmandu",
                                  "Australia/Eucla", "Pacific/Chatham", "Europe/London"])
def test_the_remembered_day_of_a_time_is_the_local_day(zone: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """GIVEN zones with offsets of whole, half and three-quarter hours and summer time
    WHEN ingest places times on their local day (remembering a quarter hour's day) THEN
    every day is localtime's, around midnights and clock changes too, and after the zone
    changes (the zone is part of what is remembered)."""
    import random

    from hq.reports import aggregates

    rng = random.Random(zone)
    for tz in (zone, "UTC"):
        monkeypatch.setenv("TZ", tz)
        time.tzset()
        for _ in range(20_000):
            at = rng.uniform(946_684_800, 4_102_444_800)
            # half of them within a minute of a quarter hour, where a day may turn
            at = at if rng.random() < 0.5 else round(at / 900) * 900 + rng.uniform(-60, 60)
            t = time.localtime(at)
            assert aggregates.day_of(at) == t.tm_year * 10000 + t.tm_mon * 100 + t.tm_mday
    monkeypatch.undo()
    time.tzset()
