"""Repeats counted, not recorded one by one: the first of a kind per interval, then a count.

Anyone who can publish to a topic can send junk as fast as the network allows; recording
each refusal as its own fsync'd event would let them fill the disk and the outbox. A
:class:`Coalescer` lets the first refusal of each key (reason, kind) through at once, so a
single bad message is seen as before, and counts the rest of that interval; :meth:`due`
hands back the counts whose interval ended, each to be recorded as one event with its
count. Memory is one small tally per key (the keys are a finite set of enum values).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Generic, TypeVar

K = TypeVar("K")

DEFAULT_INTERVAL_S: Final = 60.0


@dataclass(slots=True)
class Tally:
    """Refusals of one key folded since its interval opened."""

    count: int
    first_at: float
    last_at: float
    detail: str  # the last one's, as an example


class Coalescer(Generic[K]):
    """At most one record per key per interval, plus one count of the rest."""

    def __init__(self, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        """Coalesce per ``interval_s`` seconds (of whatever clock the caller passes)."""
        self.interval_s = interval_s
        self._opened: dict[K, float] = {}
        self._tallies: dict[K, Tally] = {}

    def admit(self, key: K, now: float, detail: str = "") -> bool:
        """Whether to record this occurrence now; otherwise it is counted.

        Call :meth:`due` first, so an ended interval's count is recorded before the
        occurrence that opens the next one.
        """
        opened = self._opened.get(key)
        if opened is None or now - opened >= self.interval_s:
            self._opened[key] = now
            return True
        tally = self._tallies.get(key)
        if tally is None:
            self._tallies[key] = Tally(1, now, now, detail[:200])
        else:
            tally.count += 1
            tally.last_at = now
            tally.detail = detail[:200]
        return False

    def forget(self, key: K) -> None:
        """Undo ``key``'s admission and count (the caller's record of it was not kept)."""
        self._opened.pop(key, None)
        self._tallies.pop(key, None)

    def due(self, now: float, force: bool = False) -> list[tuple[K, Tally]]:
        """The counts whose interval has ended (every count with ``force``), removed.

        Keys whose interval ended are forgotten, so memory follows the keys seen lately.
        """
        out = [(k, t) for k, t in self._tallies.items()
               if force or now - self._opened[k] >= self.interval_s]
        for k, _ in out:
            del self._tallies[k]
        for k in [k for k, at in self._opened.items()
                  if now - at >= self.interval_s and k not in self._tallies]:
            del self._opened[k]
        return out

    def __len__(self) -> int:
        """How many keys have an open interval."""
        return len(self._opened)

    @property
    def pending(self) -> int:
        """Occurrences counted and not yet handed back by :meth:`due`."""
        return sum(t.count for t in self._tallies.values())
