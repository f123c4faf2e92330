"""HQ's operator pages in process (Starlette's TestClient), on SQLite and PostgreSQL.

Sign-in, sessions, CSRF and the login rate limit; the funnel the chain page shows against
the seeded facts; every table against its CSV; a store manager held to their store.
"""

from __future__ import annotations

import datetime as dt
import html
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.keys import Purpose
from hq.ingest.eventstore import EventStore
from hq.issuing import keystore
from hq.issuing.registry import DeviceRegistry
from hq.web.dashboard import HQ_ROUTES
from hq.web.operators import Role, add_operator
from sync.contract import Presence, PresenceState, Topics
from tests.dash_support import (
    DAYS,
    START,
    Seeded,
    csv_rows,
    funnel_counts,
    html_tables,
    login,
    seed,
    without_tokens,
)
from tests.web_support import WebHq, make_web_hq

ADMIN_PW = "correct horse battery"
MANAGER_PW = "S1 manager's secret"
RANGE = {"from": START.isoformat(), "to": (START + dt.timedelta(days=DAYS)).isoformat()}


@pytest.fixture
def site(tmp_path: Path, hq_db_url: str) -> Iterator[tuple[WebHq, Seeded]]:
    web = make_web_hq(tmp_path, db_url=hq_db_url)
    seeded = seed(web.db, keystore.signing_key(web.home, Purpose.COUPON))
    add_operator(web.db, "boss", Role.ADMIN, None, ADMIN_PW)
    add_operator(web.db, "mgr1", Role.MANAGER, "S1", MANAGER_PW)
    yield web, seeded
    web.box.close()
    web.db.close()


def test_pages_need_a_signed_in_operator(site: tuple[WebHq, Seeded]) -> None:
    """GIVEN no session
    WHEN any dashboard page or CSV is asked for
    THEN it redirects to the sign-in page, with nothing of the figures."""
    web, _ = site
    client = web.client()
    for path in ("/hq", "/hq/chain", "/hq/stores/S1", "/hq/stores/S1/2026-03-02",
                 "/hq/campaigns", "/hq/pickups", "/hq/boxes", "/hq/chain?csv=funnel"):
        r = client.get(path)
        assert r.status_code == 303 and r.headers["location"].startswith("/hq/login?next=")
        assert "S1" not in without_tokens(r.text)
    forged = web.client()
    forged.cookies.set("hqs", "not-a-session", path="/hq")
    assert forged.get("/hq/chain").status_code == 303


