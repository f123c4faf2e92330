"""HQ's customer pages in a real headless Chromium (Debian's), at a phone's 390x844.

One browser for the module, a fresh context per phone. What only a browser shows is
checked here: the QR on screen scans, Chinese is drawn as glyphs, the page's weight and
its origins over the wire, and the largest paint on an emulated slow link. The rest of
the pages' behaviour is tested in process (tests/test_web.py).
"""

from __future__ import annotations

import dataclasses
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, sync_playwright

from cli import hq as hq_cli
from edge import tokens
from edge.keys import SigningKey
from hq.storeregistry import get_store, parse_hours, put_store
from hq.web.campaigns import Campaign, CampaignKind, create_campaign
from provisioning.localbroker import Broker
from tests.factory import DEVICE, STORE
from tests.hq_support import url as broker_url
from tests.web_support import WebHq, loopback_socket, make_web_hq, read_qr, serving

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
PHONE = {"width": 390, "height": 844}
LANDING_MAX_BYTES = 30 * 1024
LCP_MAX_MS = 1500
SLOW_4G = {"offline": False, "latency": 150, "downloadThroughput": 1_600_000 / 8,
           "uploadThroughput": 750_000 / 8}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WebHq, str]]:
    sock = loopback_socket()
    port = sock.getsockname()[1]
    web = make_web_hq(tmp_path_factory.mktemp("web"), url_base=f"HTTP://127.0.0.1:{port}/")
    with serving(web.app, sock) as base:
        yield web, base
    web.box.close()
    web.db.close()


def phone(browser: Browser) -> Page:
    return browser.new_context(viewport=PHONE, locale="zh-CN").new_page()


def shot(page: Page, selector: str | None = None) -> Image.Image:
    png = page.locator(selector).screenshot() if selector else page.screenshot()
    return Image.open(io.BytesIO(png))


def glyph_shapes(image: Image.Image) -> list[np.ndarray]:
    """The ink of a line of text, cut at empty columns, each cut scaled to 24x24."""
    ink = np.asarray(image.convert("L")) < 128
    cols = [*ink.any(axis=0), False]
    cells, start = [], None
    for x, on in enumerate(cols):
        if on and start is None:
            start = x
        elif not on and start is not None:
            cell = ink[:, start:x]
            rows = np.flatnonzero(cell.any(axis=1))
            cell = cell[rows[0]: rows[-1] + 1]
            scaled = Image.fromarray(cell.astype(np.uint8) * 255).resize((24, 24))
            cells.append(np.asarray(scaled) > 127)
            start = None
    return cells


def distinct_glyphs(image: Image.Image, tolerance: float = 0.15) -> int:
    """How many different shapes a line holds: missing glyphs (tofu) are one shape."""
    kept: list[np.ndarray] = []
    for cell in glyph_shapes(image):
        if all(np.mean(cell != k) > tolerance for k in kept):
            kept.append(cell)
    return len(kept)


def test_glyph_check_tells_tofu_from_chinese(browser: Browser) -> None:
    """GIVEN the same line drawn in private-use characters no font has, and in Chinese
    WHEN the glyph check cuts each screenshot into glyph bitmaps
    THEN the missing glyphs are all one box (or nothing), the Chinese ones all differ:
    the check used on the real pages can fail."""
    page = phone(browser)
    page.set_content('<h1 id="t" style="font-size:32px">\ue000\ue001\ue002\ue003\ue004</h1>'
                     '<h1 id="z" style="font-size:32px">扫码入群领</h1>')
    assert distinct_glyphs(shot(page, "#t")) <= 1
    assert distinct_glyphs(shot(page, "#z")) >= 5
    page.context.close()


def test_card_to_claim_to_redeem_in_a_browser(browser: Browser, site: tuple[WebHq, str]
                                              ) -> None:
    """GIVEN a card the box printed (its URL read off the paper)
    WHEN a phone opens it, claims, and the coupon QR is read from a screenshot at the box
    THEN the box accepts it once and rejects it again; Chinese is drawn as glyphs; a reload
    mints nothing; a second phone sees "already claimed" with when; a forged card gets
    its page."""
    web, _base = site
    url = web.print_card()
    page = phone(browser)
    page.goto(url)
    assert "望京店" in page.inner_text("body")
    assert distinct_glyphs(shot(page, "h1")) >= 6  # 扫码入群 领新人礼: glyphs, not boxes
    page.click("button[type=submit]")
    page.wait_for_url("**/me/*")
    img = page.locator("#coupon-qr")
    assert img.evaluate("i => i.complete && i.naturalWidth > 0")
    (code,) = [c for c in read_qr(shot(page)) if c.startswith("SEC1")]
    assert web.box.counter.redeem(code).accepted
    assert not web.box.counter.redeem(code).accepted
    page.reload()
    assert len(web.coupons()) == 1 and page.locator("#coupon-qr").is_visible()
    page.go_back()  # back to the card's landing page: it sends the claimer to the coupon
    page.wait_for_url("**/me/*")
    assert len(web.coupons()) == 1
    other = phone(browser)
    other.goto(url)
    text = other.inner_text("h1")
    assert "已于" in text and "被领取" in text
    card = tokens.Card(STORE, DEVICE, 7, int(time.time()))
    thief = SigningKey.generate(DEVICE)  # the right names, the wrong key
    other.goto(tokens.card_url(url[: url.rindex("/") + 1],
                               tokens.assemble(card, thief.sign(tokens.signing_bytes(card)))))
    assert "未通过校验" in other.inner_text("h1") and other.locator("form").count() == 0
    page.context.close()
    other.context.close()


