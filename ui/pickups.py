"""Today's pickup orders: search by number or name, collect with one key."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Input, Label

from edged.localapi import Op
from ui.base import Pane
from ui.model import PickupRow, PickupState
from ui.verdict_panel import VerdictPanel
from ui.words import VerdictView, hhmm

_STATE_STYLE = {PickupState.WAITING: "bold", PickupState.COLLECTED: "green",
                PickupState.CANCELLED: "dim strike", PickupState.LATE: "bold red"}


SEARCH_MAX = 16  # what the search box takes as a search; a longer entry is a scanned code


class PickupTable(DataTable[Text]):
    """The orders list; Enter collects the highlighted order."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("enter", "collect", "collect", show=False)]

    async def action_collect(self) -> None:
        """Collect the highlighted order."""
        pane = self.screen.query_one(PickupsPane)
        await pane.collect_selected()


class PickupsPane(Pane):
    """The list of today's orders, filtered as the cashier types."""

    PANE_KEY = "ui.pane.pickups"

    def __init__(self, *, id: str | None = None) -> None:
        """No orders until the daemon answers."""
        super().__init__(id=id)
        self.orders: list[PickupRow] = []
        self.shown: list[PickupRow] = []

    def compose(self) -> ComposeResult:
        """Search box, table, counts, last collect's verdict."""
        yield Input(id="pickup-search", max_length=4096)  # a scanned code may land here
        yield PickupTable(id="pickup-table", cursor_type="row", zebra_stripes=True)
        yield Label(id="pickup-count")
        yield Label(id="pickup-hint")
        yield VerdictPanel(id="pickup-verdict", compact=True)

    def on_mount(self) -> None:
        """Paint labels; hide the verdict until a collect."""
        self.query_one("#pickup-verdict").display = False
        self.relabel()

    def relabel(self) -> None:
        """Redraw in the current language."""
        self.query_one("#pickup-search", Input).placeholder = self.t("ui.pickups.search")
        self.query_one("#pickup-hint", Label).update(self.t("ui.pickups.hint"))
        self.query_one("#pickup-verdict", VerdictPanel).relabel(self.lang)
        self._fill()

    def focus_default(self) -> None:
        """The table: arrows move, Enter collects; typing goes to the search box."""
        self.query_one(PickupTable).focus()

    async def on_show_pane(self) -> None:
        """Fetch today's orders."""
        await self.reload()

    async def reload(self) -> None:
        """Ask the daemon for today's orders."""
        result = await self.cashier.call(Op.PICKUPS)
        if result is not None:
            self.orders = [PickupRow.from_dict(o) for o in result.get("orders", [])
                           if isinstance(o, dict)]
            self._fill()

    @on(Input.Changed, "#pickup-search")
    def _search(self) -> None:
        self._fill()

    @on(Input.Submitted, "#pickup-search")
    async def _search_done(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if len(text) > SEARCH_MAX:
            # Longer than any number or name: a pickup code scanned here. Decide it.
            event.input.value = ""
            await self.collect(text)
        self.focus_default()

    def take_typing(self, character: str) -> bool:
        """Typing on the list searches it."""
        search = self.query_one("#pickup-search", Input)
        search.focus()
        search.insert_text_at_cursor(character)
        return True

    def _fill(self) -> None:
        table = self.query_one(PickupTable)
        was = self.shown[table.cursor_row] if 0 <= table.cursor_row < len(self.shown) else None
        needle = self.query_one("#pickup-search", Input).value
        self.shown = [o for o in self.orders if o.matches(needle)]
        table.clear(columns=True)
        table.add_column(Text(self.t("ui.pickups.col.number")), width=6)
        table.add_column(Text(self.t("ui.pickups.col.status")), width=9)
        table.add_column(Text(self.t("ui.pickups.col.window")), width=11)
        table.add_column(Text(self.t("ui.pickups.col.customer")), width=8)
        table.add_column(Text(self.t("ui.pickups.col.items")))
        for o in self.shown:
            style = _STATE_STYLE[o.state]
            table.add_row(Text(o.number, style="bold"),
                          Text(self.t("ui.pickups.status." + o.state.value), style=style),
                          Text(f"{hhmm(o.window_start)}-{hhmm(o.window_end)}"),
                          Text(o.customer), Text(o.items), key=o.order_id or o.number)
        if was is not None:  # the cursor stays on the order it was on
            keep = [i for i, o in enumerate(self.shown) if o.order_id == was.order_id]
            if keep:
                table.move_cursor(row=keep[0])
        counts = {s: sum(1 for o in self.orders if o.state is s) for s in PickupState}
        label = (self.t("ui.pickups.none") if not self.orders else self.t(
            "ui.pickups.count", total=len(self.orders), waiting=counts[PickupState.WAITING],
            collected=counts[PickupState.COLLECTED], late=counts[PickupState.LATE],
            cancelled=counts[PickupState.CANCELLED]))
        self.query_one("#pickup-count", Label).update(label)

    async def collect_selected(self) -> None:
        """Collect the highlighted order: scan its number through the daemon."""
        table = self.query_one(PickupTable)
        if not self.shown or table.cursor_row < 0 or table.cursor_row >= len(self.shown):
            return
        await self.collect(self.shown[table.cursor_row].number)

    async def collect(self, code: str) -> VerdictView | None:
        """Scan ``code`` (an order number or a pickup code) like the till would.

        The verdict shows here and on the scan pane.
        """
        view = await self.cashier.scan_pane.scan(code, "pickups")
        panel = self.query_one("#pickup-verdict", VerdictPanel)
        panel.display = True
        if view is None:
            panel.show_failure(self.cashier.last_error, self.lang, self.cashier.failure_advice())
        else:
            panel.show_verdict(view, self.lang)
        await self.reload()
        return view