def test_sign_in_sets_a_safe_session_cookie_and_sign_out_ends_it(
        site: tuple[WebHq, Seeded]) -> None:
    """GIVEN an admin
    WHEN they sign in, then sign out (with and without the page's CSRF token)
    THEN the session cookie is HttpOnly and SameSite=Lax, the page names them; sign-out
    without the token keeps the session at HQ, with it ends it there."""
    web, _ = site
    client = web.client()
    form = client.get("/hq/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf
    r = client.post("/hq/login?next=/hq/chain", data={"name": "boss", "password": ADMIN_PW,
                                                      "csrf": csrf.group(1)})
    assert r.status_code == 303 and r.headers["location"] == "/hq/chain"
    cookie = r.headers["set-cookie"].lower()
    assert "hqs=" in cookie and "httponly" in cookie and "samesite=lax" in cookie
    assert "secure" not in cookie  # --secure-cookies is off in this test site
    sid = client.cookies.get("hqs")
    page = client.get("/hq/chain", params=RANGE)
    assert page.status_code == 200 and 'id="operator">boss<' in page.text
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token
    stranger = web.client()
    stranger.cookies.set("hqs", sid or "", path="/hq")
    stranger.post("/hq/logout", data={"csrf": "forged"})
    assert stranger.get("/hq/chain").status_code == 200  # not ended by a forged sign-out
    assert client.post("/hq/logout", data={"csrf": token.group(1)}).status_code == 303
    assert stranger.get("/hq/chain").status_code == 303


def test_sign_in_refusals(site: tuple[WebHq, Seeded]) -> None:
    """GIVEN the sign-in form
    WHEN a wrong password, a post without the form's token, and a burst of tries come
    THEN 401, 403, and 429 after the limit (even with the right password); no session."""
    web, _ = site
    login(web, "boss", "wrong password", expect=401)
    client = web.client()
    r = client.post("/hq/login", data={"name": "boss", "password": ADMIN_PW, "csrf": "x"})
    assert r.status_code == 403 and "hqs" not in client.cookies
    codes = [login(web, "mgr1", "guess number " + str(n), expect=401 if n < 9 else 429)
             for n in range(10)]
    assert len(codes) == 10
    limited = login(web, "mgr1", MANAGER_PW, expect=429)
    assert "hqs" not in limited.cookies


def test_chain_funnel_equals_the_facts_and_tables_equal_their_csv(
        site: tuple[WebHq, Seeded]) -> None:
    """GIVEN the seeded loop and a signed-in admin
    WHEN the chain, a store (a month and half a year), a day, campaigns, pickups and boxes
    pages are read
    THEN the chain's and the store's funnel equal the facts, and every table on every
    page equals its CSV download cell for cell."""
    web, seeded = site
    client = login(web, "boss", ADMIN_PW)
    last = START + dt.timedelta(days=DAYS)
    chain = client.get("/hq/chain", params=RANGE)
    tables = html_tables(chain.text)
    want = seeded.funnel(START, last)
    assert funnel_counts(tables["t-funnel"]) == [want[k] for k in
                                                 ("printed", "claimed", "welcome", "came_back")]
    store = client.get("/hq/stores/S2", params=RANGE)
    want2 = seeded.funnel(START, last, "S2")
    assert funnel_counts(html_tables(store.text)["t-funnel"]) == list(want2.values())
    day = START + dt.timedelta(days=2)
    one = client.get(f"/hq/stores/S2/{day.isoformat()}", params=RANGE)
    assert funnel_counts(html_tables(one.text)["t-funnel"]) == list(
        seeded.funnel(day, day, "S2").values())
    assert f'href="/hq/stores/S2?from={RANGE["from"]}&amp;to={RANGE["to"]}"' in one.text
    half_year = client.get("/hq/chain", params={"from": "2026-01-01", "to": "2026-06-30"})
    long_tables = html_tables(half_year.text)
    assert "t-days" not in long_tables and [r[0] for r in long_tables["t-months"][1:]] == [
        "2026-03"]  # a long range goes by month
    assert funnel_counts(long_tables["t-funnel"]) == list(
        seeded.funnel(dt.date(2026, 1, 1), dt.date(2026, 6, 30)).values())
    store_half = client.get("/hq/stores/S2", params={"from": "2026-01-01", "to": "2026-06-30"})
    store_tables = html_tables(store_half.text)
    assert "t-days" not in store_tables and [r[0] for r in store_tables["t-months"][1:]] == [
        "2026-03"]  # a store's long range goes by month too, each month a link to its days
    assert 'href="/hq/stores/S2?from=2026-03-01&amp;to=2026-03-31"' in store_half.text
    assert funnel_counts(store_tables["t-funnel"]) == list(
        seeded.funnel(dt.date(2026, 1, 1), dt.date(2026, 6, 30), "S2").values())
    pages = [chain, store, one, half_year, store_half] + [client.get(p, params=RANGE) for p in
                                              ("/hq/campaigns", "/hq/pickups", "/hq/boxes")]
    checked = 0
    for page in pages:
        assert page.status_code == 200
        for table_id, rows in html_tables(page.text).items():
            name = table_id.removeprefix("t-")
            link = re.search(rf'id="csv-{name}" href="([^"]+)"', page.text)
            assert link, name
            got = client.get(html.unescape(link.group(1)))
            assert got.status_code == 200 and got.headers["content-type"].startswith("text/csv")
            assert csv_rows(got.text) == rows, (page.url, name)
            checked += 1
    assert checked >= 12


def test_a_manager_sees_only_their_store(site: tuple[WebHq, Seeded]) -> None:
    """GIVEN the manager of S1
    WHEN they ask for S2's pages and CSVs, the chain, and the chain-wide pages
    THEN S2's and the chain's are 403 with nothing of S2; the others show S1 alone."""
    web, seeded = site
    client = login(web, "mgr1", MANAGER_PW)
    assert client.get("/hq").headers["location"] == "/hq/stores/S1"
    own = client.get("/hq/stores/S1", params=RANGE)
    assert own.status_code == 200
    want = seeded.funnel(START, START + dt.timedelta(days=DAYS), "S1")
    assert funnel_counts(html_tables(own.text)["t-funnel"]) == list(want.values())
    for path in ("/hq/stores/S2", "/hq/stores/S2?csv=funnel", "/hq/stores/S2/2026-03-03",
                 "/hq/stores/S2/2026-03-03?csv=campaigns", "/hq/chain", "/hq/chain?csv=stores"):
        r = client.get(path, params=RANGE)
        assert r.status_code == 403, path
        text = without_tokens(r.text)
        assert "S2" not in text and "S3" not in text and "<td" not in text
    for path in ("/hq/campaigns", "/hq/pickups", "/hq/boxes"):
        r = client.get(path, params=RANGE)
        text = without_tokens(r.text)
        assert r.status_code == 200 and "S2" not in text and "S3" not in text, path
    top = html_tables(client.get("/hq/campaigns", params=RANGE).text)["t-top"]
    assert [row[0] for row in top[1:]] == ["S1"]


def test_a_bad_range_is_a_clear_400(site: tuple[WebHq, Seeded]) -> None:
    """GIVEN a signed-in admin WHEN the range runs backwards THEN 400 saying so."""
    web, _ = site
    client = login(web, "boss", ADMIN_PW)
    r = client.get("/hq/chain", params={"from": "2026-03-05", "to": "2026-03-01"})
    assert r.status_code == 400 and "ends before it starts" in r.text


def test_a_bad_day_is_a_400_and_another_stores_day_a_403_first(
        site: tuple[WebHq, Seeded]) -> None:
    """GIVEN an admin and the manager of S1 WHEN they open a store's day that is no date
    THEN the admin gets 400 saying so; the manager asking S2's gets 403 whatever the day
    (the store is checked before the day is read), and S1's own bad day 400."""
    web, _ = site
    admin = login(web, "boss", ADMIN_PW)
    r = admin.get("/hq/stores/S1/2026-02-30")
    assert r.status_code == 400 and "2026-02-30" in r.text
    manager = login(web, "mgr1", MANAGER_PW)
    assert manager.get("/hq/stores/S2/2026-02-30").status_code == 403
    assert manager.get("/hq/stores/S2/2026-03-03").status_code == 403
    assert manager.get("/hq/stores/S1/2026-02-30").status_code == 400


def test_routes_are_documented_once() -> None:
    """GIVEN the dashboard's route table WHEN docs/dashboard.md is read THEN it lists them."""
    doc = (Path(__file__).parents[1] / "docs" / "dashboard.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `(?:GET|POST|GET, POST) (/[^`]*)`", doc, re.M))
    assert listed == {path for path, *_ in HQ_ROUTES}


