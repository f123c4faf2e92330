"""The status bar and the daemon link: device and sync changes, outages, restarts."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from textual.widgets import Static

from edged.localapi import Topic, encode
from tests.standin import StandIn
from tests.uihelp import (
    FIXED_NOW,
    WatchedApp,
    connected,
    headline,
    panel_text,
    plain,
    type_code,
    until,
)
from ui.model import DeviceState, Status
from ui.status_bar import StatusBar

if TYPE_CHECKING:
    from tests.ui_store import Store

pytest_plugins = ["tests.ui_fixtures"]  # store, standin


def bar(app: WatchedApp) -> str:
    return plain(app.query_one(StatusBar))


async def test_printer_unplugged_and_back(store: Store, standin: StandIn) -> None:
    """GIVEN the UI showing the printer ready
    WHEN the daemon reports the printer offline with 2 jobs waiting, then ready again
    THEN the status bar says 打印机 离线 待打2, then 打印机 就绪 without waiting jobs."""
    app = WatchedApp(standin.path)
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot, app)
        assert "打印机 就绪" in bar(app)
        standin.set_printer("offline", jobs_waiting=2)
        await until(pilot, lambda: "打印机 离线 待打2" in bar(app), "printer offline shown")
        assert app.status is not None and app.status.printer is DeviceState.OFFLINE
        standin.set_printer("ready", jobs_waiting=0)
        await until(pilot, lambda: "打印机 就绪" in bar(app), "printer back")
        assert "待打" not in bar(app)


async def test_broker_outage_shows_offline_and_backlog(store: Store, standin: StandIn) -> None:
    """GIVEN the box online
    WHEN the broker goes away (sync event: offline, last contact 5 minutes ago) and a scan
    adds to the backlog, the outbox alarm goes on, then the broker comes back
    THEN the bar reads 离线 5分钟前 and the backlog count, then the alarm, then 在线."""
    app = WatchedApp(standin.path)
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot, app)
        assert "在线" in bar(app)
        standin.sync["last_contact"] = FIXED_NOW - 300
        standin.set_online(False)
        await until(pilot, lambda: "离线 5分钟前" in bar(app), "offline shown")
        await type_code(pilot, store.coffee)
        await until(pilot, lambda: app.scan_pane.history, "scan while offline")
        await app._poll_status()
        assert "待同步1" in bar(app)
        standin.sync["alarm"] = True  # the outbox crossed its policy limit while offline
        standin.set_online(False)
        await until(pilot, lambda: "待同步1 积压告警" in bar(app), "alarm shown")
        standin.sync["alarm"] = False
        standin.set_online(True)
        await until(pilot, lambda: "在线" in bar(app) and "离线" not in bar(app), "online")
        assert "告警" not in bar(app)


async def test_events_awaiting_hq_confirmation_are_shown_apart_from_the_backlog(
        store: Store, standin: StandIn) -> None:
    """GIVEN the box online with nothing waiting
    WHEN the daemon says 3 events are sent but not confirmed by HQ, then none
    THEN the bar reads 待同步0 待确认3 (waiting for the broker, waiting for HQ), then the
    待确认 segment is gone; in English it reads Unconfirmed 3."""
    app = WatchedApp(standin.path)
    async with app.run_test(size=(100, 24)) as pilot:
        await connected(pilot, app)
        assert "待确认" not in bar(app)
        standin.sync["unconfirmed"] = 3
        standin.set_online(True)
        await until(pilot, lambda: "待同步0  待确认3" in bar(app), "unconfirmed shown")
        assert app.status is not None and app.status.unconfirmed == 3
        assert "Unconfirmed 3" in ui_status_bar_text(app.status, "en")
        standin.sync["unconfirmed"] = 0
        standin.set_online(True)
        await until(pilot, lambda: "待确认" not in bar(app), "confirmed")


def ui_status_bar_text(status: Status, lang: str) -> str:
    widget = StatusBar()
    widget.paint(status, True, FIXED_NOW, lang)
    return str(widget.render())


async def test_daemon_restarted_under_the_ui(store: Store, standin: StandIn) -> None:
    """GIVEN the UI connected
    WHEN the daemon stops, a scan is tried, and the daemon starts again
    THEN the UI says the service is down (banner and bar), the scan shows NOT DECIDED with
    what to do instead of hanging, and the UI reconnects by itself and scans again."""
    app = WatchedApp(standin.path)
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot, app)
        standin.stop()
        await until(pilot, lambda: not app.link_up, "link down noticed")
        await pilot.pause()
        assert "服务未连接" in bar(app)
        banner = app.query_one("#banner", Static)
        assert banner.display and "后台服务未连接" in plain(banner)
        await type_code(pilot, store.coffee)
        await until(pilot, lambda: app.query_one("#verdict").has_class("-failed"), "failure")
        assert headline(app) == "未能判定"
        assert "请勿给予优惠" in panel_text(app)
        standin.start()
        await until(pilot, lambda: app.link_up, "reconnected", limit_s=15)
        await until(pilot, lambda: not app.query_one("#banner").display, "banner gone")
        await type_code(pilot, store.coffee)
        await until(pilot, lambda: app.scan_pane.history, "scan after restart")
        assert app.scan_pane.history[0].verdict.accepted


async def test_no_daemon_at_all(tmp_path: Path, shanghai: None) -> None:
    """GIVEN no daemon listening at the socket path
    WHEN the UI starts and the cashier scans
    THEN the UI runs, says it is reconnecting, and the scan fails fast with NOT DECIDED."""
    app = WatchedApp(tmp_path / "run" / "edge.sock")
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.link.attempts >= 2, "retrying")
        await pilot.pause()
        assert "后台服务未连接" in plain(app.query_one("#banner", Static))
        await type_code(pilot, "0815")
        await until(pilot, lambda: app.query_one("#verdict").has_class("-failed"), "failure")
        assert app.bells == 1


async def test_silent_daemon_times_out(tmp_path: Path, shanghai: None) -> None:
    """GIVEN a socket that accepts connections but never answers (a hung daemon)
    WHEN the UI connects and subscribes
    THEN the request times out, the UI treats the daemon as unavailable and keeps retrying,
    and stays responsive (a pane switch still works)."""
    path = tmp_path / "edge.sock"
    held: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        with contextlib.suppress(ConnectionError):
            while await reader.readline():
                pass

    server = await asyncio.start_unix_server(swallow, str(path))
    app = WatchedApp(path, request_timeout_s=0.3)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: app.link.attempts >= 2, "timed out and retried")
            assert not app.link_up
            assert "timeout" in app.link_detail or "did not answer" in app.link_detail
            await pilot.press("f5")
            assert app.active == "report"
    finally:
        for w in held:
            w.close()
        server.close()


async def test_odd_frames_from_the_daemon(tmp_path: Path, shanghai: None) -> None:
    """GIVEN a daemon that refuses the first subscription, then sends a verdict event with
    fields missing, a good status event, and a line that is not JSON
    WHEN the UI talks to it
    THEN the refusal is retried, the bad verdict is dropped without harm, the status shows,
    and after the garbage line the UI reconnects by itself."""
    path = tmp_path / "edge.sock"
    connections: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        n = len(connections)
        with contextlib.suppress(ConnectionError):
            while line := await reader.readline():
                req = json.loads(line)
                if req["op"] == "subscribe" and n == 1:
                    writer.write(encode({"id": req["id"], "ok": False, "error": {
                        "code": "internal", "message": "not yet"}}))
                elif req["op"] == "subscribe":
                    writer.write(encode({"id": req["id"], "ok": True, "result": {}}))
                    writer.write(encode({"event": "verdict", "data": {"bogus": 1}}))
                    writer.write(encode({"event": "status", "data": {
                        "store_id": "BJ001", "device_id": "BJ001-T9", "online": True}}))
                    if n == 2:
                        writer.write(b"\xff not json\n")
                else:
                    writer.write(encode({"id": req["id"], "ok": True, "result": {
                        "store_id": "BJ001", "device_id": "BJ001-T9", "online": True}}))
                await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(serve, str(path))
    app = WatchedApp(path, status_poll_s=3600)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: len(connections) >= 3 and app.link_up, "third link")
            assert app.status is not None and app.status.device_id == "BJ001-T9"
            assert app.scan_pane.history == []
    finally:
        server.close()


async def test_a_poll_or_event_landing_during_shutdown_is_dropped(
        store: Store, standin: StandIn) -> None:
    """GIVEN the UI connected WHEN the status timer, the link or a daemon event calls back
    after shutdown has begun (Textual takes the screens away before it stops timers and
    workers: seen in CI as NoMatches on TitleBar) THEN nothing is painted and nothing
    fails."""
    app = WatchedApp(standin.path)
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot, app)
        verdict = {**standin.scan_from(store.coffee), "till": "T1", "source": "serial"}
        await until(pilot, lambda: app.scan_pane.history, "the verdict shown")
        await pilot.press("f10")
    assert not app.is_running
    await app._poll_status()  # the timer's callback, as it ran in that race
    await app._on_link(False, "closed")
    await app._on_event(Topic.VERDICT, verdict)
    assert app.return_code == 0


async def test_f10_quits(tmp_path: Path, shanghai: None) -> None:
    """GIVEN the UI running (no daemon needed)
    WHEN the cashier presses F10
    THEN the app exits cleanly."""
    app = WatchedApp(tmp_path / "edge.sock")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f10")
        await until(pilot, lambda: app._exit, "exit requested")
    assert app.return_code == 0
