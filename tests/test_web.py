"""HQ's customer pages in process (Starlette's TestClient): card landing, claims, coupons."""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli import hq as cli_hq
from edge import tokens
from edge.events import EventType
from edge.keys import Purpose, parse_trust
from hq.broker import BrokerOptions
from hq.ingest.eventstore import EventStore
from hq.issuing import keystore
from hq.issuing.codes import sign_token
from hq.issuing.registry import DeviceRegistry
from hq.publishing.push import BodyError, orders_from_body, push_orders, web_links_from_body
from hq.web.app import ROUTES
from hq.web.campaigns import Campaign, CampaignKind, create_campaign
from hq.web.words import WORDS
from provisioning.localbroker import Broker
from sync.contract import (
    Envelope,
    EventBatch,
    Topics,
    decode_orders,
    open_envelope,
    sign_device_message,
)
from tests.factory import DEVICE, STORE
from tests.hq_support import TOPICS, Inbox, url, wait_until
from tests.web_support import (
    JOIN_URL,
    RECEIPT,
    WebHq,
    form_fields,
    make_web_hq,
    path_of,
    qr_from_page,
)


@pytest.fixture
def web(tmp_path: Path, hq_db_url: str) -> Iterator[WebHq]:
    """The pages over HQ's database: each test runs on SQLite and on PostgreSQL."""
    w = make_web_hq(tmp_path, db_url=hq_db_url)
    yield w
    w.box.close()
    w.db.close()


def claim(web: WebHq, client: object, url: str) -> tuple[object, object]:
    """Open a card's page and press its button; (landing response, claim response)."""
    page = client.get(path_of(url))  # type: ignore[attr-defined]
    done = client.post(path_of(url), data=form_fields(page.text))  # type: ignore[attr-defined]
    return page, done


def test_card_landing_in_chinese_then_english(web: WebHq) -> None:
    """GIVEN a card the box printed
    WHEN a phone opens its URL in Chinese, then in English, then switches language
    THEN the page names the store and the gift with one claim button, in that language,
    and shows nothing of the receipt."""
    url = web.print_card()
    zh = web.client().get(path_of(url))
    assert zh.status_code == 200
    assert "望京店" in zh.text and "免费咖啡一杯" in zh.text and "立即领取" in zh.text
    assert zh.text.count("<form") == 1 and 'lang="zh-CN"' in zh.text
    assert RECEIPT not in zh.text
    en = web.client("en-US,en;q=0.9").get(path_of(url))
    assert "Free 咖啡一杯" in en.text and "Claim it" in en.text and 'lang="en"' in en.text
    phone = web.client()
    switched = phone.get(f"/lang/en?next={path_of(url)}")
    assert switched.status_code == 303 and switched.headers["location"] == path_of(url)
    assert "Claim it" in phone.get(path_of(url)).text
    assert phone.get("/lang/zh?next=//evil.example/").headers["location"] == "/me"


def test_claim_gives_a_coupon_the_box_accepts_once(web: WebHq) -> None:
    """GIVEN a printed card
    WHEN a phone claims it and the coupon's QR is read off the page and redeemed at the box
    THEN the box accepts it once and rejects it the second time; HQ recorded
    card (device, serial, receipt) -> claim (time, customer) -> coupon."""
    url = web.print_card()
    phone = web.client()
    _page, done = claim(web, phone, url)
    assert done.status_code == 303  # type: ignore[attr-defined]
    coupon_path = done.headers["location"]  # type: ignore[attr-defined]
    page = phone.get(coupon_path)
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    code = qr_from_page(page.text)
    assert web.box.counter.redeem(code).accepted
    second = web.box.counter.redeem(code)
    assert not second.accepted and second.reason is not None
    (coupon_id, customer, device, serial, stored) = web.coupons()[0]
    assert stored == code and coupon_path == f"/me/{coupon_id}"
    assert (device, serial) == (DEVICE, int(tokens.code_from_url(url) and serial))
    (row,) = web.db.query("SELECT store, receipt_ref, customer, coupon_id, claimed_at"
                          " FROM web_card_claim")
    assert row[:4] == (STORE, RECEIPT, customer, coupon_id) and row[4] > 0
    assert phone.cookies["cid"] == customer
    token = tokens.parse(code)
    assert isinstance(token, tokens.Signed) and isinstance(token.token, tokens.Coupon)
    assert token.token.stores == (STORE,) and token.token.channel is tokens.Channel.WELCOME
    assert "state=" + STORE in page.text  # the group join link carries the store
    assert RECEIPT not in page.text
    # HQ's own record of the coupon's limits, which fan-out and conflicts go by.
    assert web.db.query("SELECT kind, campaign_id, eligible, max_uses FROM hq_issued"
                        " WHERE code_id=?", (token.token.code_id,)) == [
        ("coupon", token.token.campaign_id, STORE, 1)]


