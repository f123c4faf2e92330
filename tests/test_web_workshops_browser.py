"""The workshop sign-up in a real headless Chromium (Debian's), at a phone's 390x844: the
form on a phone, the ticket QR on screen scanned by the box, the page's weight and origins."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser

from tests.test_web_browser import LANDING_MAX_BYTES, browser, phone, shot  # noqa: F401
from tests.test_web_workshops import make_session
from tests.web_support import WebHq, loopback_socket, make_web_hq, read_qr, serving


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WebHq, str]]:
    sock = loopback_socket()
    web = make_web_hq(tmp_path_factory.mktemp("web"))
    make_session(web, capacity=4)
    with serving(web.app, sock) as base:
        yield web, base
    web.box.close()
    web.db.close()


def test_sign_up_on_a_phone_and_check_in_from_the_screen(browser: Browser,  # noqa: F811
                                                         site: tuple[WebHq, str]) -> None:
    """GIVEN the store group's sign-up link WHEN a phone opens it (every byte over the wire
    counted), fills in a name and 2 people and signs up
    THEN the sign-up page is at most 30 KB from this origin only; the ticket page shows a
    QR that, read from a screenshot, the box checks in for 2 people once."""
    web, base = site
    page = phone(browser)
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    wire: dict[str, float] = {}
    urls: list[str] = []
    cdp.on("Network.requestWillBeSent", lambda e: urls.append(e["request"]["url"]))
    cdp.on("Network.loadingFinished",
           lambda e: wire.__setitem__(e["requestId"], e["encodedDataLength"]))
    page.goto(f"{base}/w/W-BAKE", wait_until="load")
    page.wait_for_load_state("networkidle")
    assert "亲子烘焙课" in page.inner_text("h1") and "剩余 4 人" in page.inner_text("body")
    assert urls and all(u.startswith(base) or u.startswith("data:") for u in urls)
    weight: Any = sum(wire.values())
    assert 0 < weight <= LANDING_MAX_BYTES
    page.fill("input[name=holder]", "王小明")
    page.fill("input[name=party]", "2")
    page.click("button[type=submit]")
    page.wait_for_url("**/t/*")
    assert page.locator("#ticket-qr").evaluate("i => i.complete && i.naturalWidth > 0")
    (code,) = [c for c in read_qr(shot(page)) if c.startswith("SEW1")]
    first = web.box.counter.redeem(code, till="T1")
    assert first.accepted and first.facts["party"] == 2 and first.facts["holder"] == "王小明"
    assert not web.box.counter.redeem(code, till="T1").accepted
    page.context.close()
