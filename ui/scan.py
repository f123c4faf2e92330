"""The home pane: the big verdict, the scan input, and the last scans."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.widgets import Input, Label, OptionList
from textual.widgets.option_list import Option

from edged.localapi import Op
from ui.base import Pane
from ui.verdict_panel import VerdictPanel
from ui.words import VerdictView

HISTORY = 50


class ScanPane(Pane):
    """Typed codes, keyboard-wedge bursts and pickup numbers go in; verdicts come out."""

    PANE_KEY = "ui.pane.scan"

    def __init__(self, *, id: str | None = None) -> None:
        """An empty history."""
        super().__init__(id=id)
        self.history: list[VerdictView] = []  # newest first
        self._seen: set[int] = set()  # decision ids already listed (a scan and its event)

    def compose(self) -> ComposeResult:
        """Verdict panel, input, history."""
        yield VerdictPanel(id="verdict")
        yield Input(id="code", max_length=4096, select_on_focus=False)
        yield Label(id="history-label")
        yield OptionList(id="history")

    def on_mount(self) -> None:
        """Paint the idle state."""
        self.relabel()

    def relabel(self) -> None:
        """Redraw every text in the current language."""
        self.query_one(VerdictPanel).relabel(self.lang)
        self.query_one("#code", Input).placeholder = self.t("ui.scan.placeholder")
        self.query_one("#history-label", Label).update(self.t("ui.scan.history"))
        self._fill_history()

    def focus_default(self) -> None:
        """The input, so a scanner's burst lands there."""
        self.query_one("#code", Input).focus()

    @on(Input.Submitted, "#code")
    async def _submitted(self, event: Input.Submitted) -> None:
        code = event.value.strip()
        event.input.value = ""
        if code:
            await self.scan(code, "keyboard")

    async def scan(self, code: str, source: str, party: int | None = None) -> VerdictView | None:
        """Send ``code`` to the daemon and show its verdict (or that none came).

        ``party``: the people checking in on a workshop ticket (default: its whole party).
        """
        extra = {} if party is None else {"party": party}
        result = await self.cashier.call(Op.SCAN, show_error=False, code=code,
                                         till=self.cashier.till_name, source=source, **extra)
        panel = self.query_one(VerdictPanel)
        if result is None:
            panel.show_failure(self.cashier.last_error, self.lang, self.cashier.failure_advice())
            self.app.bell()
            return None
        view = VerdictView.from_dict({"till": self.cashier.till_name, **result}, source)
        self.add(view)
        return view

    def add(self, view: VerdictView) -> None:
        """Show a verdict (from this input or from the daemon's stream) and list it."""
        did = view.verdict.decision_id
        if did is not None and did in self._seen:
            return
        if did is not None:
            self._seen.add(did)
        self.history.insert(0, view)
        del self.history[HISTORY:]
        self.query_one(VerdictPanel).show_verdict(view, self.lang)
        if not view.verdict.accepted:
            self.app.bell()
        self._fill_history()
        self.cashier.verdict_painted(view)

    def _fill_history(self) -> None:
        options = self.query_one("#history", OptionList)
        options.clear_options()
        options.add_options([Option(_history_line(v, self.lang), id=str(i))
                             for i, v in enumerate(self.history)])
        if self.history:
            options.highlighted = 0

    @on(OptionList.OptionSelected, "#history")
    def _reopen(self, event: OptionList.OptionSelected) -> None:
        view = self.history[int(event.option.id or 0)]
        self.query_one(VerdictPanel).show_verdict(view, self.lang, reopened=True)
        self.focus_default()


def _history_line(view: VerdictView, lang: str) -> Text:
    ok = view.verdict.accepted
    line = Text()
    line.append(" + " if ok else " X ", style="bold black on green" if ok else "bold white on red")
    line.append(" " + view.short(lang))
    return line