def test_reload_retry_and_a_second_phone_mint_nothing_more(web: WebHq) -> None:
    """GIVEN a card claimed by one phone
    WHEN that phone reloads, resubmits the same form, opens the card again; and another
    phone opens the card and posts a claim
    THEN there is still exactly one coupon; the other phone is told when it was claimed."""
    url = web.print_card()
    phone = web.client()
    page, done = claim(web, phone, url)
    first = done.headers["location"]  # type: ignore[attr-defined]
    again = phone.post(path_of(url), data=form_fields(page.text))  # type: ignore[attr-defined]
    assert again.headers["location"] == first
    assert phone.get(path_of(url)).headers["location"] == first
    assert phone.get(first).status_code == 200
    other = web.client()
    seen = other.get(path_of(url))
    assert seen.status_code == 409 and "已于" in seen.text and "被领取" in seen.text
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d", seen.text)
    other_page = other.get("/me")
    tried = other.post(path_of(url), data=form_fields(other_page.text))
    assert tried.status_code == 409 and "被领取" in tried.text
    assert len(web.coupons()) == 1
    assert other.get(first).status_code == 404  # a coupon page is its owner's only


def _signed_card(web: WebHq, **over: object) -> str:
    card = dataclasses.replace(tokens.Card(STORE, DEVICE, 999, int(time.time())), **over)
    code = tokens.assemble(card, web.box.device_key.sign(tokens.signing_bytes(card)))
    return "/" + code


@pytest.mark.parametrize("case", ["forged", "unknown_device", "wrong_store", "expired",
                                  "bad_format"])
def test_bad_cards_get_their_page_and_no_claim(web: WebHq, case: str) -> None:
    """GIVEN a forged card, one from an unregistered device, one naming another store,
    one printed 31 days ago (cards last 30), and a damaged one
    WHEN a phone opens it and posts a claim
    THEN each gets its own clear page, and nothing is claimed or minted."""
    if case == "forged":
        good = _signed_card(web)
        path = good[:-3] + ("A" if good[-3] != "A" else "B") + good[-2:]
    elif case == "unknown_device":
        path = _signed_card(web, device_id="XX9-T1")
    elif case == "wrong_store":
        path = _signed_card(web, store_id="SH002")
    elif case == "expired":
        path = _signed_card(web, issued_at=int(time.time()) - 31 * 86400)
    else:
        path = "/SEK1" + "0" * 60
    phone = web.client()
    page = phone.get(path)
    expected = {"forged": "未通过校验", "unknown_device": "未登记的设备",
                "wrong_store": "与门店不符", "expired": "已过期", "bad_format": "无法识别"}[case]
    assert page.status_code in (403, 410) and expected in page.text and "没有领取" in page.text
    assert "<form" not in page.text
    csrf = form_fields(phone.get("/me").text)["csrf"]
    assert phone.post(path, data={"csrf": csrf, "idem": "x" * 20}).status_code in (403, 410)
    assert web.coupons() == [] and web.db.query("SELECT * FROM web_card_claim") == []


