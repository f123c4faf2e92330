"""Keeping a part of the daemon running: restart on failure with capped, jittered backoff.

A part is a coroutine function that runs until its device goes away (returning or raising).
Its exceptions are logged and turned into a ``failed`` state, never propagated: a scanner
that is unplugged must not cancel the daemon's task group and take the API down with it.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("edge.supervisor")

BACKOFF_FIRST = 0.5
BACKOFF_CAP = 30.0
HEALTHY_AFTER = 30.0  # a run this long resets the backoff


class PartState(enum.StrEnum):
    """Where a part of the daemon stands."""

    ABSENT = "absent"  # not configured
    STARTING = "starting"
    RUNNING = "running"
    FAILED = "failed"  # ended or raised; will be restarted
    STOPPED = "stopped"


@dataclass
class PartStatus:
    """A part's state, what it last said, and how often it was restarted."""

    name: str
    state: PartState = PartState.ABSENT
    detail: str = ""
    since: float = field(default_factory=time.time)
    restarts: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for ``status`` and ``device`` events."""
        return {"name": self.name, "state": self.state.value, "detail": self.detail,
                "since": self.since, "restarts": self.restarts, **self.extra}


def backoff(attempt: int, first: float = BACKOFF_FIRST, cap: float = BACKOFF_CAP) -> float:
    """Seconds to wait before restart number ``attempt`` (1-based): doubling, capped, jittered.

    Full jitter over the upper half: several parts failing together (a USB hub reset) do
    not retry in lock-step.
    """
    ceiling = min(cap, first * 2 ** max(0, attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


async def supervise(status: PartStatus, run: Callable[[], Awaitable[None]],
                    on_change: Callable[[PartStatus], None],
                    first: float | None = None, cap: float | None = None) -> None:
    """Run ``run()`` forever, restarting it after it ends or fails; only cancellation stops it.

    ``first`` and ``cap`` default to :data:`BACKOFF_FIRST` and :data:`BACKOFF_CAP`.
    """
    first = BACKOFF_FIRST if first is None else first
    cap = BACKOFF_CAP if cap is None else cap
    attempt = 0

    def set_state(state: PartState, detail: str) -> None:
        status.state, status.detail, status.since = state, detail, time.time()
        on_change(status)

    while True:
        set_state(PartState.STARTING, "")
        started = time.monotonic()
        try:
            await run()
            why = "ended"
        except asyncio.CancelledError:
            set_state(PartState.STOPPED, "")
            raise
        except Exception as exc:
            why = f"{type(exc).__name__}: {exc}"
            log.warning("%s failed: %s", status.name, why)  # one line per event
            log.debug("%s traceback", status.name, exc_info=True)
        if time.monotonic() - started > HEALTHY_AFTER:
            attempt = 0
        attempt += 1
        status.restarts += 1
        delay = backoff(attempt, first, cap)
        set_state(PartState.FAILED, f"{why}; retry in {delay:.1f}s")
        await asyncio.sleep(delay)
