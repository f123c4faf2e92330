"""The big verdict panel: green ACCEPTED or red REJECTED, readable from a metre away."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from edge import i18n
from ui.big_text import block_lines
from ui.words import VerdictView, hhmm, source

HEADLINE_WIDTH = 74  # columns inside the panel on an 80-column terminal


class VerdictPanel(Static):
    """Shows one verdict (or a ready / failed state) in a full-colour block."""

    def __init__(self, *, id: str | None = None, compact: bool = False) -> None:
        """An idle panel; ``compact`` drops the blank padding lines (for small panes)."""
        super().__init__(id=id, classes="verdict -idle")
        self.view: VerdictView | None = None
        self.failure: str | None = None
        self.failure_advice: str | None = None  # an i18n key; None: the daemon did not answer
        self.reopened = False
        self.compact = compact
        self.lang = i18n.DEFAULT_LANG
        self.headline = ""  # the headline's words, whether drawn in block letters or not

    def show_verdict(self, view: VerdictView, lang: str, reopened: bool = False) -> None:
        """Show ``view``."""
        self.view, self.failure, self.reopened, self.lang = view, None, reopened, lang
        self._paint()

    def show_failure(self, detail: str, lang: str, advice: str | None = None) -> None:
        """Show that no verdict came back (daemon down or silent, or ``advice``'s case)."""
        self.view, self.failure, self.failure_advice, self.lang = None, detail, advice, lang
        self._paint()

    def show_idle(self, lang: str) -> None:
        """Show the ready-to-scan prompt."""
        self.view, self.failure, self.lang = None, None, lang
        self._paint()

    def relabel(self, lang: str) -> None:
        """Repaint in ``lang``."""
        self.lang = lang
        self._paint()

    def _paint(self) -> None:
        lang = self.lang
        for cls in ("-idle", "-accepted", "-rejected", "-failed"):
            self.remove_class(cls)
        text = Text(justify="center")
        if self.failure is not None:
            self.add_class("-failed")
            self._headline(text, i18n.t("ui.scan.failed", lang))
            text.append(i18n.t(self.failure_advice or "ui.scan.failed_advice", lang) + "\n",
                        style="bold")
            text.append(self.failure)
        elif self.view is None:
            self.add_class("-idle")
            self._headline(text, i18n.t("ui.scan.ready", lang))
            text.append(i18n.t("ui.scan.ready_hint", lang))
        else:
            v = self.view.verdict
            self.add_class("-accepted" if v.accepted else "-rejected")
            head, what, advice = self.view.lines(lang)
            self._headline(text, head)
            text.append(what + "\n", style="bold")
            if advice:
                text.append(advice + "\n")
            if not v.clock_trusted:
                text.append(i18n.t("clock_unsure", lang) + "\n", style="italic")
            meta = [hhmm(v.decided_at)]
            meta.append(i18n.t("ui.scan.decision", lang, id=v.decision_id)
                        if v.decision_id is not None else i18n.t("ui.scan.not_recorded", lang))
            if self.view.source:
                meta.append(source(self.view.source, lang))
            if self.view.till:
                meta.append(self.view.till)
            if v.code_id:
                meta.append(v.code_id)
            if self.reopened:
                meta.append(i18n.t("ui.scan.reopened", lang))
            text.append("  ·  ".join(meta), style="dim" if v.accepted else "")
        self.update(text)


    def _headline(self, text: Text, headline: str) -> None:
        self.headline = headline
        big = None if self.compact else block_lines(headline, HEADLINE_WIDTH)
        if big is None:
            text.append(_spaced(headline) + "\n", style="bold")
            return
        width = max(len(row) for row in big)
        for row in big:
            text.append(row.ljust(width) + "\n")  # same width, so centring keeps the shape


def _spaced(headline: str) -> str:
    """Letter-space a headline so it reads as one block from a distance."""
    return "   ".join(headline) if len(headline) <= 4 else " ".join(headline)
