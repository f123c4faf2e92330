"""What the cashier sees, at 80x24 in both languages: SVG snapshots of the main screens.

Deterministic: the stand-in daemon and the app read the same fixed clock, the HQ key is
fixed, and local time is pinned to the store's zone. Update after a deliberate change with
``pytest tests/test_ui_snapshots.py --snapshot-update`` and look at the SVGs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import pytest
from textual.pilot import Pilot

from tests.standin import StandIn
from tests.uihelp import WatchedApp, connected, type_code, until
from ui.pickups import PickupsPane
from ui.void import VoidPane

if TYPE_CHECKING:
    from tests.ui_store import Store

pytest_plugins = ["tests.ui_fixtures"]  # store, standin

Scenario = Callable[[Pilot[Any], WatchedApp, "Store"], Awaitable[None]]


async def accepted(pilot: Pilot[Any], app: WatchedApp, store: Store) -> None:
    await type_code(pilot, store.pickup)
    await type_code(pilot, store.coffee)
    await until(pilot, lambda: len(app.scan_pane.history) == 2, "two verdicts")


async def rejected(pilot: Pilot[Any], app: WatchedApp, store: Store) -> None:
    await accepted(pilot, app, store)
    await type_code(pilot, store.coffee)
    await until(pilot, lambda: len(app.scan_pane.history) == 3, "third verdict")


async def pickups(pilot: Pilot[Any], app: WatchedApp, store: Store) -> None:
    await pilot.press("f2")
    pane = app.query_one(PickupsPane)
    await until(pilot, lambda: len(pane.orders) == 4, "orders")
    await pilot.press("down", "down", "enter")  # the third row: order 0815
    await until(pilot, lambda: app.scan_pane.history, "collected")
    await until(pilot, lambda: any(o.state.value == "collected" for o in pane.orders),
                "list refreshed")


async def cards(pilot: Pilot[Any], app: WatchedApp, store: Store) -> None:
    await pilot.press("f3", "p", "p", "r")
    await until(pilot, lambda: len(app.query_one("#cards").printed) == 3, "printed")


async def void(pilot: Pilot[Any], app: WatchedApp, store: Store) -> None:
    await accepted(pilot, app, store)
    await pilot.press("f4")
    await until(pilot, lambda: len(app.query_one(VoidPane).rows) == 2, "voidable rows")
    await pilot.press("enter", *"wrong item")


async def report(pilot: Pilot[Any], app: WatchedApp, store: Store) -> None:
    await rejected(pilot, app, store)
    await type_code(pilot, store.other_store)
    await pilot.press("f3", "p", "f5")
    await until(pilot, lambda: app.query_one("#report").report.get("rejects") == 2, "figures")


SCENARIOS: dict[str, Scenario] = {"scan_accepted": accepted, "scan_rejected": rejected,
                                  "pickups": pickups, "cards": cards, "void": void,
                                  "report": report}


@pytest.mark.parametrize("lang", ["zh", "en"])
@pytest.mark.parametrize("screen", list(SCENARIOS))
def test_screen(screen: str, lang: str, store: Store, standin: StandIn,
                snap_compare: Callable[..., bool]) -> None:
    """GIVEN the simulated store at 15:02 with a few scans behind it
    WHEN the cashier opens the screen in the language
    THEN it looks exactly as the committed SVG."""
    app = WatchedApp(standin.path, lang=lang, status_poll_s=3600)

    async def run_before(pilot: Pilot[Any]) -> None:
        await connected(pilot, app)
        await SCENARIOS[screen](pilot, app, store)
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_daemon_down(store: Store, standin: StandIn,
                     snap_compare: Callable[..., bool]) -> None:
    """GIVEN the UI connected, with one verdict shown
    WHEN the daemon stops
    THEN the banner says the service is down and reconnecting, the bar says so first."""
    app = WatchedApp(standin.path, status_poll_s=3600)

    async def run_before(pilot: Pilot[Any]) -> None:
        await connected(pilot, app)
        await type_code(pilot, store.coffee)
        await until(pilot, lambda: app.scan_pane.history, "verdict")
        standin.stop()
        await until(pilot, lambda: app.link.attempts >= 2, "retrying")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
