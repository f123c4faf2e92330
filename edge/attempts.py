"""Typed pickup numbers: a till that keeps missing is made to wait.

A pickup number is short (HQ issues 6 random digits by default; the contract allows 3-8),
so trying numbers one after another would find orders. Scanned codes are signed and need
no limit; a typed number does. :class:`MissGuard` counts the misses (numbers the store does
not know) per till and across the box: ``max_misses`` within ``window_s`` locks typed
numbers at that till for ``cooldown_s`` (``box_max_misses`` locks them at every till).
Scans are never locked. The counts live in memory: a daemon restart forgets them, which
costs an attacker a restart per few numbers and leaves the store able to work. Every miss
and every refusal is also recorded as a decision by ``edge.rules``.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

BOX: Final = "*"  # the key counting every till's misses together
MAX_TILLS: Final = 256  # remembered tills (a till name comes from the client)


@dataclass(frozen=True, slots=True)
class GuardPolicy:
    """How many misses, how fast, buy how long a wait."""

    max_misses: int = 5
    window_s: float = 60.0
    cooldown_s: float = 60.0
    box_max_misses: int = 20


class MissGuard:
    """Per-till and box-wide counts of typed-number misses, and the cool-downs they cause."""

    def __init__(self, policy: GuardPolicy | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """Count with ``policy`` on ``clock`` (monotonic: a wall-clock jump changes nothing)."""
        self.policy = policy or GuardPolicy()
        self.clock = clock
        self._misses: OrderedDict[str, deque[float]] = OrderedDict()
        self._locked_until: dict[str, float] = {}

    def locked_for(self, till: str) -> float:
        """Seconds until typed numbers are taken again at ``till`` (0: they are now)."""
        now = self.clock()
        until = max(self._locked_until.get(till, 0.0), self._locked_until.get(BOX, 0.0))
        return max(0.0, until - now)

    def miss(self, till: str) -> float:
        """Count a miss at ``till``; the cool-down it starts in seconds (0: none yet)."""
        now = self.clock()
        p = self.policy
        started = 0.0
        for key, limit in ((till, p.max_misses), (BOX, p.box_max_misses)):
            times = self._misses.get(key)
            if times is None:
                times = self._misses[key] = deque(maxlen=limit)
                while len(self._misses) > MAX_TILLS:
                    old, _ = self._misses.popitem(last=False)
                    self._locked_until.pop(old, None)
            self._misses.move_to_end(key)
            times.append(now)
            if len(times) == limit and now - times[0] <= p.window_s:
                self._locked_until[key] = now + p.cooldown_s
                times.clear()
                started = p.cooldown_s
        return started

    def misses_left(self, till: str) -> int:
        """Misses ``till`` may still make in the current window before a cool-down."""
        now = self.clock()
        times = self._misses.get(till, deque())
        recent = sum(1 for t in times if now - t <= self.policy.window_s)
        return max(0, self.policy.max_misses - recent)
