"""The scan pane against the stand-in daemon: typed codes in, verdicts out."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.widgets import OptionList

from tests.standin import StandIn
from tests.uihelp import WatchedApp, connected, headline, panel_text, plain, type_code, until
from ui.key_bar import KeyBar
from ui.status_bar import StatusBar

if TYPE_CHECKING:
    from tests.ui_store import Store

pytest_plugins = ["tests.ui_fixtures"]  # store, standin


async def test_typed_coupon_shows_accepted_benefit(store: Store, standin: StandIn) -> None:
    """GIVEN a fresh free-coffee coupon
    WHEN the cashier's scanner types it into the input and presses Enter
    THEN the panel turns green with 通过 and 免费咖啡一杯, and the decision is listed."""
    app = WatchedApp(standin.path)
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot, app)
        await type_code(pilot, store.coffee)
        await until(pilot, lambda: app.scan_pane.history, "a verdict listed")
        text = panel_text(app)
        assert headline(app) == "通过" and "免费咖啡一杯" in text
        assert "█" in text  # the headline is drawn big
        assert app.query_one("#verdict").has_class("-accepted")
        assert app.scan_pane.history[0].verdict.decision_id == 1
        assert app.bells == 0


async def test_second_use_is_rejected_with_when_and_where(store: Store, standin: StandIn) -> None:
    """GIVEN a single-use coupon already used once at till T2
    WHEN it is scanned again
    THEN the panel turns red with 拒绝, says when and at which till it was used and what to
    do, and the terminal bell rings."""
    app = WatchedApp(standin.path)
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot, app)
        await type_code(pilot, store.ninety_five)
        await until(pilot, lambda: len(app.scan_pane.history) == 1, "first verdict")
        assert "95折" in panel_text(app)
        await type_code(pilot, store.ninety_five)
        await until(pilot, lambda: len(app.scan_pane.history) == 2, "second verdict")
        text = panel_text(app)
        assert headline(app) == "拒绝"
        assert "已于 11-25 15:02 在本店 T2 使用" in text
        assert "请勿给予优惠" in text
        assert app.query_one("#verdict").has_class("-rejected")
        assert app.bells == 1


async def test_wrong_store_and_garbage_are_explained(store: Store, standin: StandIn) -> None:
    """GIVEN a coupon only for store SH002, and a burst of scanner noise
    WHEN each is scanned
    THEN each shows its own reason (wrong store with the stores; unreadable with advice)."""
    app = WatchedApp(standin.path)
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot, app)
        await type_code(pilot, store.other_store)
        await until(pilot, lambda: len(app.scan_pane.history) == 1, "wrong-store verdict")
        assert "本店不可用（适用门店：SH002）" in panel_text(app)
        await type_code(pilot, "SEC1GARBAGE%%")
        await until(pilot, lambda: len(app.scan_pane.history) == 2, "bad-format verdict")
        assert "无法识别的码" in panel_text(app)
        assert "请重扫，或手动输入取货号" in panel_text(app)
        assert app.bells == 2


async def test_pickup_number_and_five_off(store: Store, standin: StandIn) -> None:
    """GIVEN order 0815 waiting and a 5-yuan-off coupon
    WHEN the cashier types 0815 then scans the coupon
    THEN the pickup shows its number, items and customer; the coupon shows 减5元."""
    app = WatchedApp(standin.path)
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot, app)
        await pilot.press("0", "8", "1", "5", "enter")  # typed by hand, key by key
        await until(pilot, lambda: len(app.scan_pane.history) == 1, "pickup verdict")
        assert "取货 0815号：吐司x2 牛角包x1（王*）" in panel_text(app)
        await type_code(pilot, store.five_off)
        await until(pilot, lambda: len(app.scan_pane.history) == 2, "coupon verdict")
        assert "减5元" in panel_text(app)


async def test_verdict_from_serial_scanner_shows(store: Store, standin: StandIn) -> None:
    """GIVEN the UI on the pickups pane
    WHEN the daemon decides a scan from its serial scanner (not typed in the UI)
    THEN the verdict arrives through the subscription, is listed on the scan pane once,
    and shows when the cashier goes back to it."""
    app = WatchedApp(standin.path)
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot, app)
        await pilot.press("f2")
        standin.scan_from(store.pickup, "serial")
        await until(pilot, lambda: app.scan_pane.history, "streamed verdict")
        await pilot.press("f1")
        await pilot.pause()
        assert "取货 0815号" in panel_text(app)
        assert "扫码枪" in panel_text(app)
        assert len(app.scan_pane.history) == 1


async def test_history_entry_reopens(store: Store, standin: StandIn) -> None:
    """GIVEN an accepted scan followed by a rejected one
    WHEN the cashier tabs to the list, moves to the older entry and presses Enter
    THEN the panel shows the older verdict again, marked as reopened, and the input
    has the focus back for the next scan."""
    app = WatchedApp(standin.path)
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot, app)
        await type_code(pilot, store.coffee)
        await type_code(pilot, "9999")
        await until(pilot, lambda: len(app.scan_pane.history) == 2, "two verdicts")
        assert "本店没有取货号 9999" in panel_text(app)
        await pilot.press("tab")
        assert isinstance(app.focused, OptionList)
        await pilot.press("down", "enter")
        await pilot.pause()
        text = panel_text(app)
        assert "免费咖啡一杯" in text and "回看" in text
        assert app.focused is not None and app.focused.id == "code"


async def test_language_key_switches_every_word(store: Store, standin: StandIn) -> None:
    """GIVEN a rejected verdict on screen in Chinese
    WHEN the cashier presses F9, then F9 again
    THEN the headline, reason, key bar and status bar switch to English, then back."""
    app = WatchedApp(standin.path)
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot, app)
        await type_code(pilot, "9999")
        await until(pilot, lambda: app.scan_pane.history, "verdict")
        await pilot.press("f9")
        assert app.lang == "en" and headline(app) == "REJECTED"
        assert "No pickup number 9999 at this store" in panel_text(app)
        assert "F1 Scan" in plain(app.query_one(KeyBar))
        assert "Printer ready" in plain(app.query_one(StatusBar))
        await pilot.press("f9")
        assert headline(app) == "拒绝" and "本店没有取货号 9999" in panel_text(app)
        assert "F1 扫码" in plain(app.query_one(KeyBar))


async def test_overlong_burst_is_a_readable_reject(store: Store, standin: StandIn) -> None:
    """GIVEN a scanner gone wrong that types 5,000 characters before its Enter
    WHEN that reaches the scan input
    THEN the input keeps at most 4,096 of them, the daemon rejects it as unreadable with
    a reason, and the UI stays usable for the next scan."""
    app = WatchedApp(standin.path)
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot, app)
        await type_code(pilot, "A" * 5000)
        await until(pilot, lambda: app.scan_pane.history, "verdict")
        assert headline(app) == "拒绝" and "无法识别的码" in panel_text(app)
        await type_code(pilot, store.coffee)
        await until(pilot, lambda: len(app.scan_pane.history) == 2, "next scan")
        assert app.scan_pane.history[0].verdict.accepted
