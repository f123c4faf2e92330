"""HQ's operator dashboard in a real headless Chromium (Debian's), over a real uvicorn.

An admin signs in through the form, sets a date range, reads the chain's funnel, drills
into a store and one of its days (the range goes along), downloads a table's CSV; a store
manager asks for another store and gets 403 with nothing of it. The numbers are checked
against the facts the loop was seeded with (tests/dash_support.py), not the aggregates.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page

from edge.keys import Purpose
from hq.issuing import keystore
from hq.web.operators import Role, add_operator
from tests import test_web_browser
from tests.dash_support import START, Seeded, csv_rows, seed, without_tokens
from tests.web_support import WebHq, make_web_hq, serving

ADMIN_PW = "correct horse battery"
MANAGER_PW = "S1 manager's secret"
browser = test_web_browser.browser  # the same Chromium fixture (module-scoped)
FIRST, LAST = START + dt.timedelta(days=1), START + dt.timedelta(days=4)
STEPS = ("printed", "claimed", "welcome", "came_back")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WebHq, Seeded, str]]:
    web = make_web_hq(tmp_path_factory.mktemp("dash"))
    seeded = seed(web.db, keystore.signing_key(web.home, Purpose.COUPON))
    add_operator(web.db, "boss", Role.ADMIN, None, ADMIN_PW)
    add_operator(web.db, "mgr1", Role.MANAGER, "S1", MANAGER_PW)
    with serving(web.app) as base:
        yield web, seeded, base
    web.box.close()
    web.db.close()


def sign_in(browser: Browser, base: str, name: str, password: str, path: str = "/hq") -> Page:
    page = browser.new_context(viewport={"width": 1280, "height": 900},
                               locale="zh-CN").new_page()
    page.goto(base + path)
    assert "/hq/login" in page.url
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", password)
    page.click("#login")
    page.wait_for_load_state()
    return page


def table(page: Page, table_id: str) -> list[list[str]]:
    """A table as the browser shows it: header and rows of cell texts."""
    rows: list[list[str]] = page.eval_on_selector(
        f"#t-{table_id}", "t => [...t.rows].map(r => [...r.cells].map(c => c.innerText.trim()))")
    return rows


def counts(page: Page) -> list[int]:
    return [int(r[1]) for r in table(page, "funnel")[1:]]


def test_admin_reads_the_funnel_drills_down_and_downloads_csv(
        browser: Browser, site: tuple[WebHq, Seeded, str]) -> None:
    """GIVEN six seeded days at three stores and an admin
    WHEN they sign in, set a range of four days, open store S2 from the chain's store
    table, then one of S2's days, and download the tables as CSV
    THEN the chain's and S2's funnels equal the facts of that range, the day's equals the
    facts of that day, the range survives each click, the charts are drawn, and each CSV
    equals the table on screen."""
    _web, seeded, base = site
    page = sign_in(browser, base, "boss", ADMIN_PW)
    assert page.url.startswith(base + "/hq/chain")
    page.fill("input[name=from]", FIRST.isoformat())
    page.fill("input[name=to]", LAST.isoformat())
    page.click("#apply")
    page.wait_for_url(f"**/hq/chain?from={FIRST.isoformat()}&to={LAST.isoformat()}")
    want = seeded.funnel(FIRST, LAST)
    assert counts(page) == [want[s] for s in STEPS]
    assert page.locator("section svg.chart").first.bounding_box()["height"] > 50  # type: ignore[index]
    funnel_csv = page.request.get(page.eval_on_selector("#csv-funnel", "a => a.href"))
    assert csv_rows(funnel_csv.text()) == table(page, "funnel")

    page.click("#t-stores >> text=S2")
    page.wait_for_url("**/hq/stores/S2?*")
    assert page.input_value("input[name=from]") == FIRST.isoformat()
    assert page.input_value("input[name=to]") == LAST.isoformat()
    want2 = seeded.funnel(FIRST, LAST, "S2")
    assert counts(page) == [want2[s] for s in STEPS]
    days_csv = page.request.get(page.eval_on_selector("#csv-days", "a => a.href"))
    assert csv_rows(days_csv.text()) == table(page, "days")

    day = START + dt.timedelta(days=2)
    page.click(f"#t-days >> text={day.isoformat()}")
    page.wait_for_url(f"**/hq/stores/S2/{day.isoformat()}?*")
    want_day = seeded.funnel(day, day, "S2")
    assert counts(page) == [want_day[s] for s in STEPS]
    assert page.input_value("input[name=from]") == FIRST.isoformat()
    page.click("#back")
    page.wait_for_url("**/hq/stores/S2?*")
    assert counts(page) == [want2[s] for s in STEPS]
    page.context.close()


def test_manager_cannot_see_another_store(browser: Browser,
                                          site: tuple[WebHq, Seeded, str]) -> None:
    """GIVEN the manager of S1, signed in through the form
    WHEN the browser opens S2's page, S2's CSV and the chain
    THEN each answers 403 and the page holds nothing of S2 or of another store; their own
    store's page shows S1's funnel."""
    _web, seeded, base = site
    page = sign_in(browser, base, "mgr1", MANAGER_PW)
    assert page.url.startswith(base + "/hq/stores/S1")
    for path in ("/hq/stores/S2", "/hq/stores/S2?csv=funnel", "/hq/chain"):
        response = page.goto(base + path)
        assert response is not None and response.status == 403, path
        text = without_tokens(page.content())
        assert "S2" not in text and "S3" not in text and page.locator("td").count() == 0
    page.goto(f"{base}/hq/stores/S1?from={START.isoformat()}&to={LAST.isoformat()}")
    want = seeded.funnel(START, LAST, "S1")
    assert counts(page) == [want[s] for s in STEPS]
    page.context.close()
