"""Packaging cards: print one with one key, reprint the last, see today's count."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Label, Static

from edged.localapi import Op
from ui.base import Pane
from ui.model import DeviceState
from ui.words import device, hhmm


@dataclass(frozen=True, slots=True)
class PrintedCard:
    """A card sent to the printer from this UI."""

    serial: int
    job_id: str
    at: float
    reprint: bool = False
    url: str = ""


class CardsPane(Pane):
    """P or Enter prints a card, R reprints the last one."""

    PANE_KEY = "ui.pane.cards"
    can_focus = True
    COMMAND_KEYS = frozenset({"p", "r"})
    BINDINGS: ClassVar[list[BindingType]] = [Binding("enter,p", "print_card", "print", show=False),
                Binding("r", "reprint", "reprint", show=False)]

    def __init__(self, *, id: str | None = None) -> None:
        """Nothing printed yet this session."""
        super().__init__(id=id)
        self.today: int | None = None
        self.printed: list[PrintedCard] = []  # newest first
        self.message = ""

    def compose(self) -> ComposeResult:
        """Count, keys, message, session list."""
        yield Static(id="cards-today")
        yield Label(id="cards-hint")
        yield Static(id="cards-message")
        yield Label(id="cards-session-label")
        yield Static(id="cards-session")

    def on_mount(self) -> None:
        """Paint."""
        self.relabel()

    def focus_default(self) -> None:
        """The pane itself, so P / Enter / R act."""
        self.focus()

    async def on_show_pane(self) -> None:
        """Fetch today's count."""
        await self.reload()

    async def reload(self) -> None:
        """Today's count comes from the daemon's report."""
        result = await self.cashier.call(Op.REPORT)
        if result is not None:
            self.today = int(result.get("cards_printed", 0))
        self.relabel()

    def relabel(self) -> None:
        """Redraw in the current language."""
        n = "-" if self.today is None else str(self.today)
        self.query_one("#cards-today", Static).update(
            Text(self.t("ui.cards.today", n=n), style="bold", justify="center"))
        self.query_one("#cards-hint", Label).update(self.t("ui.cards.hint"))
        self.query_one("#cards-message", Static).update(self.message)
        self.query_one("#cards-session-label", Label).update(self.t("ui.cards.session"))
        lines = Text()
        for c in self.printed[:8]:
            mark = "R" if c.reprint else "+"
            lines.append(f" {mark} {hhmm(c.at)}  #{c.serial:<6}  {c.job_id}\n")
        self.query_one("#cards-session", Static).update(lines)

    def _queued_note(self) -> str:
        status = self.cashier.status
        if status is not None and status.printer not in (DeviceState.READY, DeviceState.UNKNOWN):
            return "\n" + self.t("ui.cards.queued", state=device(status.printer, self.lang))
        return ""

    async def action_print_card(self) -> None:
        """Print a new card."""
        result = await self.cashier.call(Op.PRINT_CARD)
        if result is None:
            self.message = self.t("ui.error", message=self.cashier.last_error)
        else:
            card = PrintedCard(int(result.get("serial", 0)), str(result.get("job_id", "")),
                               self.cashier.clock(), url=str(result.get("url", "")))
            self.printed.insert(0, card)
            self.message = self.t("ui.cards.printed", serial=card.serial,
                                  job=card.job_id) + self._queued_note()
        await self.reload()

    async def action_reprint(self) -> None:
        """Reprint the last card."""
        result = await self.cashier.call(Op.REPRINT, count=1)
        if result is None:
            self.message = self.t("ui.error", message=self.cashier.last_error)
        else:
            jobs = [str(j) for j in result.get("job_ids", [])]
            last = self.printed[0].serial if self.printed else 0
            for j in jobs:
                self.printed.insert(0, PrintedCard(last, j, self.cashier.clock(), reprint=True))
            self.message = self.t("ui.cards.reprinted", n=len(jobs),
                                  jobs=", ".join(jobs)) + self._queued_note()
        self.relabel()
