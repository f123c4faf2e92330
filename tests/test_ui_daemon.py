"""The cashier UI against the real daemon in simulate mode (``edge run --simulate``).

The flows a cashier runs all day, end to end through the local API socket: typed scans,
a reject with its reason, a scan from the simulated serial scanner, pickup collect, void,
the report, the status the daemon reports, and the daemon restarted under the UI.
(The printer and broker states and the snapshots are driven by the stand-in daemon in the
other ``test_ui_*`` files, where a test can pull the paper or the broker.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioning.localbroker import Broker
from tests.daemon_proc import DaemonProcess
from tests.ui_fixtures import local_zone
from tests.ui_store import Store, make_store
from tests.uihelp import WatchedApp, connected, headline, panel_text, plain, type_code, until
from ui.model import DeviceState
from ui.pickups import PickupsPane
from ui.status_bar import StatusBar
from ui.void import ConfirmVoid, VoidPane

pytest_plugins = ["tests.ui_fixtures"]  # shanghai (broker: tests/conftest.py)


@pytest.fixture
def midday() -> Iterator[None]:
    """Local time is a fixed zone in which it is about noon now (for this process and the
    daemon it starts): the store's orders span hours either side of now, and "today" must
    hold them all whenever the suite runs (at 23:00 in Shanghai it would not)."""
    east = 12 - time.gmtime().tm_hour  # hours to add to UTC for local noon, -11..12
    with local_zone(f"NOON{-east:+d}"):  # POSIX: the sign is west of Greenwich
        yield


@pytest.fixture
def live_store(tmp_path: Path, midday: None) -> Store:
    """A store whose codes and pickup windows are valid now (the daemon reads the clock)."""
    return make_store(tmp_path / "box", now=time.time())


@pytest.fixture
def daemon(live_store: Store) -> Iterator[DaemonProcess]:
    """The real daemon on the store."""
    proc = DaemonProcess(live_store.home).start()
    yield proc
    proc.stop()


def bar(app: WatchedApp) -> str:
    return plain(app.query_one(StatusBar))


def real_app(daemon: DaemonProcess) -> WatchedApp:
    return WatchedApp(daemon.path, clock=time.time, status_poll_s=0.5)


async def test_scan_reject_and_serial_scanner(live_store: Store, daemon: DaemonProcess) -> None:
    """GIVEN the real daemon with its simulated serial scanner
    WHEN the cashier types a coupon, types it again, and a customer's pickup code is read
    by the serial scanner
    THEN 通过 免费咖啡一杯, then 拒绝 with when and at which till, then the pickup verdict
    arrives by the subscription, marked as from the scanner; and the daemon's status shows
    the scanner running and no camera."""
    app = real_app(daemon)
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot, app)
        assert app.status is not None and app.status.store_id == "BJ001"
        assert app.status.scanner is DeviceState.READY
        assert app.status.camera is DeviceState.ABSENT
        await type_code(pilot, live_store.coffee)
        await until(pilot, lambda: len(app.scan_pane.history) == 1, "accepted")
        assert headline(app) == "通过" and "免费咖啡一杯" in panel_text(app)
        await type_code(pilot, live_store.coffee)
        await until(pilot, lambda: len(app.scan_pane.history) == 2, "rejected")
        assert headline(app) == "拒绝" and "在本店 T2 使用" in panel_text(app)
        assert app.bells == 1
        with open(daemon.scanner_input(), "w") as scanner:
            scanner.write(live_store.pickup + "\r\n")
        await until(pilot, lambda: len(app.scan_pane.history) == 3, "serial scan")
        assert app.scan_pane.history[0].source.startswith("serial")
        assert "取货 0815号" in panel_text(app) and "扫码枪" in panel_text(app)


async def test_pickup_collect_void_and_report(live_store: Store,
                                              daemon: DaemonProcess) -> None:
    """GIVEN today's orders on the real daemon
    WHEN the cashier collects 0815 from the Pickups list, voids that collection with a
    reason, and opens the report
    THEN the order shows collected, then waiting again after the void; the report counts
    one void and no pickups collected."""
    app = real_app(daemon)
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot, app)
        await pilot.press("f2")
        pane = app.query_one(PickupsPane)
        await until(pilot, lambda: len(pane.orders) == 4, "orders")
        assert {o.number: o.state.value for o in pane.orders}["0817"] == "cancelled"
        view = await pane.collect("0815")
        assert view is not None and view.verdict.accepted
        assert {o.number: o.state.value for o in pane.orders}["0815"] == "collected"
        await pilot.press("f4")
        void = app.query_one(VoidPane)
        await until(pilot, lambda: len(void.rows) == 1, "voidable")
        await pilot.press("enter", *"mistake", "enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmVoid), "confirm")
        await pilot.press("y")
        await until(pilot, lambda: not void.rows, "voided")
        await pilot.press("f2")
        await until(pilot, lambda: {o.number: o.state.value
                                    for o in pane.orders}["0815"] == "waiting", "waiting")
        await pilot.press("f5")
        report = app.query_one("#report")
        await until(pilot, lambda: report.report.get("voids") == 1, "report")
        assert report.report["pickups_collected"] == 0


async def test_daemon_restarted_under_the_ui(live_store: Store,
                                             daemon: DaemonProcess) -> None:
    """GIVEN the UI connected to the real daemon
    WHEN the daemon is stopped (SIGTERM), a scan is tried, and the daemon is started again
    THEN the UI says the service is down and the scan is NOT DECIDED; it reconnects by
    itself and the next scan is decided (the coupon accepted once, by the new daemon)."""
    app = real_app(daemon)
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot, app)
        daemon.stop()
        await until(pilot, lambda: not app.link_up, "down noticed")
        await type_code(pilot, live_store.five_off)
        await until(pilot, lambda: headline(app) == "未能判定", "not decided")
        daemon.start()
        await until(pilot, lambda: app.link_up and app.status is not None, "reconnected",
                    limit_s=20)
        await type_code(pilot, live_store.five_off)
        await until(pilot, lambda: app.scan_pane.history, "decided")
        assert app.scan_pane.history[0].verdict.accepted
        assert "减5元" in panel_text(app)


async def test_print_card_reaches_the_paper(live_store: Store, daemon: DaemonProcess) -> None:
    """GIVEN the real daemon with its simulated (file) printer
    WHEN the cashier opens Cards and presses P, then R
    THEN the daemon mints card 1 and queues it; the ESC/POS bytes on the simulated paper
    carry a QR whose text is that card's URL; the reprint puts the same card on paper
    again; today's count reads 1 (a reprint is not a new card)."""
    from drivers.escpos_decode import decode

    app = real_app(daemon)
    paper = live_store.home / "printer-sim.bin"
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot, app)
        await pilot.press("f3", "p")
        cards = app.query_one("#cards")
        await until(pilot, lambda: len(cards.printed) == 1, "card queued")
        assert cards.printed[0].serial == 1

        def qr_texts() -> list[str]:
            data = paper.read_bytes() if paper.exists() else b""
            return [q.data for q in decode(data, "gb18030", strict=False).qr_codes]

        await until(pilot, lambda: len(qr_texts()) == 1, "card on paper")
        (url,) = qr_texts()
        assert url == cards.printed[0].url and "SEK1" in url
        await pilot.press("r")
        await until(pilot, lambda: len(qr_texts()) == 2, "reprint on paper")
        assert qr_texts() == [url, url]
        await until(pilot, lambda: "今日已打印 1 张" in plain(app.query_one("#cards-today")),
                    "count")