def test_every_form_needs_its_csrf_token(web: WebHq) -> None:
    """GIVEN a card page and the coupons page
    WHEN a claim or a phone is posted without the token, or with another customer's
    THEN it is refused (403) and nothing is stored."""
    url = web.print_card()
    phone, other = web.client(), web.client()
    fields = form_fields(phone.get(path_of(url)).text)
    assert phone.post(path_of(url), data={"idem": fields["idem"]}).status_code == 403
    other.get("/me")
    assert other.post(path_of(url), data=fields).status_code == 403
    assert phone.post("/me/phone", data={"phone": "13800138000"}).status_code == 403
    assert web.coupons() == [] and web.db.query("SELECT phone FROM web_customer") == []


def test_rate_limits_per_ip_and_per_customer(tmp_path: Path, hq_db_url: str) -> None:
    """GIVEN limits of 3 card checks and 2 claims a minute
    WHEN one phone opens a card 4 times, or posts 3 claims
    THEN the 4th view and the 3rd claim get 429 with Retry-After."""
    web = make_web_hq(tmp_path, check_limit=3, claim_limit=2, db_url=hq_db_url)
    url = web.print_card()
    phone = web.client()
    pages = [phone.get(path_of(url)) for _ in range(4)]
    assert [p.status_code for p in pages] == [200, 200, 200, 429]
    assert pages[3].headers["retry-after"] == "60" and "太频繁" in pages[3].text
    fields = form_fields(pages[0].text)
    posts = [phone.post(path_of(url), data=fields).status_code for _ in range(3)]
    assert posts[:2] == [303, 303] and posts[2] == 429
    web.box.close()
    web.db.close()


def test_headers_no_store_and_a_csp_without_inline_script(web: WebHq) -> None:
    """GIVEN the card, coupon and my-coupons pages
    WHEN they are fetched
    THEN each is no-store, with a CSP whose styles need this response's nonce, whose
    scripts come only from this origin, and no inline script on the page."""
    url = web.print_card()
    phone = web.client()
    _page, done = claim(web, phone, url)
    for path in (path_of(url), done.headers["location"], "/me"):  # type: ignore[attr-defined]
        r = phone.get(path, follow_redirects=True)
        csp = r.headers["content-security-policy"]
        nonce = re.search(r"'nonce-([^']+)'", csp)
        assert nonce and f'<style nonce="{nonce.group(1)}">' in r.text
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert r.headers["cache-control"] == "no-store"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert re.findall(r"<script(?![^>]*\bsrc=)", r.text) == []
    cookie = phone.get("/me").headers.get("set-cookie", "")
    assert cookie == ""  # the id was set once, on the first page
    first = web.client().get("/me").headers["set-cookie"]
    assert "httponly" in first.lower() and "samesite=lax" in first.lower()


def test_campaign_link_budget_and_per_customer_limit(web: WebHq) -> None:
    """GIVEN a link campaign with a budget of 2 coupons and 1 per customer
    WHEN one phone claims twice and two others claim once each
    THEN the first phone gets one coupon (then "already had"), the second the last
    coupon, the third "all gone"; the campaign page says so once spent."""
    now = int(time.time())
    create_campaign(web.db, Campaign("LIVE1201", CampaignKind.LINK, "双十二直播",
                                     tokens.Benefit(tokens.BenefitKind.AMOUNT_OFF, 500),
                                     now - 60, now + 3600, 7, (), False, 1, 2))
    a, b, c = web.client(), web.client(), web.client()
    page = a.get("/c/LIVE1201")
    assert page.status_code == 200 and "双十二直播" in page.text and "减5元" in page.text
    assert a.post("/c/LIVE1201", data=form_fields(page.text)).status_code == 303
    again = a.post("/c/LIVE1201", data=form_fields(a.get("/c/LIVE1201").text))
    assert again.status_code == 409 and "已领取过" in again.text
    assert b.post("/c/LIVE1201", data=form_fields(b.get("/c/LIVE1201").text)).status_code == 303
    c_fields = form_fields(c.get("/me").text)
    spent = c.post("/c/LIVE1201", data={**c_fields, "idem": "c" * 20})
    assert spent.status_code == 409 and "领完" in spent.text
    assert c.get("/c/LIVE1201").status_code == 410
    assert web.client().get("/c/NOPE").status_code == 404
    assert web.db.query("SELECT issued FROM web_campaign WHERE campaign_id='LIVE1201'") == [(2,)]


