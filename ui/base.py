"""What every pane of the cashier app shares: the app, relabelling on a language switch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from textual.containers import Vertical

from edge import i18n

if TYPE_CHECKING:
    from ui.app import CashierApp


class Pane(Vertical):
    """A full-width pane under the title bar; one is shown at a time."""

    PANE_KEY = ""  # catalogue key of the pane's name

    @property
    def cashier(self) -> CashierApp:
        """The app, typed."""
        return cast("CashierApp", self.app)

    @property
    def lang(self) -> str:
        """The language the cashier chose."""
        return self.cashier.lang

    def t(self, key: str, **values: Any) -> str:
        """A catalogue text in the current language."""
        return i18n.t(key, self.lang, **values)

    def relabel(self) -> None:
        """Redraw every text after a language switch."""

    async def on_show_pane(self) -> None:
        """Called when the pane becomes the visible one (refresh its data)."""

    def focus_default(self) -> None:
        """Put the focus where the cashier's next key belongs."""
