"""Today's workshop sessions with their counts, and the check-in of a ticket with a party."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Input, Label

from edged.localapi import Op
from ui.base import Pane
from ui.verdict_panel import VerdictPanel
from ui.words import VerdictView, hhmm

MAX_PARTY = 99


class WorkshopsPane(Pane):
    """Sessions starting today (signed up per HQ, checked in at this box); check-in."""

    PANE_KEY = "ui.pane.workshops"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("r", "reload", "refresh", show=False)]
    COMMAND_KEYS: ClassVar[frozenset[str]] = frozenset({"r"})

    def __init__(self, *, id: str | None = None) -> None:
        """No sessions until the daemon answers."""
        super().__init__(id=id)
        self.sessions: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        """Table, party and code inputs, hint, the last check-in's verdict."""
        yield DataTable(id="workshop-table", cursor_type="row", zebra_stripes=True)
        yield Input(id="workshop-party", max_length=2, restrict=r"[0-9]*")
        yield Input(id="workshop-code", max_length=4096)
        yield Label(id="workshop-hint")
        yield VerdictPanel(id="workshop-verdict", compact=True)

    def on_mount(self) -> None:
        """Paint labels; hide the verdict until a check-in."""
        self.query_one("#workshop-verdict").display = False
        self.relabel()

    def relabel(self) -> None:
        """Redraw in the current language."""
        self.query_one("#workshop-party", Input).placeholder = self.t("ui.workshops.party")
        self.query_one("#workshop-code", Input).placeholder = self.t("ui.workshops.code")
        self.query_one("#workshop-hint", Label).update(self.t("ui.workshops.hint"))
        self.query_one("#workshop-verdict", VerdictPanel).relabel(self.lang)
        self._fill()

    def focus_default(self) -> None:
        """The code input: a scanner's burst lands there."""
        self.query_one("#workshop-code", Input).focus()

    def take_typing(self, character: str) -> bool:
        """Typing here is a ticket being scanned."""
        code = self.query_one("#workshop-code", Input)
        code.focus()
        code.insert_text_at_cursor(character)
        return True

    async def on_show_pane(self) -> None:
        """Fetch today's sessions."""
        await self.reload()

    async def action_reload(self) -> None:
        """Refresh the sessions."""
        await self.reload()

    async def reload(self) -> None:
        """Ask the daemon for today's sessions."""
        result = await self.cashier.call(Op.WORKSHOPS)
        if result is not None:
            self.sessions = [s for s in result.get("sessions", []) if isinstance(s, dict)]
            self._fill()

    def _fill(self) -> None:
        table = self.query_one(DataTable)
        table.clear(columns=True)
        table.add_column(Text(self.t("ui.workshops.col.time")), width=11)
        table.add_column(Text(self.t("ui.workshops.col.signed_up")), width=8)
        table.add_column(Text(self.t("ui.workshops.col.checked_in")), width=8)
        table.add_column(Text(self.t("ui.workshops.col.status")), width=7)
        table.add_column(Text(self.t("ui.workshops.col.title")))
        if not self.sessions:
            table.add_row(Text(self.t("ui.workshops.none"), style="dim"), Text(""), Text(""),
                          Text(""), Text(""))
        for s in self.sessions:
            status = str(s.get("status") or "open")
            table.add_row(Text(f"{hhmm(s.get('starts'))}-{hhmm(s.get('ends'))}"),
                          Text(f"{s.get('signed_up', 0)}/{s.get('capacity', 0)}"),
                          Text(str(s.get("checked_in", 0)), style="bold"),
                          Text(self.t("ui.workshops.status." + (
                              status if status in ("open", "cancelled") else "open"))),
                          Text(str(s.get("title") or s.get("session_id") or "")),
                          key=str(s.get("session_id")))

    @on(Input.Submitted, "#workshop-party")
    def _party_done(self) -> None:
        self.focus_default()

    @on(Input.Submitted, "#workshop-code")
    async def _code_done(self, event: Input.Submitted) -> None:
        code = event.value.strip()
        event.input.value = ""
        if code:
            await self.check_in(code)

    async def check_in(self, code: str) -> VerdictView | None:
        """Check a ticket in for the party typed (empty: the ticket's whole party)."""
        panel = self.query_one("#workshop-verdict", VerdictPanel)
        party_box = self.query_one("#workshop-party", Input)
        raw = party_box.value.strip()
        party = int(raw) if raw.isdigit() else None
        if raw and (party is None or not 1 <= party <= MAX_PARTY):
            # Nothing was sent or recorded: say what to fix; the ticket is scanned again.
            self.cashier.notify(self.t("ui.workshops.bad_party"), severity="error", timeout=6)
            self.app.bell()
            party_box.focus()
            return None
        view = await self.cashier.scan_pane.scan(code, "workshops", party=party)
        panel.display = True
        if view is None:
            panel.show_failure(self.cashier.last_error, self.lang, self.cashier.failure_advice())
        else:
            panel.show_verdict(view, self.lang)
            party_box.value = ""
        await self.reload()
        self.focus_default()
        return view