def test_my_coupons_status_follows_ingested_events(web: WebHq) -> None:
    """GIVEN a claimed coupon
    WHEN it is listed before and after the box's redemption event reaches HQ's ingest
    THEN it is "unused", then "used at 望京店 on <date>"."""
    url = web.print_card()
    phone = web.client()
    _page, done = claim(web, phone, url)
    assert "未使用" in phone.get("/me").text
    code = qr_from_page(phone.get(done.headers["location"]).text)  # type: ignore[attr-defined]
    assert web.box.counter.redeem(code).accepted
    events = [e for e in web.box.ledger.pending_events(1000)]
    assert any(e.type == EventType.DECISION for e in events)
    assert _ingest(web) == len(events)
    listed = phone.get("/me").text
    assert "已在望京店使用" in listed and "未使用" not in listed


def test_expired_coupon_is_listed_as_expired(web: WebHq) -> None:
    """GIVEN a claimed coupon whose validity has passed
    WHEN the customer lists their coupons
    THEN it says expired."""
    url = web.print_card()
    phone = web.client()
    claim(web, phone, url)
    web.db.query("UPDATE web_coupon SET valid_until=?", (int(time.time()) - 1,))
    assert "已过期" in phone.get("/me").text


def test_where_it_works_nearest_first(web: WebHq) -> None:
    """GIVEN a link coupon good at every store, two stores in Beijing and Shanghai
    WHEN its page is opened with a position in Shanghai, then in Beijing
    THEN the nearer store comes first, with its distance."""
    now = int(time.time())
    create_campaign(web.db, Campaign("ALL1", CampaignKind.LINK, "全店", tokens.Benefit(
        tokens.BenefitKind.PERCENT_PRICE, 90), now - 60, now + 3600, 7, (), False, 0, 0))
    phone = web.client()
    done = phone.post("/c/ALL1", data=form_fields(phone.get("/c/ALL1").text))
    path = done.headers["location"]
    plain = phone.get(path).text
    assert "全部门店可用" in plain and "data-near" in plain
    shanghai = phone.get(path + "?lat=31.2&lon=121.5").text
    beijing = phone.get(path + "?lat=40.0&lon=116.4").text
    assert shanghai.index("静安店") < shanghai.index("望京店") and "公里" in shanghai
    assert beijing.index("望京店") < beijing.index("静安店")


def test_phone_is_optional_and_consent_unticked(web: WebHq) -> None:
    """GIVEN the my-coupons page
    WHEN it is shown, a phone is saved without ticking consent, then a bad phone is posted
    THEN the consent box is unticked, the phone is kept with no marketing consent, and
    the bad number gets a clear error."""
    phone = web.client()
    page = phone.get("/me")
    box = re.search(r'<input type="checkbox"[^>]*>', page.text)
    assert box and "checked" not in box.group(0)
    csrf = form_fields(page.text)["csrf"]
    assert phone.post("/me/phone", data={"csrf": csrf, "phone": "13800138000"}
                      ).status_code == 303
    assert web.db.query("SELECT phone, marketing_consent, consent_at FROM web_customer") == [
        ("13800138000", 0, None)]
    bad = phone.post("/me/phone", data={"csrf": csrf, "phone": "12"})
    assert bad.status_code == 400 and "格式不正确" in bad.text


def test_no_gift_still_offers_the_group(tmp_path: Path, hq_db_url: str) -> None:
    """GIVEN a store with no welcome-gift campaign running
    WHEN its card is opened and claimed
    THEN the page says there is no gift now, links the group, and mints nothing."""
    web = make_web_hq(tmp_path, db_url=hq_db_url)
    web.db.query("DELETE FROM web_campaign")
    url = web.print_card()
    phone = web.client()
    page = phone.get(path_of(url))
    assert "暂时没有新人礼" in page.text and JOIN_URL in page.text and "<form" not in page.text
    done = phone.post(path_of(url), data={**form_fields(phone.get("/me").text), "idem": "i" * 20})
    assert done.status_code == 200 and JOIN_URL in done.text
    assert web.coupons() == [] and web.db.query("SELECT * FROM web_card_claim") == []
    web.box.close()
    web.db.close()