def test_landing_is_light_local_and_paints_fast_on_slow_4g(
        browser: Browser, site: tuple[WebHq, str]) -> None:
    """GIVEN a fresh card and Chromium's emulation of a slow 4G link (150 ms, 1.6 Mbps)
    WHEN a phone opens the card's page
    THEN every byte over the wire (HTML, CSS, JS, fonts, headers) is at most 30 KB, no
    request goes to another origin, and the largest contentful paint is under 1.5 s."""
    web, base = site
    url = web.print_card()
    page = phone(browser)
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", SLOW_4G)
    wire: dict[str, float] = {}
    urls: list[str] = []
    cdp.on("Network.requestWillBeSent", lambda e: urls.append(e["request"]["url"]))
    cdp.on("Network.loadingFinished",
           lambda e: wire.__setitem__(e["requestId"], e["encodedDataLength"]))
    page.goto(url, wait_until="load")
    page.wait_for_load_state("networkidle")
    lcp: Any = page.evaluate("""() => new Promise(done => new PerformanceObserver(list => {
        const all = list.getEntries(); done(all[all.length - 1].startTime);
    }).observe({type: "largest-contentful-paint", buffered: true}))""")
    origin = base.lower()
    assert urls and all(u.lower().startswith(origin) or u.startswith("data:") for u in urls)
    assert 0 < sum(wire.values()) <= LANDING_MAX_BYTES
    assert 0 < float(lcp) < LCP_MAX_MS
    page.context.close()


def test_nearest_store_first_after_a_tap_on_geolocation(browser: Browser,
                                                        site: tuple[WebHq, str]) -> None:
    """GIVEN a link campaign good at every store, and a phone in Shanghai that allows location
    WHEN it claims, and taps "nearest first" on the coupon (the page's script, under its CSP)
    THEN the position is asked only then, and the Shanghai store comes before Beijing's."""
    web, base = site
    now = int(time.time())
    create_campaign(web.db, Campaign("NEAR", CampaignKind.LINK, "全店通用", tokens.Benefit(
        tokens.BenefitKind.PERCENT_PRICE, 90), now - 60, now + 3600, 7, (), False, 0, 0))
    context = browser.new_context(viewport=PHONE, locale="zh-CN",
                                  geolocation={"latitude": 31.2, "longitude": 121.5})
    page = context.new_page()
    page.goto(base + "/c/NEAR")
    page.click("button[type=submit]")
    page.wait_for_url("**/me/*")
    assert "lat=" not in page.url
    context.grant_permissions(["geolocation"])
    page.click("[data-near]")
    page.wait_for_url("**lat=31.2*")
    stores = page.locator("#stores li").all_inner_texts()
    assert stores[0].startswith("静安店") and stores[1].startswith("望京店")
    context.close()


@pytest.mark.network
def test_an_assigned_order_shows_its_pickup_code_on_my_coupons(
        browser: Browser, site: tuple[WebHq, str], tmp_path: Path) -> None:
    """GIVEN a phone that has opened "my coupons" once (its cookie id), and Wangjing's
    store open all day with pickup places in the registry
    WHEN a livestream order for that phone, placed near Wangjing, goes through `edge-hq
    orders assign` over a real broker
    THEN the phone's "my coupons" shows the order at 望京店 with its number, and the QR
    read off the screen is the pickup code the command issued, which the store's box
    accepts once."""
    web, base = site
    registered = get_store(web.db, STORE)
    assert registered is not None
    put_store(web.db, dataclasses.replace(registered, hours=parse_hours("00:00-24:00"),
                                          pickup_per_slot=5))
    page = phone(browser)
    page.goto(base + "/me")
    (cid,) = [c["value"] for c in page.context.cookies() if c["name"] == "cid"]
    start = int(time.time()) // 3600 * 3600
    orders = tmp_path / "live.jsonl"
    orders.write_text(json.dumps({
        "order_id": "LIVE-77", "lat": 39.9925, "lon": 116.4707, "window_start": start,
        "window_end": start + 3600, "items": "蛋糕x1", "number": "7788",
        "web_customer": cid}, ensure_ascii=False) + "\n", encoding="utf-8")
    broker = Broker(tmp_path / "broker")
    broker.start()
    try:
        assert hq_cli.main(["--home", str(web.home), "orders", "assign", str(orders),
                            "--db", web.db_url, "--broker", broker_url(broker)]) == 0
    finally:
        broker.stop()
    page.goto(base + "/me")
    order = page.locator("#order-LIVE-77")
    assert "7788" in order.inner_text() and "望京店" in order.inner_text()
    assert page.locator("#pickup-qr-LIVE-77").evaluate("i => i.complete && i.naturalWidth > 0")
    (code,) = read_qr(shot(page, "#pickup-qr-LIVE-77"))
    (issued,) = web.db.query("SELECT code FROM hq_assignment WHERE order_id='LIVE-77'")
    assert code == issued[0]
    assert web.box.counter.redeem(code).accepted
    assert not web.box.counter.redeem(code).accepted
    page.context.close()
