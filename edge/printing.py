"""The daemon's one seam to the printer: enqueue slips, reprint, report state.

:class:`PrintService` is what the daemon calls; :func:`open_print_service` builds it from
the printer part (``edge.printqueue``, ``edge.slips``, ``drivers.spooler``) when that part
is installed. Jobs go to the persistent queue first and the spooler prints them when it
can, so a redemption is never blocked by paper.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from edge.cards import IssuedCard
from edge.daemon_config import DaemonConfig
from edge.verdict import Verdict

StateCallback = Callable[[str, bool], None]


class PrintError(Exception):
    """A job cannot be queued, or the printer part cannot be set up; the message says why."""


class PrintService(Protocol):
    """Queue print jobs and run the spooler."""

    def card(self, card: IssuedCard) -> str:
        """Queue a packaging card; returns the job id."""
        ...

    def redemption(self, verdict: Verdict) -> str:
        """Queue a redemption slip; returns the job id."""
        ...

    def report(self, figures: dict[str, Any]) -> str:
        """Queue a day report; returns the job id."""
        ...

    def reprint(self, count: int) -> list[str]:
        """Queue again the last ``count`` jobs; returns the new job ids."""
        ...

    def waiting(self) -> int:
        """Jobs not yet printed."""
        ...

    async def run(self, on_state: StateCallback) -> None:
        """Print queued jobs until cancelled; ``on_state(detail, ok)`` on every change."""
        ...

    def close(self) -> None:
        """Release the queue and the device."""
        ...


def open_print_service(cfg: DaemonConfig) -> PrintService:
    """The print service for ``cfg.printer``.

    Raises:
        PrintError: the printer part is not installed, or its configuration is refused.
    """
    raise PrintError("printer support (drivers.spooler, edge.printqueue) is not installed")
