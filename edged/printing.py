"""The daemon's one seam to the printer: queue slips, reprint, run the spooler.

:class:`PrintService` is what the daemon calls; :class:`edged.devices.QueuePrinting` is the
implementation over the persistent print queue (``drivers.printqueue``) and the spooler
(``drivers.spooler``). Jobs go to the queue first and the spooler prints them when it can,
so a redemption is never blocked by paper.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from edge.cards import IssuedCard
from edge.config import CardTexts
from edge.verdict import Verdict

# (printer state, whether it can print, detail, jobs waiting)
StateCallback = Callable[[str, bool, str, int], None]


class PrintError(Exception):
    """A job cannot be queued, or the printer part cannot be set up; the message says why."""


class PrintService(Protocol):
    """Queue print jobs and run the spooler."""

    def card(self, card: IssuedCard, texts: CardTexts, store_name: str) -> int:
        """Queue a packaging card with the store's current texts; returns the job id."""
        ...

    def redemption(self, verdict: Verdict, till: str = "") -> int:
        """Queue a redemption slip; returns the job id."""
        ...

    def report(self, figures: dict[str, Any]) -> int:
        """Queue a day report; returns the job id."""
        ...

    def reprint(self, count: int) -> list[int]:
        """Queue again the last ``count`` jobs; returns the new job ids."""
        ...

    def waiting(self) -> int:
        """Jobs not yet printed."""
        ...

    async def run(self, on_state: StateCallback) -> None:
        """Print queued jobs until cancelled, reporting every change through ``on_state``."""
        ...

    def close(self) -> None:
        """Release the queue."""
        ...
