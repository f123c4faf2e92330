"""Today's figures, and the end-of-day slip."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Label, Static

from edge.i18n import CATALOGUE
from edged.localapi import Op
from ui.base import Pane


class ReportPane(Pane):
    """Cards printed, coupons by campaign, pickups collected, rejects by reason."""

    PANE_KEY = "ui.pane.report"
    can_focus = True
    COMMAND_KEYS = frozenset({"p", "r"})
    BINDINGS: ClassVar[list[BindingType]] = [Binding("p", "print_report", "print", show=False),
                Binding("r", "refresh_report", "refresh", show=False)]

    def __init__(self, *, id: str | None = None) -> None:
        """No figures until the daemon answers."""
        super().__init__(id=id)
        self.report: dict[str, Any] = {}
        self.message = ""

    def compose(self) -> ComposeResult:
        """Figures, keys, message."""
        yield Static(id="report-body")
        yield Label(id="report-hint")
        yield Static(id="report-message")

    def on_mount(self) -> None:
        """Paint."""
        self.relabel()

    def focus_default(self) -> None:
        """The pane, so P and R act."""
        self.focus()

    async def on_show_pane(self) -> None:
        """Fetch the figures."""
        await self.action_refresh_report()

    async def action_refresh_report(self) -> None:
        """Ask the daemon for today's report."""
        result = await self.cashier.call(Op.REPORT)
        if result is not None:
            self.report = result
        self.relabel()

    async def action_print_report(self) -> None:
        """Print the end-of-day slip."""
        result = await self.cashier.call(Op.PRINT_REPORT)
        self.message = (self.t("ui.error", message=self.cashier.last_error) if result is None
                        else self.t("ui.report.printed", job=result.get("job_id", "")))
        self.relabel()

    def relabel(self) -> None:
        """Redraw in the current language."""
        r = self.report
        start = r.get("day_start")
        day = time.strftime("%Y-%m-%d", time.localtime(float(start))) if start else ""
        grid = Table.grid(padding=(0, 4), expand=True)
        grid.add_column(ratio=1)
        grid.add_column(ratio=1)
        left = _figures(self.t("ui.report.title", day=day), [
            (self.t(key), r.get(field, "-")) for key, field in (
                ("ui.report.redemptions", "redemptions"),
                ("ui.report.pickups", "pickups_collected"),
                ("ui.report.rejects_total", "rejects"), ("ui.report.voids", "voids"),
                ("ui.report.cards", "cards_printed"))], "")
        none = self.t("ui.report.none")
        right = Table.grid()
        right.add_row(_figures(self.t("ui.report.coupons"),
                               _sorted(r.get("redemptions_by_campaign"), str), none))
        right.add_row("")
        right.add_row(_figures(self.t("ui.report.rejects"),
                               _sorted(r.get("rejects_by_reason"), self._reason), none))
        grid.add_row(left, right)
        self.query_one("#report-body", Static).update(grid)
        self.query_one("#report-hint", Label).update(self.t("ui.report.hint"))
        self.query_one("#report-message", Static).update(self.message)

    def _reason(self, code: str) -> str:
        key = "ui.short." + code
        return self.t(key) if key in CATALOGUE else code


def _sorted(counts: object, name: Callable[[str], str]) -> list[tuple[str, object]]:
    if not isinstance(counts, dict):
        return []
    return [(name(str(k)), n) for k, n in sorted(counts.items(),
                                                 key=lambda kv: (-int(kv[1]), str(kv[0])))]


def _figures(title: str, rows: list[tuple[str, object]], none: str) -> Table:
    """A titled block of label / right-aligned number rows."""
    table = Table.grid(padding=(0, 2))
    table.add_column()
    table.add_column(justify="right")
    table.add_row(Text(title, style="bold"), "")
    for label, n in rows:
        table.add_row(f"  {label}", Text(str(n), style="bold"))
    if not rows and none:
        table.add_row(Text(f"  {none}", style="dim"), "")
    return table