def test_routes_are_documented_once() -> None:
    """GIVEN the route table in hq/web/app.py
    WHEN docs/web.md is read
    THEN it lists exactly those routes."""
    doc = (Path(__file__).parents[1] / "docs" / "web.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `(?:GET|POST|GET, POST) (/[^`]*)`", doc, re.M))
    assert listed == {path for path, *_ in ROUTES}


def test_every_word_is_in_chinese_and_english() -> None:
    """GIVEN the pages' catalogue WHEN each entry is read THEN it has zh and en texts."""
    assert all(set(entry) == {"zh", "en"} and all(entry.values()) for entry in WORDS.values())


def test_a_failing_database_gets_a_busy_page_and_claims_nothing(web: WebHq) -> None:
    """GIVEN a card page opened, then HQ's coupon table failing (dropped)
    WHEN the phone claims and opens its coupons
    THEN both get the "busy, try again" page (503), and the card is still unclaimed."""
    url = web.print_card()
    phone = web.client()
    fields = form_fields(phone.get(path_of(url)).text)
    web.db.query("DROP TABLE web_coupon")
    claimed = phone.post(path_of(url), data=fields)
    assert claimed.status_code == 503 and "系统繁忙" in claimed.text
    listed = phone.get("/me")
    assert listed.status_code == 503 and "系统繁忙" in listed.text
    assert web.db.query("SELECT * FROM web_card_claim") == []


def test_one_welcome_gift_per_customer_when_the_campaign_says_so(web: WebHq) -> None:
    """GIVEN a welcome gift limited to one per customer
    WHEN one phone claims two cards
    THEN the first gives a coupon, the second says the gift was had and leaves that card
    unclaimed for someone else."""
    web.db.query("UPDATE web_campaign SET per_customer=1 WHERE campaign_id='WELCOME'")
    phone = web.client()
    first, second = web.print_card(), web.print_card()
    assert claim(web, phone, first)[1].status_code == 303  # type: ignore[attr-defined]
    _page, refused = claim(web, phone, second)
    assert refused.status_code == 409 and "已领取过" in refused.text  # type: ignore[attr-defined]
    assert len(web.coupons()) == 1
    assert claim(web, web.client(), second)[1].status_code == 303  # type: ignore[attr-defined]


def _push(web: WebHq, tmp_path: Path, broker: Broker, orders: list[dict[str, object]]) -> None:
    path = tmp_path / "orders.json"
    path.write_text(json.dumps({"orders": orders}, ensure_ascii=False), encoding="utf-8")
    assert cli_hq.main(["--home", str(web.home), "push-orders", str(path), "--store", STORE,
                        "--db", web.db_url, "--broker", url(broker)]) == 0


def _ingest(web: WebHq) -> int:
    """The box's pending events, as ingest receives them: a batch the registered box signed
    (HQ believes nothing else). How many events were new."""
    events = list(web.box.ledger.pending_events(1000))
    payload, ctype = EventBatch(STORE, DEVICE, [e.to_wire(STORE, DEVICE) for e in events]).encode()
    topic = Topics().events(STORE, DEVICE)
    out = EventStore(web.db, Topics(), DeviceRegistry(web.home)).handle(
        topic, payload, ctype,
        signature=sign_device_message(web.box.device_key, topic, ctype, payload))
    return out.new


