"""The bottom line: the function keys and what they do, in the cashier's language."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from edge import i18n

# (key shown, catalogue key) in screen order; the app binds the same keys.
KEYS: tuple[tuple[str, str], ...] = (
    ("F1", "ui.pane.scan"), ("F2", "ui.pane.pickups"), ("F3", "ui.pane.cards"),
    ("F4", "ui.pane.void"), ("F5", "ui.pane.report"), ("F6", "ui.pane.workshops"),
    ("F9", "ui.key.lang"),
    ("F10", "ui.key.quit"),
)


# Labels too long for an 80-column line with every key on it: the bar shows a short word.
SHORT: dict[str, str] = {"ui.pane.workshops": "ui.key.workshops"}


class KeyBar(Static):
    """``F1 扫码  F2 取货 ...`` with the current pane highlighted."""

    def paint(self, active: str, lang: str) -> None:
        """Redraw with pane key ``active`` (a catalogue key) highlighted."""
        text = Text(no_wrap=True, overflow="ellipsis")
        for key, label_key in KEYS:
            text.append(f" {key}", style="bold reverse")
            style = "bold underline" if label_key == active else ""
            # One space apart: eight keys fill 80 columns (78 in Chinese, 80 in English).
            text.append(f" {i18n.t(SHORT.get(label_key, label_key), lang)} ", style=style)
        self.update(text)