async def test_status_bar_follows_printer_and_broker(live_store: Store,
                                                     broker: Broker) -> None:
    """GIVEN the real daemon syncing to a real mosquitto, with its simulated printer
    WHEN the printer runs out of paper, a card is printed, the paper comes back; then the
    broker stops and starts again
    THEN the bar reads 打印机 缺纸 with the card's job waiting, then 就绪 with none; then
    离线 (the daemon's last contact), then 在线 again, all from the daemon's own events."""
    with (live_store.home / "edge.toml").open("a") as f:
        f.write(f'\n[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\n'
                "backoff_min_s = 0.1\nbackoff_max_s = 0.5\nconnect_timeout_s = 2.0\n")
    daemon = DaemonProcess(live_store.home).start()
    state = live_store.home / "printer-sim.bin.state"  # the simulated printer's switch
    try:
        app = real_app(daemon)
        async with app.run_test(size=(80, 24)) as pilot:
            await connected(pilot, app)
            await until(pilot, lambda: "在线" in bar(app), "online via the broker")
            state.write_text("no_paper")
            await until(pilot, lambda: "打印机 缺纸" in bar(app), "no paper shown")
            await pilot.press("f3", "p")
            await until(pilot, lambda: "打印机 缺纸 待打1" in bar(app), "job waiting")
            state.write_text("ready")
            await until(pilot, lambda: "打印机 就绪" in bar(app) and "待打" not in bar(app),
                        "printed after paper came back")
            await asyncio.to_thread(broker.stop)
            await until(pilot, lambda: "离线" in bar(app), "broker outage shown")
            await asyncio.to_thread(broker.start)
            await until(pilot, lambda: "在线" in bar(app) and "离线" not in bar(app),
                        "online again", limit_s=20)
    finally:
        daemon.stop()
