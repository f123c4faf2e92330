"""The daemon's local API, driven over its real Unix socket with edged.localapi.Client."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest

from edge.verdict import Reason
from edged.localapi import MAX_LINE, ApiError, Client, ErrorCode
from provisioning.dev import samples
from tests.daemon_fixtures import make_home, next_event, running, wait_scanner, write_scanner


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return make_home(tmp_path)


async def raw_exchange(path: Path, payload: bytes, lines: int) -> list[bytes]:
    reader, writer = await asyncio.open_unix_connection(str(path), limit=MAX_LINE * 2)
    writer.write(payload)
    await writer.drain()
    out = [await asyncio.wait_for(reader.readline(), 10) for _ in range(lines)]
    writer.close()
    return out


async def test_scan_via_api_returns_recorded_verdict_and_event(home: Path) -> None:
    """GIVEN a running daemon and a subscribed client
    WHEN another client scans a sample coupon twice through the API
    THEN the first is accepted with a decision id, the second rejected as already used,
    and the subscriber gets both verdict events with source and till."""
    coupon = samples(home)["coupons"][0]
    async with running(home) as r:
        sub = await r.connect()
        await sub.subscribe()
        first = await r.client.request("scan", code=coupon, till="T9", source="keyboard")
        second = await r.client.request("scan", code=coupon, till="T9", source="keyboard")
        ev1 = await next_event(sub, "verdict")
        ev2 = await next_event(sub, "verdict")
        await sub.close()
    assert first["accepted"] is True and isinstance(first["decision_id"], int)
    assert second["accepted"] is False and second["reason"] == Reason.ALREADY_USED_HERE
    assert (ev1["decision_id"], ev1["source"], ev1["till"]) == (first["decision_id"],
                                                                "keyboard", "T9")
    assert ev2["decision_id"] == second["decision_id"]


async def test_scan_via_pty_scanner_reaches_subscriber(home: Path) -> None:
    """GIVEN the simulated scanner at <home>/run/scanner
    WHEN a coupon is written with CRLF, then line noise (invalid UTF-8), then a shelf EAN-13
    THEN the subscriber sees an accepted serial verdict, the noise is dropped by the driver
    (counted in status, no decision), and the EAN-13 is a bad_format rejection; both
    decisions are in the ledger (recent)."""
    coupon = samples(home)["coupons"][1]
    async with running(home) as r:
        await r.client.subscribe()
        await wait_scanner(r.client)
        write_scanner(home, coupon.encode() + b"\r\n")
        ok = await next_event(r.client, "verdict")
        write_scanner(home, b"\xff\xfe garbage\n")
        write_scanner(home, b"6901234567892\n")
        bad = await next_event(r.client, "verdict")
        recent = (await r.client.request("recent", limit=5))["decisions"]
        scanner = (await r.client.request("status"))["scanner"]
    assert scanner["dropped"] == 1 and scanner["last_drop"] == "invalid_text"
    assert ok["accepted"] is True and ok["source"].startswith("serial:")
    assert ok["facts"]["coupon_id"] == "DEMO-00001"
    assert bad["accepted"] is False and bad["reason"] == Reason.BAD_FORMAT
    assert [d["decision_id"] for d in recent[:2]] == [bad["decision_id"], ok["decision_id"]]


async def test_bad_frames_get_errors_and_daemon_keeps_serving(home: Path) -> None:
    """GIVEN a running daemon
    WHEN one connection sends a 10 MB line, invalid UTF-8, non-JSON, a JSON list, an
    unknown op and a scan with a wrong argument type
    THEN each gets a bad_request error on the same connection, which then still answers
    a status request; another client is served too."""
    async with running(home) as r:
        path = r.daemon.cfg.socket_path
        payload = (b"x" * (10 * 1024 * 1024) + b"\n" + b'{"id":1,"op":"st\xffatus"}\n'
                   + b"not json\n" + b"[1,2]\n" + b'{"id":2,"op":"fly"}\n'
                   + b'{"id":3,"op":"scan","args":{"code":5}}\n'
                   + b'{"id":4,"op":"status"}\n')
        lines = await raw_exchange(path, payload, 7)
        status = await r.client.request("status")
    import json

    replies = [json.loads(x) for x in lines]
    errors = replies[:6]
    assert all(not e["ok"] and e["error"]["code"] == ErrorCode.BAD_REQUEST for e in errors)
    assert "over" in errors[0]["error"]["message"]
    assert "fly" in errors[4]["error"]["message"]
    assert "code" in errors[5]["error"]["message"] and errors[5]["id"] == 3
    assert replies[6]["ok"] and replies[6]["id"] == 4
    assert replies[6]["result"]["store_id"] == "BJ001"
    assert status["device_id"] == "BJ001-T1"


async def test_slow_subscriber_is_dropped_without_blocking_others(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """GIVEN a subscriber that never reads and one that does (per-client queue of 16 frames)
    WHEN 1500 scans are made through the API
    THEN the API answers every scan, the reading subscriber gets all 1500 verdicts, and the
    daemon dropped the stalled one (its connection is closed by the daemon)."""
    from edged import apiserver

    monkeypatch.setattr(apiserver, "QUEUE_FRAMES", 16)
    n = 1500
    async with running(home) as r:
        reader, writer = await asyncio.open_unix_connection(str(r.daemon.cfg.socket_path))
        writer.write(b'{"id":1,"op":"subscribe"}\n')
        await writer.drain()
        good = await r.connect()
        await good.subscribe()
        for i in range(n):
            await r.client.request("scan", code=f"BAD-{i}-" + "x" * 200)
        seen = 0
        while seen < n:
            ev = await next_event(good, "verdict")
            seen += 1
        assert ev["facts"]["input"].startswith(f"BAD-{n - 1}-")
        assert r.daemon.api.subscribers == 1
        data = await asyncio.wait_for(reader.read(), 10)  # EOF once dropped
        assert 0 < len(data) < n * 200
        writer.close()
        await good.close()


async def test_socket_is_group_only(home: Path) -> None:
    """GIVEN a running daemon WHEN its socket is inspected THEN it is a socket with mode 0660."""
    async with running(home) as r:
        st = os.stat(r.daemon.cfg.socket_path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660


async def test_missing_scanner_port_fails_alone(home: Path) -> None:
    """GIVEN a scanner configured at a path that does not exist
    WHEN the daemon runs
    THEN the scanner part is reported failed with the path, and scans through the API
    still get recorded verdicts."""
    coupon = samples(home)["coupons"][2]
    over = {"scanner": {"port": str(home / "no-such-tty")}}
    async with running(home, overrides=over) as r:
        for _ in range(100):
            st = await r.client.request("status")
            if st["scanner"]["state"] == "failed":
                break
            await asyncio.sleep(0.05)
        v = await r.client.request("scan", code=coupon)
    assert st["scanner"]["state"] == "failed"
    assert "no-such-tty" in st["scanner"]["detail"]
    assert v["accepted"] is True


async def test_void_recent_report_pickups(home: Path) -> None:
    """GIVEN two accepted coupons, a pickup by number and a reject
    WHEN one redemption is voided (and a second void of it is tried)
    THEN recent lists the decisions with the void, the report counts 1 redemption, 1
    pickup, 1 reject and 1 void, pickups shows the first sample order collected, and the
    second void is refused with its reason code."""
    s = samples(home)
    async with running(home) as r:
        a = await r.client.request("scan", code=s["coupons"][0])
        await r.client.request("scan", code=s["coupons"][1])
        await r.client.request("scan", code=s["pickups"][0]["number"])
        await r.client.request("scan", code="6901234567892")
        voided = await r.client.request("void", decision_id=a["decision_id"], reason="mistake")
        with pytest.raises(ApiError) as refused:
            await r.client.request("void", decision_id=a["decision_id"], reason="again")
        recent = (await r.client.request("recent", limit=10))["decisions"]
        rep = await r.client.request("report")
        picks = (await r.client.request("pickups"))["orders"]
    assert voided["decision_id"] == a["decision_id"]
    assert refused.value.code == ErrorCode.REFUSED and "already_voided" in str(refused.value)
    assert recent[-1]["voided_at"] is not None and recent[-1]["void_reason"] == "mistake"
    assert [d["voidable"] for d in recent] == [False, True, True, False]  # newest first
    assert rep["redemptions"] == 1 and rep["redemptions_by_campaign"] == {"LIVE1125": 1}
    assert rep["pickups_collected"] == 1 and rep["voids"] == 1
    assert rep["rejects_by_reason"] == {"bad_format": 1}
    assert {o["number"]: o["status"] for o in picks}[s["pickups"][0]["number"]] == "collected"


async def test_status_fields_and_printer_absent(home: Path) -> None:
    """GIVEN a daemon (not simulating) with no device configured
    WHEN status and print_card are asked
    THEN status carries identity, offline with the ledger's backlog, part states, clock
    and versions; print_card is refused as unavailable and mints nothing."""
    async with running(home, simulate=False) as r:
        await r.client.request("scan", code="6901234567892")
        st = await r.client.request("status")
        with pytest.raises(ApiError) as exc:
            await r.client.request("print_card")
        rep = await r.client.request("report")
    assert (st["store_id"], st["device_id"], st["store_name"]) == ("BJ001", "BJ001-T1", "望京店")
    assert st["online"] is False and st["backlog"] == 1
    assert st["printer"]["state"] == "absent" and st["printer"]["jobs_waiting"] == 0
    assert st["scanner"]["state"] == "absent" and st["camera"]["state"] == "absent"
    assert st["config_version"] == 0 and st["software_version"]
    assert isinstance(st["clock_trusted"], bool)
    assert exc.value.code == ErrorCode.UNAVAILABLE
    assert rep["cards_printed"] == 0


async def test_client_unavailable_when_no_daemon(tmp_path: Path) -> None:
    """GIVEN no daemon WHEN a client connects THEN it gets DaemonUnavailable, not a hang."""
    from edged.localapi import DaemonUnavailable

    with pytest.raises(DaemonUnavailable):
        await Client(tmp_path / "none.sock", timeout=2).connect()


async def test_a_connect_that_times_out_says_so(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """GIVEN a connect that never completes (seen on a loaded CI machine with a 0.3 s
    timeout) WHEN the client gives up THEN DaemonUnavailable says it timed out: an asyncio
    timeout's own text is empty, and the message used to end in ': '."""
    from edged.localapi import DaemonUnavailable

    async def hangs(*_a: object, **_k: object) -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(asyncio, "open_unix_connection", hangs)
    with pytest.raises(DaemonUnavailable, match=r"within 0\.2 s \(timeout\)$"):
        await Client(tmp_path / "edge.sock", timeout=0.2).connect()


