"""Round trips through the daemon: pickup collect, void, packaging cards, the report."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.widgets import Input, Static

from tests.standin import StandIn
from tests.uihelp import (
    WatchedApp,
    connected,
    panel_text,
    plain,
    rendered,
    type_code,
    until,
)
from ui.pickups import PickupsPane, PickupTable
from ui.void import ConfirmVoid, VoidPane

if TYPE_CHECKING:
    from textual.pilot import Pilot

    from tests.ui_store import Store

pytest_plugins = ["tests.ui_fixtures"]  # store, standin


async def test_pickup_list_search_and_collect(store: Store, standin: StandIn) -> None:
    """GIVEN today's four orders (waiting, late, cancelled, later today)
    WHEN the cashier opens Pickups, types 王 to search and presses Enter on the row
    THEN the list shows every state, the search narrows to order 0815, Enter collects it
    through the daemon (accepted, shown here and on the scan pane), and the refreshed list
    says collected; the order's pickup QR scanned into the search box is decided too, and
    rejected as already collected."""
    app = WatchedApp(standin.path)
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot, app)
        await pilot.press("f2")
        pane = app.query_one(PickupsPane)
        await until(pilot, lambda: len(pane.orders) == 4, "orders listed")
        states = {o.number: o.state.value for o in pane.orders}
        assert states == {"0815": "waiting", "0816": "late", "0817": "cancelled",
                          "0818": "waiting"}
        await pilot.press("王")
        assert app.query_one("#pickup-search", Input).value == "王"
        assert [o.number for o in pane.shown] == ["0815"]
        app.query_one(PickupTable).focus()
        await pilot.press("enter")
        await until(pilot, lambda: any(o.state.value == "collected" for o in pane.orders),
                    "order collected")
        assert "取货 0815号" in panel_text(app, "#pickup-verdict")
        assert app.scan_pane.history[0].verdict.accepted
        assert app.scan_pane.history[0].source == "pickups"
        app.query_one("#pickup-search", Input).focus()
        await type_code(pilot, store.pickup)  # the customer's pickup QR, scanned here
        await until(pilot, lambda: len(app.scan_pane.history) == 2, "scanned in the list")
        assert "已于 11-25 15:02 取货（T2）" in panel_text(app, "#pickup-verdict")
        assert app.query_one("#pickup-search", Input).value == ""
        assert app.bells == 1


async def _coffee_redeemed_then_void_pane(pilot: Pilot[object], app: WatchedApp,
                                          store: Store) -> VoidPane:
    """Connect, redeem the coffee coupon at the scan pane, open Void (F4)."""
    await connected(pilot, app)
    await type_code(pilot, store.coffee)
    await until(pilot, lambda: app.scan_pane.history, "redeemed")
    await pilot.press("f4")
    return app.query_one(VoidPane)


async def test_void_needs_reason_and_confirmation(store: Store, standin: StandIn) -> None:
    """GIVEN a redeemed coffee coupon
    WHEN the cashier opens Void, picks it, first submits no reason, then gives one, says N,
    then Y
    THEN no reason is refused by the UI, N keeps it, Y voids it through the daemon, the list
    empties, and the same coupon is accepted again on the scan pane."""
    app = WatchedApp(standin.path)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await _coffee_redeemed_then_void_pane(pilot, app, store)
        await until(pilot, lambda: len(pane.rows) == 1, "voidable row listed")
        await pilot.press("enter")  # table -> reason box
        assert app.focused is app.query_one("#void-reason", Input)
        await pilot.press("enter")
        assert "请先填写撤销原因" in plain(app.query_one("#void-message", Static))
        await pilot.press(*"wrong", "enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmVoid), "confirmation")
        await pilot.press("n")
        await until(pilot, lambda: not isinstance(app.screen, ConfirmVoid), "kept")
        assert len(pane.rows) == 1
        app.query_one("#void-reason", Input).focus()
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmVoid), "confirmation again")
        await pilot.press("y")
        await until(pilot, lambda: not pane.rows, "voided and gone from the list")
        assert "已撤销单号 1" in plain(app.query_one("#void-message", Static))
        await pilot.press("f1")
        await type_code(pilot, store.coffee)
        await until(pilot, lambda: len(app.scan_pane.history) == 2, "scanned again")
        assert app.scan_pane.history[0].verdict.accepted


async def test_void_refused_by_daemon_shows_why(store: Store, standin: StandIn) -> None:
    """GIVEN a redemption voided already (from elsewhere)
    WHEN the UI asks to void it again
    THEN the daemon's refusal is shown in words, and nothing crashes."""
    app = WatchedApp(standin.path)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await _coffee_redeemed_then_void_pane(pilot, app, store)
        assert await pane.void(1, "first")
        assert not await pane.void(1, "again")
        assert "不能撤销：already_voided: decision 1 is already voided" in plain(
            app.query_one("#void-message", Static))


