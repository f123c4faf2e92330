"""Helpers for driving the cashier app in tests."""

from __future__ import annotations

import calendar
import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from textual import events
from textual.keys import _character_to_key
from textual.pilot import Pilot
from textual.widgets import Static

from ui.app import CashierApp
from ui.verdict_panel import VerdictPanel

# 2026-11-25 15:02:00 in Asia/Shanghai (07:02 UTC): the store's fixed "now".
FIXED_NOW = float(calendar.timegm((2026, 11, 25, 7, 2, 0)))
ZONE = "Asia/Shanghai"


class WatchedApp(CashierApp):
    """The real app, counting the terminal bells it rings."""

    def __init__(self, socket_path: Path, **kw: Any) -> None:
        kw.setdefault("clock", lambda: FIXED_NOW)
        kw.setdefault("till", "T2")
        super().__init__(socket_path, **kw)
        self.bells = 0

    def bell(self) -> None:
        self.bells += 1
        super().bell()


async def until(pilot: Pilot[Any], cond: Callable[[], object], what: str,
                limit_s: float = 10.0) -> None:
    """Let the app run until ``cond()`` holds; fail naming ``what`` if it never does."""
    deadline = time.monotonic() + limit_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        await pilot.pause(0.02)


def plain(widget: Static) -> str:
    """What a Static shows, as plain text."""
    content = widget.content
    plain = getattr(content, "plain", None)
    if plain is not None:
        return str(plain)
    return str(content)


def rendered(widget: Static, width: int = 78) -> str:
    """What a Static shows, rendered to text (for tables and grids)."""
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(widget.content)
    return console.export_text()


def headline(app: CashierApp, selector: str = "#verdict") -> str:
    """The verdict panel's headline words (drawn in block letters on screen)."""
    return app.query_one(selector, VerdictPanel).headline


def panel_text(app: CashierApp, selector: str = "#verdict") -> str:
    """The verdict panel's text."""
    return plain(app.query_one(selector, VerdictPanel))


async def connected(pilot: Pilot[Any], app: CashierApp) -> None:
    """Wait until the app has a status from the daemon."""
    await until(pilot, lambda: app.link_up and app.status is not None, "connected with status")


async def type_code(pilot: Pilot[Any], code: str) -> None:
    """Type a code as a keyboard-wedge scanner does: a burst of keys, then Enter.

    The keys go through the app's driver queue back to back, as a scanner's USB HID
    reports arrive, without the pilot's per-key settling (which would also make a
    100-character code take seconds).
    """
    app = pilot.app
    assert app._driver is not None
    for ch in code:
        event = events.Key(ch if ch.isalnum() else _character_to_key(ch), ch)
        event.set_sender(app)
        app._driver.send_message(event)
    await pilot.press("enter")
