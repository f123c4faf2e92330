"""The one seam the spooler uses for a receipt printer: ``send(bytes)`` and ``status()``.

:class:`Printer` wraps one transport (:mod:`drivers.printer_transport`, chosen by the
config's URL). Real-time status (``DLE EOT n``) is read on the bidirectional transports
(tcp, serial, usb) and turned into a :class:`PrinterState`. Presence is debounced: a printer
that stops answering is reported with its last known state for ``absent_after`` seconds
before it is declared OFFLINE.

python-escpos is not used on this path: it cannot report how much of a write went out, and
it picks text encodings by guessing. :func:`configure_escpos_cache` still sets its cache for
any code that imports it (python-escpos re-parses its capabilities on each import and leaves
a temporary folder behind per process otherwise).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drivers.printer_profile import PrinterProfile, configure_escpos_cache
from drivers.printer_transport import (
    PRINTABLE,
    FileTransport,
    PrinterConfigError,
    PrinterError,
    PrinterState,
    PrinterUnavailable,
    SendError,
    SerialTransport,
    SimulatedTransport,
    TcpTransport,
    Transport,
    UsbTransport,
    transport_from_url,
)

__all__ = [
    "PRINTABLE", "FileTransport", "Printer", "PrinterConfigError", "PrinterError",
    "PrinterState", "PrinterUnavailable", "SendError", "SerialTransport", "SimulatedTransport",
    "TcpTransport", "Transport", "UsbTransport", "configure_escpos_cache", "open_printer",
    "parse_status", "printer_from_config", "transport_from_url",
]

log = logging.getLogger(__name__)


def parse_status(online: int, offline_cause: int | None, paper: int | None) -> tuple[
        PrinterState, str]:
    """A state and detail from the answers to ``DLE EOT`` 1, 2 and 4.

    Every status byte has bit 1 and bit 4 set and bits 0 and 7 clear; one that does not is
    not a status answer (noise, or a printer in another mode) and reads as ERROR.
    """
    for name, b in (("printer", online), ("offline cause", offline_cause), ("paper", paper)):
        if b is not None and b & 0x93 != 0x12:
            return PrinterState.ERROR, f"garbled {name} status byte 0x{b:02x}"
    if online & 0x08:
        cause = offline_cause or 0
        if cause & 0x04:
            return PrinterState.COVER_OPEN, "cover open"
        if cause & 0x20:
            return PrinterState.NO_PAPER, "paper end: printing stopped"
        if cause & 0x40:
            return PrinterState.ERROR, "printer error (cutter jam or overheating)"
    if paper is not None and paper & 0x60:
        return PrinterState.NO_PAPER, "paper end"
    if online & 0x08:
        return PrinterState.ERROR, "printer offline (feed button held or waiting)"
    if paper is not None and paper & 0x0C:
        return PrinterState.READY, "paper low"
    return PrinterState.READY, ""


class Printer:
    """The seam the spooler uses: :meth:`send` and :meth:`status`, over one transport.

    Presence is debounced: a printer that was seen and then stops answering keeps its last
    state (with a detail saying so) for ``absent_after`` seconds before it is OFFLINE.
    """

    def __init__(self, transport: Transport, absent_after: float = 3.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """Wrap ``transport``."""
        self.transport = transport
        self.absent_after = absent_after
        self._clock = clock
        self._last_seen: float | None = None
        self._last_state = PrinterState.UNKNOWN
        self.detail = ""
        # A call abandoned by the spooler's timeout may still run in its thread: the next
        # one waits for it rather than sharing the connection.
        self._lock = threading.Lock()

    def __str__(self) -> str:
        return str(self.transport)

    def send(self, data: bytes) -> None:
        """Write one job's bytes.

        Raises:
            SendError: with ``nothing_sent`` telling whether the job may be sent again.
        """
        with self._lock:
            self.transport.write(data)

    def _probe(self) -> tuple[PrinterState, str]:
        t = self.transport
        if isinstance(t, SimulatedTransport):
            problem = t.presence()
            return (PrinterState.OFFLINE, problem) if problem else t.simulated_state()
        if isinstance(t, FileTransport):
            problem = t.presence()
            return (PrinterState.OFFLINE, problem) if problem else (PrinterState.READY, "")
        try:
            if not t.is_open:
                t.open()
            if not t.reads_status:
                return PrinterState.UNKNOWN, "status not read (status=0)"
            online = t.query(1)
            if online is None:
                t.close()
                return PrinterState.OFFLINE, "printer does not answer status requests"
            cause = t.query(2) if online & 0x08 else None
            paper = t.query(4)
        except PrinterUnavailable as exc:
            return PrinterState.OFFLINE, str(exc)
        return parse_status(online, cause, paper)

    def status(self) -> PrinterState:
        """The printer's state now (debounced); :attr:`detail` says more."""
        with self._lock:
            state, detail = self._probe()
        now = self._clock()
        if state is not PrinterState.OFFLINE:
            self._last_seen = now
        elif self._last_seen is not None and now - self._last_seen < self.absent_after:
            # Gone for a moment (a cable wiggle, a printer's own reset): not yet absent.
            self.detail = f"{detail}; not answering for {now - self._last_seen:.1f} s"
            return self._last_state
        self._last_state = state
        self.detail = detail
        return state

    def close(self) -> None:
        """Close the transport."""
        with self._lock:
            self.transport.close()


def open_printer(url: str, home: Path | None = None, absent_after: float = 3.0) -> Printer:
    """A :class:`Printer` for a config URL (nothing is opened until first use).

    Raises:
        PrinterConfigError: the URL is wrong.
    """
    return Printer(transport_from_url(url, home), absent_after)


def printer_from_config(table: dict[str, Any], home: Path) -> tuple[Printer, PrinterProfile]:
    """The printer and its profile from the config's ``[printer]`` table.

    Keys: ``url`` (required), ``absent_after`` (seconds, default 3) and the profile's keys
    (:meth:`PrinterProfile.from_config`). Nothing is opened yet.

    Raises:
        PrinterConfigError: no or a bad ``url`` or ``absent_after``.
        ProfileError: a bad profile key.
    """
    url = table.get("url")
    if not isinstance(url, str) or not url:
        raise PrinterConfigError("[printer] url is missing: e.g. url = \"tcp://192.168.1.50:9100\""
                                 " or \"simulate:\"")
    absent = table.get("absent_after", 3.0)
    if not isinstance(absent, int | float) or isinstance(absent, bool) or absent < 0:
        raise PrinterConfigError(f"printer.absent_after must be seconds >= 0, not {absent!r}")
    return open_printer(url, home, float(absent)), PrinterProfile.from_config(table, home)
