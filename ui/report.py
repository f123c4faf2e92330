"""Today's figures, and the end-of-day slip."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Label, Static

from edge.i18n import CATALOGUE
from edge.localapi import Op
from ui.base import Pane


class ReportPane(Pane):
    """Cards printed, coupons by campaign, pickups collected, rejects by reason."""

    PANE_KEY = "ui.pane.report"
    can_focus = True
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
        day = str(r.get("day") or "")
        grid = Table.grid(padding=(0, 2), expand=True)
        grid.add_column(ratio=1)
        grid.add_column(ratio=1)
        left, right = Text(), Text()
        left.append(self.t("ui.report.title", day=day) + "\n\n", style="bold")
        for key, field in (("ui.report.scans", "scans"), ("ui.report.cards", "cards_printed"),
                           ("ui.report.pickups", "pickups_collected"),
                           ("ui.report.voids", "voids")):
            left.append(f"{self.t(key)}: ")
            left.append(f"{r.get(field, '-')}\n", style="bold")
        right.append(self.t("ui.report.coupons") + "\n", style="bold")
        _counts(right, r.get("coupons_by_campaign"), lambda k: k, self.t("ui.report.none"))
        right.append("\n" + self.t("ui.report.rejects") + "\n", style="bold")
        _counts(right, r.get("rejects_by_reason"), self._reason, self.t("ui.report.none"))
        grid.add_row(left, right)
        self.query_one("#report-body", Static).update(grid)
        self.query_one("#report-hint", Label).update(self.t("ui.report.hint"))
        self.query_one("#report-message", Static).update(self.message)

    def _reason(self, code: str) -> str:
        key = "ui.short." + code
        return self.t(key) if key in CATALOGUE else code


def _counts(text: Text, counts: object, name: Callable[[str], str], none: str) -> None:
    if not isinstance(counts, dict) or not counts:
        text.append(f"  {none}\n", style="dim")
        return
    for key, n in sorted(counts.items(), key=lambda kv: (-int(kv[1]), str(kv[0]))):
        text.append(f"  {name(str(key))}: ")
        text.append(f"{n}\n", style="bold")
