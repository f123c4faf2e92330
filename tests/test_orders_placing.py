"""Orders from JSON lines placed for good (hq/orders/intake.py, hq/orders/placing.py):
the registry's twenty Hangzhou stores, places kept in HQ's database across runs."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from edge import tokens
from edge.keys import Purpose, SigningKey, TrustedKey
from hq.broker import BrokerOptions
from hq.db import Database
from hq.geo import great_circle_m
from hq.orders.intake import MAX_LINE, BadLine, OrderLine, read_orders
from hq.orders.placing import Placed, place, push_placed
from hq.publishing.push import read_body
from hq.storeregistry import import_stores, stores_from_body
from provisioning.localbroker import Broker, free_port
from sync.contract import Envelope, decode_orders, open_envelope
from tests.hq_support import TOPICS, Inbox, wait_until
from tests.stores_hangzhou import HANGZHOU, registry_toml

TZ = ZoneInfo("Asia/Shanghai")
MON_10 = int(datetime(2026, 12, 7, 10, 0, tzinfo=TZ).timestamp())
TUE_10 = MON_10 + 86400
WEST_LAKE = (30.2586, 120.1493)
SHANGHAI = (31.2304, 121.4737)
KEY = SigningKey.generate("HQP")
DATA = SigningKey.generate("HQD")


def line(oid: str, at: tuple[float, float] = WEST_LAKE, start: int = TUE_10,
         hours: float = 1.0, **more: Any) -> str:
    return json.dumps({"order_id": oid, "lat": at[0], "lon": at[1], "window_start": start,
                       "window_end": start + int(hours * 3600), "items": "2x 全麦面包",
                       } | more, ensure_ascii=False)


def write(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def db(tmp_path: Path, hq_db_url: str) -> Any:
    """HQ's database holding the twenty stores, one place per slot, XIHU shut on Mondays."""
    d = Database(hq_db_url)
    import_stores(d, stores_from_body(read_body(registry_toml(tmp_path / "stores.toml", places=1))))
    yield d
    d.close()


def run(db: Database, path: Path, max_m: float = 15_000) -> dict[int, Placed]:
    return {p.line: p for p in place(db, list(read_orders(path)), KEY, max_m)}


def test_each_line_gets_its_store_and_distance_or_its_own_reason(db: Database,
                                                                 tmp_path: Path) -> None:
    """GIVEN a file of good orders and bad lines (not JSON, a misspelt field, no position,
    a window given as text, an id twice, a 100 KB line, a blank line)
    WHEN it is placed THEN each good order gets a store, its distance and a pickup code
    signed for that order at that store; Monday's goes past the closed West Lake store;
    Shanghai is out of range; a window at 23:00 finds all closed; each bad line is reported
    with its number and reason, and the lines after it are still placed."""
    path = write(tmp_path / "o.jsonl",
                 line("T1"),                                            # 1
                 line("M1", start=MON_10),                              # 2
                 "{not json",                                           # 3
                 line("SH", at=SHANGHAI),                               # 4
                 line("LATE", start=TUE_10 + 13 * 3600, hours=0.5),     # 5
                 json.dumps({"order_id": "X1", "lat": 30.2, "lng": 120.1,
                             "window_start": 1, "window_end": 2}),      # 6
                 "",                                                    # 7 (blank)
                 json.dumps({"order_id": "X2", "window_start": 1, "window_end": 2}),  # 8
                 line("T1"),                                            # 9 (again)
                 '{"order_id": "BIG", "items": "' + "x" * MAX_LINE + '"}',  # 10
                 json.dumps({"order_id": "ISO", "lat": WEST_LAKE[0], "lon": WEST_LAKE[1],
                             "window_start": "2026-12-08T11:00:00+08:00",
                             "window_end": "2026-12-08T11:30:00+08:00"}),  # 11
                 )
    got = run(db, path)
    t1 = got[1]
    assert (t1.outcome, t1.store, t1.slot) == ("assigned", "HZ01-XIHU", TUE_10)
    assert t1.distance_m is not None and 30 < t1.distance_m < 100
    token = tokens.parse(str(t1.code))
    assert not isinstance(token, tokens.FormatError)
    pickup = token.token
    assert isinstance(pickup, tokens.Pickup)
    assert (pickup.order_id, pickup.store_id, pickup.number, pickup.items) == (
        "T1", "HZ01-XIHU", t1.number, "2x 全麦面包")
    assert got[2].store == "HZ15-HUBIN"  # West Lake is shut on Mondays
    assert got[4].outcome == "no_store_in_range"
    assert got[5].outcome == "none_open"
    assert (got[3].outcome, got[3].line) == ("bad_line", 3) and "not JSON" in got[3].error
    assert "unknown field(s) ['lng']" in got[6].error
    assert 7 not in got and "missing lat, lon" in got[8].error
    assert got[9].outcome == "bad_line" and "already on line 1" in got[9].error
    assert "longer than" in got[10].error
    assert got[11].outcome == "assigned" and got[11].slot == TUE_10 + 3600


