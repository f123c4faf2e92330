"""The daemon's printer part on the simulated file printer: bytes parsed back, QR decoded."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pyzbar import pyzbar

from drivers.escpos_decode import decode, qr_symbol
from edged.localapi import Client
from provisioning.dev import samples
from tests.daemon_fixtures import make_home, next_event, running, wait_scanner, write_scanner


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return make_home(tmp_path)


async def printer_settles(client: Client, waiting: int, state: str = "ready",
                          timeout: float = 30) -> dict[str, Any]:
    """Poll status until the printer reports ``state`` with ``waiting`` jobs."""
    async with asyncio.timeout(timeout):
        while True:
            p: dict[str, Any] = (await client.request("status"))["printer"]
            if p.get("printer_state") == state and p["jobs_waiting"] == waiting:
                return p
            await asyncio.sleep(0.05)


async def test_print_card_prints_chinese_and_a_decodable_qr(home: Path) -> None:
    """GIVEN the daemon with its simulated file printer (58 mm, GB18030)
    WHEN a packaging card is asked through the API
    THEN the job prints: the bytes decode to the store name, the headline 扫码入群 领新人礼
    (wrapped at double size) and the gift line, one cut, and a QR whose symbol pyzbar
    reads as the card's URL."""
    async with running(home) as r:
        card = await r.client.request("print_card", receipt_ref="R-42")
        await printer_settles(r.client, 0)
    printed = decode((home / "printer-sim.bin").read_bytes(), "gb18030")
    lines = [line.text for line in printed.lines]
    assert "望京店" in lines and "扫码入群" in lines and "领新人礼" in lines  # double size wraps
    assert "新人礼: 到店免费咖啡一杯" in printed.text and f"{card['serial']}" in printed.text
    assert printed.cuts == 1 and len(printed.qr_codes) == 1
    qr = printed.qr_codes[0]
    assert qr.data == card["url"]
    found = pyzbar.decode(qr_symbol(qr.data, qr.module_dots, qr.ecc).convert("L"))
    assert [f.data.decode() for f in found] == [card["url"]]


async def test_no_paper_never_blocks_a_redemption_and_the_slip_prints_later(
        home: Path) -> None:
    """GIVEN redemption slips switched on and the simulated printer out of paper
    WHEN a coupon is scanned on the serial line
    THEN the verdict arrives at once, status says no_paper with 1 job waiting, and once the
    paper is back the slip prints (its title and the decision number are on paper) and
    the queue is empty."""
    with (home / "edge.toml").open("a") as f:
        f.write("\n[printer]\nredemption_slip = true\n")
    state = home / "printer-sim.bin.state"
    state.write_text("no_paper")
    coupon = samples(home)["coupons"][0]
    async with running(home) as r:
        await r.client.subscribe()
        await printer_settles(r.client, 0, "no_paper")
        await wait_scanner(r.client)
        write_scanner(home, coupon.encode() + b"\n")
        verdict = await next_event(r.client, "verdict")
        waiting = await printer_settles(r.client, 1, "no_paper")
        state.unlink()
        await printer_settles(r.client, 0)
    assert verdict["accepted"] is True
    assert waiting["state"] == "failed"
    printed = decode((home / "printer-sim.bin").read_bytes(), "gb18030")
    assert "核销凭证" in printed.text and str(verdict["decision_id"]) in printed.text


async def test_reprint_and_report_slips(home: Path) -> None:
    """GIVEN a card printed and a pickup collected
    WHEN the last job is reprinted and the day report printed
    THEN the paper holds the card's QR twice (the reprint is a new job) and a report slip
    with the day's figures."""
    async with running(home) as r:
        card = await r.client.request("print_card")
        await printer_settles(r.client, 0)
        again = await r.client.request("reprint", count=1)
        await r.client.request("scan", code=samples(home)["pickups"][0]["number"])
        rep = await r.client.request("print_report")
        await printer_settles(r.client, 0)
    assert again["job_ids"] and again["job_ids"][0] != card["job_id"] and rep["job_id"]
    printed = decode((home / "printer-sim.bin").read_bytes(), "gb18030")
    assert [q.data for q in printed.qr_codes] == [card["url"], card["url"]]
    assert "营业报表" in printed.text and "pickups_collected: 1" in printed.text
    assert printed.cuts == 3


async def test_sale_prints_a_card_only_when_configured(home: Path) -> None:
    """GIVEN card_after_sale switched on in [printer]
    WHEN the till signals a sale with a receipt reference
    THEN a card is minted and printed (its QR on paper is the returned URL); with the
    setting off, a sale prints nothing."""
    async with running(home) as r:
        off = await r.client.request("sale", receipt_ref="R-1")
    with (home / "edge.toml").open("a") as f:
        f.write("\n[printer]\ncard_after_sale = true\n")
    async with running(home) as r:
        on = await r.client.request("sale", receipt_ref="R-2")
        await printer_settles(r.client, 0)
    assert off == {"card": None}
    assert on["card"]["job_id"] and on["card"]["serial"] == 1
    printed = decode((home / "printer-sim.bin").read_bytes(), "gb18030")
    assert [q.data for q in printed.qr_codes] == [on["card"]["url"]]
