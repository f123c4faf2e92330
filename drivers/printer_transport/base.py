"""What every printer transport shares: states, errors, and the counted-write base classes.

Every write counts the bytes the transport accepted, so a failure can say whether any byte
of a job went out: the print queue's exactly-once rule depends on it
(:attr:`SendError.nothing_sent`). python-escpos's printer classes are not used: their
``_raw`` cannot say how much of a write went out before a failure.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import os
import select
from abc import ABC, abstractmethod

DLE_EOT = b"\x10\x04"
STATUS_WAIT_S = 0.5
CHUNK = 1024


class PrinterState(enum.StrEnum):
    """What the printer is doing, as the cashier is told (``printer.<value>`` in i18n)."""

    READY = "ready"
    NO_PAPER = "no_paper"
    COVER_OPEN = "cover_open"
    OFFLINE = "offline"
    ERROR = "error"
    UNKNOWN = "unknown"  # reachable, but it does not report status (``status=0``)


PRINTABLE = frozenset({PrinterState.READY, PrinterState.UNKNOWN})


class PrinterError(Exception):
    """Base of the printer driver's errors."""


class PrinterConfigError(PrinterError, ValueError):
    """The printer URL or its parameters are wrong; the message says which part."""


class PrinterUnavailable(PrinterError):
    """The printer cannot be opened or stopped answering (unplugged, off, refused)."""


class SendError(PrinterError):
    """A write failed; ``written`` bytes of ``total`` had been accepted by the transport."""

    def __init__(self, message: str, written: int, total: int) -> None:
        """Carry how far the write got."""
        super().__init__(f"{message} (after {written} of {total} bytes)")
        self.written = written
        self.total = total

    @property
    def nothing_sent(self) -> bool:
        """True when not one byte reached the transport: the job can safely be sent again."""
        return self.written == 0


class Transport(ABC):
    """One connection to a printer. Methods block; the spooler calls them from a thread."""

    bidirectional: bool = False

    def __init__(self, timeout: float = 5.0, reads_status: bool = True) -> None:
        """``timeout``: seconds a write may stall; ``reads_status``: ask DLE EOT at all."""
        self.timeout = timeout
        self.reads_status = reads_status and self.bidirectional

    @property
    @abstractmethod
    def is_open(self) -> bool:
        """Whether the connection is open."""

    @abstractmethod
    def open(self) -> None:
        """Open the connection.

        Raises:
            PrinterUnavailable: the printer is not there.
        """

    @abstractmethod
    def close(self) -> None:
        """Close the connection (idempotent)."""

    @abstractmethod
    def _write_some(self, data: bytes) -> int:
        """Write part of ``data`` within the timeout; the count accepted (never 0)."""

    def _read_byte(self, wait: float) -> int | None:
        """One byte from the printer within ``wait`` seconds, or None."""
        raise NotImplementedError

    def _drain(self) -> None:  # noqa: B027 - optional: only bidirectional links override it
        """Drop bytes the printer sent unasked (so a status answer is not a stale one)."""

    def write(self, data: bytes) -> None:
        """Write all of ``data``.

        Raises:
            SendError: the write failed or stalled; ``written`` says how far it got. The
                connection is closed (the next call reopens it).
        """
        written = 0
        try:
            if not self.is_open:
                self.open()
            while written < len(data):
                written += self._write_some(data[written:written + CHUNK])
        except (OSError, PrinterUnavailable) as exc:
            self.close()
            raise SendError(f"write to {self} failed: {exc}", written, len(data)) from None

    def query(self, n: int) -> int | None:
        """Send ``DLE EOT n`` and return the status byte, or None when none came in time.

        Raises:
            PrinterUnavailable: the connection broke (it is closed).
        """
        try:
            if not self.is_open:
                self.open()
            self._drain()
            self._write_some(DLE_EOT + bytes([n]))
            return self._read_byte(STATUS_WAIT_S)
        except OSError as exc:
            self.close()
            raise PrinterUnavailable(f"{self}: {exc}") from None


class FdTransport(Transport):
    """A bidirectional file descriptor (serial port, usblp node) with select() timeouts."""

    bidirectional = True
    _fd: int | None = None

    @property
    def is_open(self) -> bool:
        """Whether the descriptor is open."""
        return self._fd is not None

    def _write_some(self, data: bytes) -> int:
        assert self._fd is not None
        _, ready, _ = select.select([], [self._fd], [], self.timeout)
        if not ready:
            raise OSError(errno.ETIMEDOUT, f"printer took no data for {self.timeout:g} s")
        return os.write(self._fd, data)

    def _read_byte(self, wait: float) -> int | None:
        assert self._fd is not None
        ready, _, _ = select.select([self._fd], [], [], wait)
        if not ready:
            return None
        chunk = os.read(self._fd, 1)
        if not chunk:
            raise OSError(errno.ENODEV, "device closed")
        return chunk[0]

    def _drain(self) -> None:
        assert self._fd is not None
        while select.select([self._fd], [], [], 0)[0]:
            if not os.read(self._fd, 256):
                raise OSError(errno.ENODEV, "device closed")

    def close(self) -> None:
        """Close the descriptor."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