def test_places_are_used_up_across_runs_and_an_order_is_placed_once(db: Database,
                                                                    tmp_path: Path) -> None:
    """GIVEN one place per store and slot
    WHEN three orders at West Lake take Tuesday 10:00, and a second run brings two more and
    the first order again THEN the first run fills West Lake, Hubin, Huanglong; the second
    continues past them, and the first order is a repeat with the same store, number and
    code, taking no second place."""
    first = run(db, write(tmp_path / "a.jsonl", *(line(f"A{i}") for i in range(3))))
    assert [first[n].store for n in (1, 2, 3)] == ["HZ01-XIHU", "HZ15-HUBIN",
                                                  "HZ16-HUANGLONG"]
    second = run(db, write(tmp_path / "b.jsonl", line("B0"), line("A0"), line("B1")))
    assert second[1].store not in {"HZ01-XIHU", "HZ15-HUBIN", "HZ16-HUANGLONG"}
    assert second[3].store not in {"HZ01-XIHU", "HZ15-HUBIN", "HZ16-HUANGLONG",
                                   second[1].store}
    again = second[2]
    assert again.repeat and (again.store, again.number, again.code) == (
        first[1].store, first[1].number, first[1].code)
    rows = db.query("SELECT store, COUNT(*) FROM hq_assignment GROUP BY store")
    assert len(rows) == 5 and all(n == 1 for _s, n in rows)


def test_when_every_store_in_range_is_full_the_order_says_so(db: Database,
                                                             tmp_path: Path) -> None:
    """GIVEN one place per store and a 2.5 km range around West Lake
    WHEN one more order comes than there are stores in range
    THEN the last is all_full."""
    in_range = sum(great_circle_m(*WEST_LAKE, lat, lon) <= 2500 for _s, lat, lon in HANGZHOU)
    assert in_range >= 3
    got = run(db, write(tmp_path / "o.jsonl", *(line(f"F{i}") for i in range(in_range + 1))),
              max_m=2500)
    assert [got[n].outcome for n in sorted(got)] == ["assigned"] * in_range + ["all_full"]


