"""Workshops end to end: a sign-up on HQ's page, the ticket checked in at the till through
the real daemon (``edge run --simulate``) and the cashier UI, today's sessions with counts."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input

from tests.daemon_proc import DaemonProcess
from tests.test_web_workshops import deliver, make_session, sign_up
from tests.ui_fixtures import local_zone
from tests.uihelp import WatchedApp, connected, headline, panel_text, type_code, until
from tests.web_support import make_web_hq, qr_from_page
from ui.workshops import WorkshopsPane


@pytest.fixture
def midday() -> Iterator[None]:
    """A zone in which it is about noon now: a session starting in 10 minutes is today."""
    east = 12 - time.gmtime().tm_hour
    with local_zone(f"NOON{-east:+d}"):
        yield


def cells(app: WatchedApp) -> list[list[str]]:
    table = app.query_one("#workshop-table", DataTable)
    return [[str(getattr(c, "plain", c)) for c in table.get_row_at(i)]
            for i in range(table.row_count)]


async def test_sign_up_then_check_in_at_the_till(tmp_path: Path, midday: None) -> None:
    """GIVEN a session at the box's store and a customer who signed up 3 people on HQ's page
    (the ticket read off the page's QR), and HQ's workshops data applied at the box
    WHEN the real daemon runs and the cashier opens F6, types 0 then 2 people and scans
    THEN a party of 0 is refused before anything is sent; with 2 the till says 通过 with the
    session, the customer's name and 2人; today's list
    shows the session with 3/4 signed up and 2 checked in; the same ticket scanned again is
    refused as already checked in, in Chinese."""
    web = make_web_hq(tmp_path)
    make_session(web, capacity=4)
    phone = web.client()
    status, where = sign_up(phone, "W-BAKE", "王小明", 3)
    assert status == 303
    code = qr_from_page(phone.get(where).text, "ticket-qr")
    assert deliver(web, web.box) == 2
    home = tmp_path / "box"  # make_web_hq's box home
    web.box.close()
    web.db.close()
    daemon = DaemonProcess(home).start()
    try:
        app = WatchedApp(daemon.path, clock=time.time, status_poll_s=0.5)
        async with app.run_test(size=(80, 24)) as pilot:
            await connected(pilot, app)
            await pilot.press("f6")
            pane = app.query_one(WorkshopsPane)
            await until(pilot, lambda: len(pane.sessions) == 1, "today's session listed")
            assert cells(app)[0][1:3] == ["3/4", "0"] and "亲子烘焙课" in cells(app)[0][4]
            app.query_one("#workshop-party", Input).value = "0"
            pane.focus_default()
            await type_code(pilot, code)
            await until(pilot, lambda: app.bells == 1, "a party of 0 refused before sending")
            assert pane.sessions[0]["checked_in"] == 0 and not app.scan_pane.history
            app.query_one("#workshop-party", Input).value = "2"
            pane.focus_default()
            await type_code(pilot, code)
            await until(pilot, lambda: pane.sessions and pane.sessions[0]["checked_in"] == 2,
                        "the check-in counted")
            assert headline(app, "#workshop-verdict") == "通过"
            said = panel_text(app, "#workshop-verdict")
            assert "亲子烘焙课" in said and "王小明" in said and "2人" in said
            assert cells(app)[0][1:3] == ["3/4", "2"]
            await type_code(pilot, code)
            await until(pilot, lambda: headline(app, "#workshop-verdict") == "拒绝",
                        "the second scan refused")
            assert "此票已于" in panel_text(app, "#workshop-verdict")
            assert app.scan_pane.history[0].verdict.reason is not None
            assert app.scan_pane.history[0].verdict.reason.value == "already_checked_in"
    finally:
        daemon.stop()