@pytest.mark.network
def test_pickup_orders_on_their_customers_page(web: WebHq, tmp_path: Path) -> None:
    """GIVEN phones X and Y, and a box listening on its store's data topic
    WHEN HQ pushes an order naming X as its web customer, the box collects it, and HQ
    pushes X a cancelled order and one whose window has passed
    THEN the box's envelope has the order and no customer id or code; X's page lists it
    (store, number, window, items, a QR decoding to a pickup code signed for that order),
    then "collected at 望京店", then the cancelled and late ones, in Chinese and English,
    never cached; Y's page lists none of them."""
    x, y = web.client(), web.client()
    x.get("/me")
    y.get("/me")
    cid_x = x.cookies["cid"]
    broker = Broker(tmp_path / "broker")
    broker.start()
    try:
        inbox = Inbox(broker, TOPICS.data(STORE))
        _push(web, tmp_path, broker, [
            {"order_id": "W1", "number": "4321", "window_start": "now", "window_end": "+2h",
             "items": "2x 全麦面包", "web_customer": cid_x}])
        wait_until(lambda: len(inbox.messages) == 1, what="orders envelope")
        payload = inbox.messages[0].payload
        assert cid_x.encode() not in payload
        trust = parse_trust(keystore.public_keys(web.home))
        body = open_envelope(Envelope.decode(payload), trust, time.time()).body
        assert [o.order_id for o in decode_orders(body)] == ["W1"]  # the box's strict schema
        assert "web_customer" not in json.dumps(body) and "pickup_code" not in json.dumps(body)

        page = x.get("/me")
        assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
        assert '<p class="num">4321</p>' in page.text and "望京店" in page.text
        assert "2x 全麦面包" in page.text and "待取货" in page.text and "取货时间" in page.text
        code = qr_from_page(page.text, "pickup-qr-W1")
        parsed = tokens.parse(code)
        assert not isinstance(parsed, tokens.FormatError)
        pickup = parsed.token
        assert isinstance(pickup, tokens.Pickup)
        assert (pickup.order_id, pickup.store_id, pickup.number) == ("W1", STORE, "4321")
        assert "4321" not in y.get("/me").text and "pickup-qr" not in y.get("/me").text

        assert web.box.counter.redeem(code).accepted  # the till scans the phone's QR
        _ingest(web)
        collected = x.get("/me").text
        assert "已在望京店取货" in collected and "pickup-qr-W1" not in collected
        x_in_english = web.client("en")
        x_in_english.cookies.set("cid", cid_x)
        assert "Collected at 望京店" in x_in_english.get("/me").text

        _push(web, tmp_path, broker, [
            {"order_id": "W2", "number": "5555", "window_start": "now", "window_end": "+1h",
             "status": "cancelled", "web_customer": cid_x},
            {"order_id": "W3", "number": "6666", "window_start": 1, "window_end": 2,
             "web_customer": cid_x}])
        wait_until(lambda: len(inbox.messages) == 2, what="second orders envelope")
        inbox.close()
    finally:
        broker.stop()
    mine = x.get("/me").text
    w2 = mine[mine.index('id="order-W2"'):]
    assert "已取消" in w2[:w2.index("</div>")]
    w3 = mine[mine.index('id="order-W3"'):]
    assert "已过取货时间" in w3[:w3.index("</div>")]
    assert "5555" not in y.get("/me").text


def test_bad_web_fields_of_an_order_are_refused_before_anything_is_kept(web: WebHq) -> None:
    """GIVEN orders naming a web customer badly, or with another order's pickup code
    WHEN the orders file is read and pushed
    THEN each is refused with a message naming the order, and nothing is recorded."""
    bad_id = {"orders": [{"order_id": "B1", "number": "1234", "window_start": 1,
                          "window_end": 2, "web_customer": "short"}]}
    with pytest.raises(BodyError, match="order 'B1': web_customer"):
        web_links_from_body(bad_id)
    key = keystore.signing_key(web.home, Purpose.PICKUP)
    other = sign_token(key, tokens.Pickup(key.key_id, "B9", STORE, "9999", 1, 2, "", ""))
    body = {"orders": [{"order_id": "B2", "number": "1234", "window_start": 1,
                        "window_end": 2, "web_customer": "x" * 20, "pickup_code": other}]}
    orders, links = orders_from_body(body), web_links_from_body(body)
    with pytest.raises(BodyError, match="order 'B2': pickup_code is for order B9"):
        push_orders(web.db, BrokerOptions(host="127.0.0.1", port=1), key, STORE, orders, links)
    assert web.db.query("SELECT COUNT(*) FROM web_order") == [(0,)]
    assert web.db.query("SELECT COUNT(*) FROM hq_order") == [(0,)]
