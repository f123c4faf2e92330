"""The ledger's disk as the daemon sees it: free space, the full-disk state, a reserve.

A full disk refuses writes, which the ledger turns into :class:`edge.ledger.LedgerFull`
and the daemon into a ``storage_full`` answer. It also keeps SQLite from opening the
ledger at all (WAL mode creates its ``-shm`` and ``-wal`` files), so a daemon restarted
on a full disk (a power cut, the watchdog) could not serve the cashier even the words
"disk full". The :class:`Reserve` is a file of :data:`RESERVE_BYTES` kept next to the
ledger while space allows; the daemon deletes it when the ledger cannot be opened for
lack of space, and makes it again once there is room to spare.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

RESERVE_NAME: Final = "ledger.reserve"
RESERVE_BYTES: Final = 512 * 1024  # opens the ledger and records about a hundred scans
RESERVE_SPARE: Final = 4 * RESERVE_BYTES  # made again only when this much stays free after


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on the filesystem holding ``path``."""
    try:
        st = os.statvfs(path)
    except OSError:
        return 0
    return st.f_bavail * st.f_frsize


@dataclass(slots=True)
class StorageState:
    """Whether the ledger's disk refused the last write, and since when."""

    full: bool = False
    since: float | None = None
    free_at_failure: int = 0
    detail: str = ""


class Reserve:
    """The reserve file in ``folder`` (the ledger's)."""

    def __init__(self, folder: Path) -> None:
        """The reserve for the ledger in ``folder``."""
        self.path = folder / RESERVE_NAME

    @property
    def present(self) -> bool:
        """Whether the reserve is on disk."""
        return self.path.exists()

    def ensure(self) -> bool:
        """Make the reserve when it is missing and the disk has room to spare; whether made."""
        if self.present or free_bytes(self.path.parent) < RESERVE_BYTES + RESERVE_SPARE:
            return False
        staging = self.path.with_name(RESERVE_NAME + ".new")
        try:
            fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.posix_fallocate(fd, 0, RESERVE_BYTES)  # blocks really taken, not a hole
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(staging, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                staging.unlink()
            return False
        return True

    def release(self) -> bool:
        """Delete the reserve to give its space to the ledger; whether there was one."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        return True
