"""Claims under concurrency: 50 phones race for one card over real HTTP, two workers."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2

from hq.db import Database
from hq.web.app import WebSettings, build_app
from tests.web_support import form_fields, make_web_hq, path_of, serving

RACERS = 50


def test_fifty_phones_race_for_one_card_one_coupon(tmp_path: Path) -> None:
    """GIVEN a printed card and two web workers (each its own database connection) on uvicorn
    WHEN 50 phones, each with its own cookie, open the card and then post the claim at once
    THEN exactly one gets the coupon (303), the other 49 are told it is taken (409), and
    HQ's database holds one claim and one coupon."""
    web = make_web_hq(tmp_path)
    url = web.print_card()
    second_db = Database(f"sqlite:///{web.home / 'hq.sqlite'}")
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
