"""Void a recent redemption: pick it, give a reason, confirm."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Label, Static

from edge import i18n
from edged.localapi import Op
from ui.base import Pane
from ui.model import RecentDecision
from ui.words import VerdictView, hhmm


class ConfirmVoid(ModalScreen[bool]):
    """Y voids, N or Escape keeps it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "yes"), Binding("n,escape", "answer(False)", "no")]

    def __init__(self, decision_id: int, what: str, reason: str, lang: str) -> None:
        """Ask about ``decision_id``."""
        super().__init__()
        self.decision_id, self.what, self.reason, self.lang = decision_id, what, reason, lang

    def compose(self) -> ComposeResult:
        """The question and the two keys."""
        with Vertical(id="confirm-box"):
            yield Static(Text(i18n.t("ui.void.confirm", self.lang, id=self.decision_id),
                              style="bold"), id="confirm-title")
            yield Static(self.what)
            yield Static(i18n.t("ui.void.confirm_reason", self.lang, reason=self.reason))
            yield Static(Text(f"{i18n.t('ui.void.yes', self.lang)}      "
                              f"{i18n.t('ui.void.no', self.lang)}", style="bold"),
                         id="confirm-keys")

    def action_answer(self, yes: bool) -> None:
        """Close with the answer."""
        self.dismiss(yes)


class VoidTable(DataTable[Text]):
    """Recent redemptions; Enter moves on to the reason."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("enter", "pick", "pick", show=False)]

    def action_pick(self) -> None:
        """Go to the reason box."""
        self.screen.query_one("#void-reason", Input).focus()


class VoidPane(Pane):
    """Recent accepted decisions that can still be voided."""

    PANE_KEY = "ui.pane.void"

    def __init__(self, *, id: str | None = None) -> None:
        """Nothing listed until the daemon answers."""
        super().__init__(id=id)
        self.rows: list[RecentDecision] = []
        self.message = Text()

    def compose(self) -> ComposeResult:
        """Title, table, reason, message."""
        yield Label(id="void-title")
        yield VoidTable(id="void-table", cursor_type="row", zebra_stripes=True)
        yield Label(id="void-hint")
        yield Input(id="void-reason", max_length=200)
        yield Static(id="void-message")

    def on_mount(self) -> None:
        """Paint."""
        self.relabel()

    def focus_default(self) -> None:
        """The table."""
        self.query_one(VoidTable).focus()

    async def on_show_pane(self) -> None:
        """Fetch recent decisions."""
        await self.reload()

    async def reload(self) -> None:
        """Ask the daemon for recent decisions; keep the accepted, unvoided, voidable ones."""
        result = await self.cashier.call(Op.RECENT, limit=50)
        if result is not None:
            found = [RecentDecision.from_dict(d) for d in result.get("decisions", [])
                     if isinstance(d, dict)]
            self.rows = [d for d in found if d.verdict.get("accepted") and d.voided_at is None
                         and d.voidable and d.verdict.get("decision_id") is not None]
        self._fill()

    def relabel(self) -> None:
        """Redraw in the current language."""
        self.query_one("#void-title", Label).update(Text(self.t("ui.void.title"), style="bold"))
        self.query_one("#void-hint", Label).update(self.t("ui.void.hint"))
        self.query_one("#void-reason", Input).placeholder = self.t("ui.void.reason")
        self.query_one("#void-message", Static).update(self.message)
        self._fill()

    def _what(self, d: RecentDecision) -> str:
        return VerdictView.from_dict(d.verdict).lines(self.lang)[1]

    def _fill(self) -> None:
        table = self.query_one(VoidTable)
        table.clear(columns=True)
        table.add_column(Text(self.t("ui.void.col.id")), width=6)
        table.add_column(Text(self.t("ui.void.col.at")), width=5)
        table.add_column(Text(self.t("ui.void.col.till")), width=6)
        table.add_column(Text(self.t("ui.void.col.what")))
        for d in self.rows:
            v = d.verdict
            table.add_row(Text(str(v["decision_id"]), style="bold"),
                          Text(hhmm(float(v.get("decided_at") or 0))), Text(d.till),
                          Text(self._what(d)), key=str(v["decision_id"]))
        self.query_one("#void-message", Static).update(
            self.message or ("" if self.rows else self.t("ui.void.none")))

    def _say(self, text: str, style: str) -> None:
        self.message = Text(text, style=style)
        self.query_one("#void-message", Static).update(self.message)

    @on(Input.Submitted, "#void-reason")
    async def _reason_given(self, event: Input.Submitted) -> None:
        table = self.query_one(VoidTable)
        if not self.rows or not 0 <= table.cursor_row < len(self.rows):
            self._say(self.t("ui.void.need_row"), "bold red")
            return
        reason = event.value.strip()
        if not reason:
            self._say(self.t("ui.void.need_reason"), "bold red")
            return
        row = self.rows[table.cursor_row]
        did = int(row.verdict["decision_id"])
        confirm = ConfirmVoid(did, self._what(row), reason, self.lang)
        self.app.push_screen(confirm, lambda yes: self._confirmed(did, reason, bool(yes)))

    async def _confirmed(self, decision_id: int, reason: str, yes: bool) -> None:
        if not yes:
            self.focus_default()
            return
        await self.void(decision_id, reason)

    async def void(self, decision_id: int, reason: str) -> bool:
        """Ask the daemon to void; show what it said. Returns whether it voided."""
        result = await self.cashier.call(Op.VOID, show_error=False, decision_id=decision_id,
                                         reason=reason, till=self.cashier.till_name)
        if result is None:
            self._say(self.t("ui.void.refused", message=self.cashier.last_error), "bold red")
            return False
        self.query_one("#void-reason", Input).value = ""
        self._say(self.t("ui.void.done", id=decision_id), "bold green")
        await self.reload()
        self.focus_default()
        return True
