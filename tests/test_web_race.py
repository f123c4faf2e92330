"""Claims under concurrency, over real HTTP to two workers: one card, one budget."""

from __future__ import annotations

import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2

from edge import tokens
from hq.db import Database
from hq.web.app import WebSettings, build_app
from hq.web.campaigns import Campaign, CampaignKind, create_campaign
from tests.web_support import form_fields, make_web_hq, path_of, serving

RACERS = 50


def test_fifty_phones_race_for_one_card_one_coupon(tmp_path: Path, hq_db_url: str) -> None:
    """GIVEN a printed card and two web workers (each its own database connection) on uvicorn
    WHEN 50 phones, each with its own cookie, open the card and then post the claim at once
    THEN exactly one gets the coupon (303), the other 49 are told it is taken (409), and
    HQ's database holds one claim and one coupon."""
    web = make_web_hq(tmp_path, db_url=hq_db_url)
    url = web.print_card()
    second_db = Database(web.db_url)
    second = build_app(WebSettings(web.home, "", claim_limit=1000, check_limit=1000), second_db)
    with serving(web.app) as base_a, serving(second) as base_b:
        phones = [httpx2.Client(base_url=base_a if i % 2 else base_b, timeout=30)
                  for i in range(RACERS)]
        forms = [form_fields(p.get(path_of(url)).text) for p in phones]
        start = threading.Barrier(RACERS)

        def race(i: int) -> int:
            start.wait()
            return phones[i].post(path_of(url), data=forms[i]).status_code

        with ThreadPoolExecutor(RACERS) as pool:
            codes = list(pool.map(race, range(RACERS)))
        for p in phones:
            p.close()
    assert sorted(codes) == [303] + [409] * (RACERS - 1)
    assert len(web.coupons()) == 1
    assert web.db.query("SELECT COUNT(*) FROM web_card_claim") == [(1,)]
    second_db.close()
    web.box.close()
    web.db.close()


def test_budget_and_per_customer_limit_hold_under_a_race(tmp_path: Path, hq_db_url: str) -> None:
    """GIVEN a link campaign with a budget of 10 and 2 per customer, two web workers
    WHEN 30 phones each post 3 claims at once (fresh idempotency keys: 90 tries)
    THEN exactly 10 coupons are minted, no phone has more than 2, and the campaign counts 10."""
    web = make_web_hq(tmp_path, db_url=hq_db_url)
    now = int(time.time())
    create_campaign(web.db, Campaign("LIVE", CampaignKind.LINK, "直播", tokens.Benefit(
        tokens.BenefitKind.AMOUNT_OFF, 500), now - 60, now + 3600, 7, (), False, 2, 10))
    second_db = Database(web.db_url)
    second = build_app(WebSettings(web.home, "", claim_limit=1000, check_limit=1000), second_db)
    phones_n, tries = 30, 3
    with serving(web.app) as base_a, serving(second) as base_b:
        phones = [httpx2.Client(base_url=base_a if i % 2 else base_b, timeout=30)
                  for i in range(phones_n)]
        csrf = [form_fields(p.get("/c/LIVE").text)["csrf"] for p in phones]
        start = threading.Barrier(phones_n * tries)

        def race(i: int) -> int:
            phone = i % phones_n
            start.wait()
            return phones[phone].post("/c/LIVE", data={
                "csrf": csrf[phone], "idem": secrets.token_urlsafe(16)}).status_code

        with ThreadPoolExecutor(phones_n * tries) as pool:
            codes = list(pool.map(race, range(phones_n * tries)))
        for p in phones:
            p.close()
    assert codes.count(303) == 10 and codes.count(409) == phones_n * tries - 10
    per_phone = web.db.query("SELECT customer, COUNT(*) FROM web_coupon GROUP BY customer")
    assert sum(n for _c, n in per_phone) == 10 and max(n for _c, n in per_phone) <= 2
    assert web.db.query("SELECT issued FROM web_campaign WHERE campaign_id='LIVE'") == [(10,)]
    second_db.close()
    web.box.close()
    web.db.close()
