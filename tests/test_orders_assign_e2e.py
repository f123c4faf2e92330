"""`edge-hq orders assign` from JSON lines to the till: the store registry, assignment,
pickup codes, the push over a real broker, and the real daemon of the assigned store."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from cli import hq as hq_cli
from edge.box import init_home
from edge.keys import Purpose, TrustedKey
from edged.localapi import Client
from hq.issuing import keystore
from tests.daemon_fixtures import running
from tests.hq_support import Hq, hq_fixture, url  # noqa: F401  (fixture)
from tests.stores_hangzhou import registry_toml

pytestmark = pytest.mark.network

STORE, DEVICE = "HZ02-WULIN", "HZ02-WULIN-T1"
WULIN = (30.2745, 120.1640)  # a street from the Wulin Square store
SHANGHAI = (31.2304, 121.4737)


def _box_home(tmp_path: Path, hq_home: Path, port: int) -> Path:
    """The Wulin store's box, trusting HQ's data key (orders) and pickup key (codes)."""
    keys = [TrustedKey(k.key_id, k.public_key, frozenset({p})) for k, p in (
        (keystore.signing_key(hq_home, Purpose.DATA), Purpose.DATA),
        (keystore.signing_key(hq_home, Purpose.PICKUP), Purpose.PICKUP))]
    home = tmp_path / "box"
    init_home(home, STORE, DEVICE, keys, store_name="武林店")
    with (home / "edge.toml").open("a", encoding="utf-8") as f:
        f.write(f'\n[mqtt]\nhost = "127.0.0.1"\nport = {port}\nbackoff_min_s = 0.1\n'
                "backoff_max_s = 0.5\nconnect_timeout_s = 2.0\n")
    return home


def _orders(path: Path) -> Path:
    """Two orders at Wulin for this hour (one place there), a bad line, one in Shanghai."""
    start = int(time.time()) // 3600 * 3600  # this hour: within a day, open all day
    base = {"window_start": start, "window_end": start + 3600, "items": "2x 全麦面包"}
    lines = [json.dumps({"order_id": "LS-1", "lat": WULIN[0], "lon": WULIN[1],
                         "number": "4321", "customer": "王*", **base}, ensure_ascii=False),
             json.dumps({"order_id": "LS-2", "lat": WULIN[0], "lon": WULIN[1], **base}),
             '{"order_id": "LS-3", "lat": 30.27}',
             json.dumps({"order_id": "LS-4", "lat": SHANGHAI[0], "lon": SHANGHAI[1], **base})]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _json_lines(out: str) -> list[dict[str, Any]]:
    """The command's output lines (the daemon in this process prints lines of its own)."""
    return [json.loads(x) for x in out.splitlines() if x.startswith('{"line"')]


async def _until_online(client: Client) -> None:
    async with asyncio.timeout(20):
        while not (await client.request("status"))["online"]:
            await asyncio.sleep(0.05)


async def _until_order(client: Client, order_id: str) -> dict[str, Any]:
    async with asyncio.timeout(20):
        while True:
            got = {o["order_id"]: o for o in (await client.request("pickups"))["orders"]}
            if order_id in got:
                return got[order_id]
            await asyncio.sleep(0.05)


async def test_json_lines_are_assigned_pushed_and_collected_at_the_till(
        tmp_path: Path, hq: Hq, capsys: pytest.CaptureFixture[str]) -> None:
    """GIVEN the twenty Hangzhou stores imported with one pickup place per slot, and the
    Wulin store's real daemon online over a real broker
    WHEN `edge-hq orders assign` reads two orders at Wulin, a bad line and one from Shanghai
    THEN the first goes to Wulin (tens of metres), the second to the next nearest, line 3
    is a bad line, Shanghai has no store in range, exit 1; the Wulin box receives its order
    and the cashier's scan of its pickup code is accepted once, the other store's code is
    refused there as for another store; WHEN the same file runs again THEN every order is
    a repeat (same store and code), nothing new is pushed or placed."""
    hq_home = tmp_path / "hq"
    keystore.create_key(hq_home, "HQD", [Purpose.DATA])
    keystore.create_key(hq_home, "HQP", [Purpose.PICKUP])
    common = ["--db", hq.db_url, "--broker", url(hq.broker)]
    registry = registry_toml(tmp_path / "stores.toml", places=1, hours="00:00-24:00")
    assert hq_cli.main(["--home", str(hq_home), "store", "import", str(registry),
                        "--db", hq.db_url]) == 0
    orders = _orders(tmp_path / "orders.jsonl")
    assign = ["--home", str(hq_home), "orders", "assign", str(orders), *common]
    capsys.readouterr()
    async with running(_box_home(tmp_path, hq_home, hq.broker.port)) as r:
        await _until_online(r.client)
        assert await asyncio.to_thread(hq_cli.main, assign) == 1
        out = _json_lines(capsys.readouterr().out)
        one, two, bad, far = out
        assert (one["store"], one["number"], one["pushed"]) == (STORE, "4321", True)
        assert one["distance_m"] < 100 and not one["repeat"]
        assert two["outcome"] == "assigned" and two["store"] != STORE and two["pushed"]
        assert (bad["line"], bad["outcome"]) == (3, "bad_line") and "missing" in bad["error"]
        assert far["outcome"] == "no_store_in_range" and "store" not in far
        assert far["reason"].startswith("no store within range")

        order = await _until_order(r.client, "LS-1")
        assert order["number"] == "4321" and order["customer"] == "王*"
        till = await r.client.request("scan", code=one["pickup_code"])
        assert till["accepted"] and till["kind"] == "pickup"
        twice = await r.client.request("scan", code=one["pickup_code"])
        assert twice["reason"] == "already_collected"
        elsewhere = await r.client.request("scan", code=two["pickup_code"])
        assert elsewhere["reason"] == "wrong_store"

    versions = hq.count("SELECT COUNT(*) FROM hq_version WHERE kind='orders'")
    assert await asyncio.to_thread(hq_cli.main, assign) == 1
    again = _json_lines(capsys.readouterr().out)
    assert [(a["store"], a["pickup_code"], a["repeat"]) for a in again[:2]] == [
        (one["store"], one["pickup_code"], True), (two["store"], two["pickup_code"], True)]
    assert hq.count("SELECT COUNT(*) FROM hq_version WHERE kind='orders'") == versions == 2
    assert hq.count("SELECT COUNT(*) FROM hq_assignment") == 2