def test_boxes_sort_by_a_column_from_its_header(site: tuple[WebHq, Seeded]) -> None:
    """GIVEN a healthy box, one with backlog 5, one with backlog 50 and an untrusted clock
    (and the seeded ones, never heard from: offline)
    WHEN the admin opens the boxes page, then follows the backlog header's link
    THEN the one in most trouble leads and the healthy one comes last; then the biggest
    backlog leads."""
    web, _ = site
    store = EventStore(web.db, Topics(), DeviceRegistry())
    now = time.time()
    store.record_presence("S1", "OK", Presence(PresenceState.ONLINE, "1", 1, 0, True, now))
    store.record_presence("S1", "B5", Presence(PresenceState.ONLINE, "1", 1, 5, True, now))
    store.record_presence("S1", "B50", Presence(PresenceState.ONLINE, "1", 1, 50, False, now))
    client = login(web, "boss", ADMIN_PW)
    page = client.get("/hq/boxes")
    rows = html_tables(page.text)["t-boxes"]
    assert rows[1][1] == "B50" and rows[-1][1] == "OK"  # trouble first
    link = re.search(r'href="(/hq/boxes\?sort=backlog)"', page.text)
    assert link
    by_backlog = html_tables(client.get(link.group(1)).text)["t-boxes"]
    assert [r[1] for r in by_backlog[1:3]] == ["B50", "B5"]
