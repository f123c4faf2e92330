"""What every pane of the cashier app shares: the app, relabelling on a language switch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, cast

from textual.containers import Vertical
from textual.events import Key
from textual.widgets import Input

from edge import i18n

if TYPE_CHECKING:
    from ui.app import CashierApp


class Pane(Vertical):
    """A full-width pane under the title bar; one is shown at a time."""

    PANE_KEY = ""  # catalogue key of the pane's name
    COMMAND_KEYS: ClassVar[frozenset[str]] = frozenset()  # the pane's own letter keys

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

    def on_key(self, event: Key) -> None:
        """Typing outside a text box is a scanner's burst (or a code typed by hand).

        A keyboard-wedge scanner does not know which pane is open: its characters, and
        the Enter after them, must not press this pane's keys (Enter on Cards prints).
        So the first printable key not meant for this pane hands the typing to
        :meth:`take_typing` (the scan input by default), and the rest follows there.
        """
        if (not event.is_printable or event.character is None
                or event.key in self.COMMAND_KEYS or isinstance(self.app.focused, Input)):
            return
        if self.take_typing(event.character):
            event.stop()
            event.prevent_default()

    def take_typing(self, character: str) -> bool:
        """Send typing to the scan input; returns whether it was taken."""
        self.cashier.type_into_scan(character)
        return True

    def relabel(self) -> None:
        """Redraw every text after a language switch."""

    async def on_show_pane(self) -> None:
        """Called when the pane becomes the visible one (refresh its data)."""

    def focus_default(self) -> None:
        """Put the focus where the cashier's next key belongs."""
