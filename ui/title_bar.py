"""The top line: the store, the pane's name and the time."""

from __future__ import annotations

import time

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from edge import i18n


class TitleBar(Static):
    """``门店助手 · 望京店 BJ001-T1        扫码        11-25 15:02``."""

    def paint(self, store: str, pane_key: str, now: float, lang: str) -> None:
        """Redraw."""
        grid = Table.grid(expand=True)
        grid.add_column(justify="left", ratio=2, no_wrap=True)
        grid.add_column(justify="center", ratio=1, no_wrap=True)
        grid.add_column(justify="right", ratio=2, no_wrap=True)
        left = Text(f" {i18n.t('ui.title', lang)}", style="bold")
        if store:
            left.append(f" · {store}")
        grid.add_row(left, Text(i18n.t(pane_key, lang), style="bold"),
                     Text(time.strftime("%m-%d %H:%M ", time.localtime(now))))
        self.update(grid)