async def test_pickups_say_which_waiting_orders_are_late(home: Path) -> None:
    """GIVEN a waiting order whose window ended an hour ago, and the demo's current orders
    WHEN the pickups are listed THEN only the overdue waiting order is late (the UI shows
    the daemon's judgement rather than its own clock's)."""
    import time

    from edge.box import Box
    from edge.orders import upsert_order
    from edge.tokens import Pickup

    now = int(time.time())
    box = Box.open(home)
    try:
        with box.ledger.immediate() as conn:
            upsert_order(conn, Pickup("", "LATE-1", "BJ001", "9001", now - 7200, now - 3600,
                                      "法棍x1", "周*"))
    finally:
        box.close()
    async with running(home) as r:
        picks = (await r.client.request("pickups", day_start=now - 86400,
                                        day_end=now + 86400))["orders"]
    late = {o["order_id"]: o["late"] for o in picks}
    assert late.pop("LATE-1") is True
    assert late and not any(late.values())


async def test_client_refuses_an_oversized_request_instead_of_waiting(home: Path) -> None:
    """GIVEN a running daemon and a client
    WHEN the client is asked to send a scan whose frame is over MAX_LINE (the daemon would
    skip it unread, and its error could name no request id)
    THEN the client raises bad_request itself without sending it (no wait for an answer
    that cannot come), and the same connection goes on serving."""
    async with running(home) as r:
        with pytest.raises(ApiError) as err:
            await r.client.request("scan", code="SE" + "B" * MAX_LINE)
        status = await r.client.request("status")
    assert err.value.code == ErrorCode.BAD_REQUEST and "over" in str(err.value)
    assert status["scans"] == 0