async def test_print_and_reprint_card(store: Store, standin: StandIn) -> None:
    """GIVEN no cards printed today
    WHEN the cashier opens Cards, presses P, then R
    THEN a card is minted by the daemon (serial 1, job id shown), today's count reads 1,
    and the reprint sends one more job; with the printer out of paper the job is
    said to be queued."""
    app = WatchedApp(standin.path)
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot, app)
        await pilot.press("f3")
        await until(pilot, lambda: "今日已打印 0 张" in plain(app.query_one("#cards-today",
                                                                        Static)), "count 0")
        await pilot.press("p")
        await until(pilot, lambda: "今日已打印 1 张" in plain(app.query_one("#cards-today",
                                                                        Static)), "count 1")
        message = plain(app.query_one("#cards-message", Static))
        assert "卡号 1" in message and "J0001" in message
        standin.set_printer("no_paper")
        await until(pilot, lambda: app.status is not None and app.status.printer == "no_paper",
                    "printer state")
        await pilot.press("r")
        await until(pilot, lambda: "已重印 1 张" in plain(app.query_one("#cards-message",
                                                                    Static)), "reprinted")
        assert "打印机缺纸：任务已排队" in plain(app.query_one("#cards-message", Static))


async def test_report_figures_and_slip(store: Store, standin: StandIn) -> None:
    """GIVEN two accepted coupons, one reject and a card today
    WHEN the cashier opens Report and presses P
    THEN the figures match (by campaign, by reason) and the slip is sent to the printer."""
    app = WatchedApp(standin.path)
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot, app)
        for code in (store.coffee, store.five_off, store.coffee):
            await type_code(pilot, code)
        await until(pilot, lambda: len(app.scan_pane.history) == 3, "three scans")
        await pilot.press("f3", "p")
        await pilot.press("f5")
        await until(pilot, lambda: app.query_one("#report").report.get("rejects") == 1, "report")
        report = app.query_one("#report").report
        assert report["redemptions_by_campaign"] == {"LIVE1125": 1, "WELCOME": 1}
        assert report["rejects_by_reason"] == {"already_used_here": 1}
        assert report["cards_printed"] == 1
        body = rendered(app.query_one("#report-body", Static))
        lines = {" ".join(line.split()) for line in body.splitlines()}
        flat = " | ".join(lines)
        for figure in ("LIVE1125 1", "WELCOME 1", "本店已用 1", "包装卡打印 1", "优惠券核销 2",
                       "今日报表 2026-11-25"):
            assert figure in flat, figure
        await pilot.press("p")
        await until(pilot, lambda: "日结单已送打印" in plain(app.query_one("#report-message",
                                                                     Static)), "slip")


async def test_scanner_burst_on_cards_pane_scans_not_prints(store: Store,
                                                           standin: StandIn) -> None:
    """GIVEN the cashier on the Cards pane (where Enter prints a card)
    WHEN a wedge scanner bursts a coupon code ending in Enter there
    THEN the app goes to the scan pane and decides the code; no card is printed."""
    app = WatchedApp(standin.path)
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot, app)
        await pilot.press("f3")
        await type_code(pilot, store.coffee)
        await until(pilot, lambda: app.scan_pane.history, "scanned")
        assert app.active == "scan" and app.scan_pane.history[0].verdict.accepted
        assert app.query_one("#cards").printed == []
        await pilot.press("f3", "p")
        await until(pilot, lambda: len(app.query_one("#cards").printed) == 1, "p still prints")
