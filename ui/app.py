"""The cashier's terminal: a Textual app over the daemon's local API.

It holds no business logic: every verdict, list and figure comes from the daemon through
:mod:`edged.localapi` (via :class:`ui.link.Link`), every word from :mod:`edge.i18n`.
Keyboard first: F1-F6 switch panes, F9 switches language, F10 (or Ctrl+C, Ctrl+Q) quits.
Works at 80x24 on a Linux console (no mouse, box-drawing characters only).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import ContentSwitcher, Input, Static

from edge import i18n
from edged.localapi import ApiError, DaemonUnavailable, ErrorCode, Op, Topic
from ui.base import Pane
from ui.cards import CardsPane
from ui.key_bar import KeyBar
from ui.link import REQUEST_TIMEOUT_S, Link
from ui.model import Status
from ui.pickups import PickupsPane
from ui.report import ReportPane
from ui.scan import ScanPane
from ui.status_bar import StatusBar
from ui.title_bar import TitleBar
from ui.void import VoidPane
from ui.words import VerdictView
from ui.workshops import WorkshopsPane

PANES = ("scan", "pickups", "cards", "void", "report", "workshops")
STATUS_POLL_S = 2.0
OWN_SOURCES = ("keyboard", "pickups", "workshops")  # the scan sources this app sends


class CashierApp(App[None]):
    """The counter UI for one box."""

    CSS_PATH = Path(__file__).with_name("app.tcss")
    TITLE = "store-edge"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f1", "pane('scan')", "scan", show=False, priority=True),
        Binding("f2", "pane('pickups')", "pickups", show=False, priority=True),
        Binding("f3", "pane('cards')", "cards", show=False, priority=True),
        Binding("f4", "pane('void')", "void", show=False, priority=True),
        Binding("f5", "pane('report')", "report", show=False, priority=True),
        Binding("f6", "pane('workshops')", "workshops", show=False, priority=True),
        Binding("f9", "switch_language", "language", show=False, priority=True),
        Binding("f10,ctrl+c", "quit", "quit", show=False, priority=True),
        Binding("escape", "pane('scan')", "scan", show=False),
    ]

    def __init__(self, socket_path: Path, lang: str = i18n.DEFAULT_LANG, till: str = "",
                 clock: Callable[[], float] = time.time,
                 status_poll_s: float = STATUS_POLL_S,
                 request_timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        """A UI for the daemon at ``socket_path``, in ``lang``, for till ``till``.

        ``clock`` is the wall clock the title bar and "time since" read (fixed in tests);
        no request waits longer than ``request_timeout_s``.
        """
        super().__init__()
        if lang not in i18n.LANGS:
            raise ValueError(f"language {lang!r} is not one of {i18n.LANGS}")
        self.socket_path = Path(socket_path)
        self.lang = lang
        self.till = till
        self.clock = clock
        self.status_poll_s = status_poll_s
        self.status: Status | None = None
        self.link_up = False
        self.link_detail = ""
        self.last_error = ""
        self.last_error_code = ""  # the localapi.ErrorCode of the last failure
        self.active = "scan"
        self.link = Link(self.socket_path, self._on_event, self._on_link, request_timeout_s)
        self.painted: list[tuple[float, VerdictView]] = []  # (perf_counter, view), for bench

    # -- layout --------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        """Title, panes, banner, status, keys."""
        yield TitleBar(id="title")
        with ContentSwitcher(initial="scan", id="panes"):
            yield ScanPane(id="scan")
            yield PickupsPane(id="pickups")
            yield CardsPane(id="cards")
            yield VoidPane(id="void")
            yield ReportPane(id="report")
            yield WorkshopsPane(id="workshops")
        yield Static(id="banner")
        yield StatusBar(id="status")
        yield KeyBar(id="keys")

    @property
    def till_name(self) -> str:
        """The till's name for the ledger: as given, else the box's device id."""
        return self.till or (self.status.device_id if self.status is not None else "")

    @property
    def scan_pane(self) -> ScanPane:
        """The home pane."""
        return self.query_one(ScanPane)

    def pane(self, name: str) -> Pane:
        """A pane by name."""
        return self.query_one(f"#{name}", Pane)

    def on_mount(self) -> None:
        """Start the daemon link and the status clock."""
        self._paint_chrome()
        self.scan_pane.focus_default()
        self.run_worker(self.link.run(), name="daemon-link", group="link", exit_on_error=False)
        self.set_interval(self.status_poll_s, self._poll_status, name="status-poll")

    # -- actions -------------------------------------------------------------------

    async def action_pane(self, name: str) -> None:
        """Show pane ``name``."""
        if name not in PANES:
            return
        self._show(name)
        await self.pane(name).on_show_pane()

    def _show(self, name: str) -> None:
        self.active = name
        self.query_one(ContentSwitcher).current = name
        self.pane(name).focus_default()
        self._paint_chrome()

    def type_into_scan(self, character: str) -> None:
        """Typing that arrived outside a text box: show the scan pane and type it there."""
        if self.active != "scan":
            self._show("scan")
        code = self.scan_pane.query_one("#code", Input)
        code.focus()
        code.insert_text_at_cursor(character)

    def action_switch_language(self) -> None:
        """Chinese <-> English."""
        self.lang = i18n.LANGS[(i18n.LANGS.index(self.lang) + 1) % len(i18n.LANGS)]
        for name in PANES:
            self.pane(name).relabel()
        self._paint_chrome()

    # -- talking to the daemon -------------------------------------------------------

    async def call(self, op: Op, show_error: bool = True, **args: Any) -> dict[str, Any] | None:
        """One request; on failure keep the reason in :attr:`last_error` and return None.

        Never raises for the daemon's failures: the counter stays usable.
        """
        try:
            return await self.link.request(op, **args)
        except DaemonUnavailable as exc:
            self.last_error, self.last_error_code = str(exc), exc.code
        except ApiError as exc:
            self.last_error, self.last_error_code = str(exc) or exc.code, exc.code
        if show_error:
            self.notify(i18n.t("ui.error", self.lang, message=self.last_error),
                        severity="error", timeout=6)
        return None

    def failure_advice(self) -> str | None:
        """The words (an ``edge.i18n`` key) for the last failure when it has its own advice."""
        return ("ui.scan.storage_full_advice" if self.last_error_code == ErrorCode.STORAGE_FULL
                else None)

    async def _on_link(self, up: bool, detail: str) -> None:
        if not self.is_running:
            return  # the link's last word while the app shuts down
        was_up, self.link_up, self.link_detail = self.link_up, up, detail
        if up:
            await self._poll_status()
            if not was_up:
                await self.pane(self.active).on_show_pane()
        self._paint_chrome()

    async def _on_event(self, topic: str, data: dict[str, Any]) -> None:
        if not self.is_running:
            return  # an event that arrived while the app shuts down: its panes are gone
        if topic == Topic.VERDICT:
            view = VerdictView.from_dict(data)
            self.scan_pane.add(view)
            # Another source's verdict while the cashier is elsewhere: say it there too.
            # This till's own scans (typed, or collected from the list) are already shown.
            mine = view.source in OWN_SOURCES and view.till == self.till_name
            if self.active != "scan" and not mine:
                head, what, _ = view.lines(self.lang)
                self.notify(f"{head}: {what}", severity="information" if
                            view.verdict.accepted else "error", timeout=8)
        elif topic == Topic.STATUS:
            old, self.status = self.status, Status.from_dict(data)
            self._status_changed(old)
        elif topic in (Topic.SYNC, Topic.DEVICE):
            self.status = (self.status or Status()).merged(topic, data)
        self._paint_chrome()

    async def _poll_status(self) -> None:
        if self.link.up:
            old = self.status
            try:
                self.status = Status.from_dict(await self.link.request(Op.STATUS))
            except ApiError as exc:
                self.link_detail = str(exc)
            self._status_changed(old)
        self._paint_chrome()

    # -- painting ------------------------------------------------------------------

    def _status_changed(self, old: Status | None) -> None:
        # A scan the daemon could not record (disk full...) is said loudly, once.
        new = self.status
        if new is not None and new.last_error and (old is None or
                                                   old.last_error != new.last_error):
            self.notify(new.last_error, title=i18n.t("ui.scan.failed", self.lang),
                        severity="error", timeout=30)

    def _paint_chrome(self) -> None:
        if not self.is_running:
            return  # shutting down: the screens are going, a late poll or event paints nothing
        now = self.clock()
        s = self.status
        store = " ".join(x for x in (s.store_name, s.device_id) if x) if s else ""
        pane_key = f"ui.pane.{self.active}"
        self.query_one(TitleBar).paint(store, pane_key, now, self.lang)
        self.query_one(StatusBar).paint(s, self.link_up, now, self.lang)
        self.query_one(KeyBar).paint(pane_key, self.lang)
        banner = self.query_one("#banner", Static)
        banner.display = not self.link_up
        if not self.link_up:
            # The OS's reason, not the socket path (which the cashier cannot act on).
            detail = self.link_detail.rsplit(": ", 1)[-1].split("] ")[-1] or "-"
            banner.update(i18n.t("ui.link.down", self.lang, detail=detail)
                          if self.link.attempts > 1 or self.link_detail
                          else i18n.t("ui.link.waiting", self.lang))

    def verdict_painted(self, view: VerdictView) -> None:
        """Note when a verdict reached the screen (after the next refresh), for bench/ui.py."""
        self.call_after_refresh(lambda: self.painted.append((time.perf_counter(), view)))

