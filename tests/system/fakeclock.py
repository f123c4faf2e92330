"""A wall clock the test moves for a real child process: libfaketime (Debian ``faketime``).

The child runs with libfaketime preloaded and reads its offset from a file at every call
(``FAKETIME_NO_CACHE``), so :meth:`FakeClock.jump` moves ``time.time()`` in the running
daemon by hours at once: the clock of a box with no RTC stepped by a bad NTP answer, a
manual set, or the compressed hours of an outage. The monotonic clock is left alone
(``FAKETIME_DONT_FAKE_MONOTONIC``): faking it hangs Python's timed thread waits, and it is
the wall clock that the box's decisions and events read.
"""

from __future__ import annotations

import glob
from pathlib import Path

LIBRARY_GLOB = "/usr/lib/*/faketime/libfaketime.so.1"


def library() -> str:
    """The libfaketime shared object.

    Raises:
        RuntimeError: it is not installed (``apt-get install faketime``, scripts/bootstrap.sh).
    """
    found = sorted(glob.glob(LIBRARY_GLOB))
    if not found:
        raise RuntimeError(f"libfaketime not found ({LIBRARY_GLOB}): install the Debian "
                           "package faketime (make setup)")
    return found[0]


class FakeClock:
    """An offset from the real wall clock, kept in ``path`` for the child to read."""

    def __init__(self, path: Path) -> None:
        """A clock at the real time (offset 0)."""
        self.path = path
        self.offset_s = 0
        self.jumps = 0
        self._write()

    def env(self) -> dict[str, str]:
        """Environment for a child process whose wall clock this is."""
        return {"LD_PRELOAD": library(), "FAKETIME_TIMESTAMP_FILE": str(self.path),
                "FAKETIME_NO_CACHE": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}

    def set(self, offset_s: int) -> None:
        """Put the child's wall clock ``offset_s`` seconds from the real time (a jump)."""
        if offset_s != self.offset_s:
            self.jumps += 1
        self.offset_s = offset_s
        self._write()

    def _write(self) -> None:
        tmp = self.path.with_suffix(".new")
        tmp.write_text(f"{self.offset_s:+d}s\n", encoding="ascii")
        tmp.replace(self.path)  # the child never reads half a line