def test_two_runs_at_once_never_give_a_place_twice(tmp_path: Path, hq_db_url: str,
                                                   db: Database) -> None:
    """GIVEN one place per store and slot, and two runs on their own connections
    WHEN both place ten orders at West Lake for the same slot at the same moment
    THEN no store's slot holds two orders, and every order is placed or all_full."""
    results: list[list[Placed]] = []
    start = threading.Barrier(2)

    def racer(tag: str) -> None:
        own = Database(hq_db_url)
        try:
            lines = list(read_orders(write(tmp_path / f"{tag}.jsonl",
                                           *(line(f"{tag}{i}") for i in range(10)))))
            start.wait()
            results.append(place(own, lines, KEY, 6000))
        finally:
            own.close()

    threads = [threading.Thread(target=racer, args=(t,)) for t in ("R", "S")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 2
    outcomes = [p.outcome for r in results for p in r]
    assert set(outcomes) <= {"assigned", "all_full"} and "all_full" in outcomes
    rows = db.query("SELECT store, slot, COUNT(*) FROM hq_assignment GROUP BY store, slot")
    assert rows and all(n == 1 for _s, _slot, n in rows)
    assert len(rows) == outcomes.count("assigned")


def test_reading_lines_is_bounded_and_keeps_numbers(tmp_path: Path) -> None:
    """GIVEN invalid UTF-8, deep nesting, an array, a bad web customer and a bad number
    WHEN read THEN each is a bad line with its number; the good line after them is read."""
    path = tmp_path / "o.jsonl"
    path.write_bytes(b'{"order_id": "\xff"}\n' + b"[" * 50 + b"]" * 50 + b"\n[1]\n"
                     + line("W", web_customer="short").encode() + b"\n"
                     + line("N", number="12").encode() + b"\n"
                     + line("OK", customer="李*", number="0042").encode() + b"\n")
    got = list(read_orders(path))
    bad = [g for g in got if isinstance(g, BadLine)]
    assert [b.line for b in bad] == [1, 2, 3, 4, 5]
    assert "not JSON" in bad[0].error and "deeper" in bad[1].error
    assert "not a JSON object" in bad[2].error and "web_customer" in bad[3].error
    assert bad[4].order_id == "N" and "3-8 digits" in bad[4].error
    (ok,) = [g for g in got if isinstance(g, OrderLine)]
    assert (ok.line, ok.order.number, ok.order.customer) == (6, "0042", "李*")


@pytest.mark.network
def test_a_failed_push_keeps_the_place_and_the_next_run_pushes_it(db: Database,
                                                                  tmp_path: Path) -> None:
    """GIVEN an order placed while the broker is unreachable
    WHEN the push fails THEN the order keeps its place and says why it is not pushed;
    WHEN the file runs again with the broker up THEN the same order (a repeat, same code)
    is pushed, and the store's box receives it."""
    path = write(tmp_path / "o.jsonl", line("P1"))
    first = push_placed(db, BrokerOptions(host="127.0.0.1", port=free_port()), DATA,
                        list(run(db, path).values()))
    assert not first[0].pushed and "cannot reach broker" in first[0].push_error
    assert db.query("SELECT store, pushed_at FROM hq_assignment") == [("HZ01-XIHU", None)]
    broker = Broker(tmp_path / "broker")
    broker.start()
    try:
        inbox = Inbox(broker, TOPICS.data("HZ01-XIHU"))
        again = push_placed(db, BrokerOptions(host=broker.host, port=broker.port), DATA,
                            list(run(db, path).values()))
        assert again[0].pushed and again[0].repeat and again[0].code == first[0].code
        wait_until(lambda: len(inbox.messages) == 1, what="the store's orders")
        body = open_envelope(Envelope.decode(inbox.messages[0].payload),
                             [TrustedKey(DATA.key_id, DATA.public_key,
                                         frozenset({Purpose.DATA}))], time.time()).body
        assert [o.order_id for o in decode_orders(body)] == ["P1"]
        inbox.close()
    finally:
        broker.stop()
    (pushed_at,), = db.query("SELECT pushed_at FROM hq_assignment")
    assert pushed_at is not None


def test_an_order_that_cannot_be_a_pickup_code_is_a_bad_line_and_takes_no_place(
        db: Database, tmp_path: Path) -> None:
    """GIVEN one place per slot, and orders that cannot be pickup codes: items over 64
    bytes, fields that together need a QR over version 10 (what a till camera reads off a
    phone); then an order of normal size
    WHEN placed THEN each of the first two is a bad line saying why, and the last takes
    the West Lake place they would have taken."""
    got = run(db, write(tmp_path / "o.jsonl",
                        line("LONG", items="全麦面包蛋糕吐司" * 3),
                        line("O" * 63, items="全" * 21, customer="李" * 21,
                             number="12345678"),
                        line("SHORT")))
    assert "over 64 bytes" in got[1].error and "QR version 13, over 10" in got[2].error
    assert {got[n].outcome for n in (1, 2)} == {"bad_line"}
    assert (got[3].outcome, got[3].store) == ("assigned", "HZ01-XIHU")
    assert db.query("SELECT order_id FROM hq_assignment") == [("SHORT",)]


def test_a_codes_qr_version_measured_by_its_length_is_never_too_small() -> None:
    """GIVEN pickup codes of many lengths (items from none to 64 bytes)
    WHEN their QR version is taken from their length (as sign_pickup does)
    THEN it is never below the version of the QR actually built, and equal to it past
    version 10, where a code is refused."""
    from edge.qrfit import CODE_MAX_VERSION, qr_version
    from hq.web.orders import _code_version
    from sync.contract import OrderUpdate

    for n in range(0, 65, 4):
        order = OrderUpdate("O" * (n % 40 + 1), "123456", TUE_10, TUE_10 + 3600, "x" * n,
                            "李" * (n // 4))
        code = tokens.assemble(tokens.Pickup(KEY.key_id, order.order_id, "HZ01-XIHU",
                                             order.number, order.window_start,
                                             order.window_end, order.items, order.customer),
                               KEY.sign(b"x"))
        built = qr_version(code)
        assert _code_version(code) >= built
        if built > CODE_MAX_VERSION:
            assert _code_version(code) == built
