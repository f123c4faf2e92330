"""A barcode scanner on a serial line: USB-CDC (``/dev/ttyACM0``), RS-232, or any pyserial URL.

The port is opened with ``serial.serial_for_url`` so a pseudo-terminal path, ``loop://``
or ``socket://host:port`` work as well as a device. Bytes are cut into frames on CR, LF
or CRLF (:class:`Eol`), or after an idle gap; each frame is cleaned (prefix, suffix and
AIM symbology identifier stripped) and decoded into a :class:`~drivers.scan.ScanInput`.

Bad input never stops the reader: a frame over ``max_line`` bytes is counted and thrown
away as it streams in (a 10 MB line is never held in memory), invalid text, line noise
and empty frames are dropped with a :class:`~drivers.scan.DropReason`, logged and handed
to ``on_drop``. When the port goes away (unplugged, pty closed) the scanner reports it and
reopens the same port with capped, jittered backoff until it is back.

Text policy: frames are decoded with ``encoding`` (UTF-8 by default). With
``invalid = "drop"`` (the default) undecodable bytes drop the frame as ``invalid_text``;
with ``invalid = "latin-1"`` they are read as Latin-1 instead (every byte maps to one
character, so nothing is dropped for its bytes and the verdict decides).
"""

from __future__ import annotations

import asyncio
import codecs
import enum
import errno
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import serial

from drivers.scan import (
    PREVIEW_BYTES,
    Backoff,
    DeviceState,
    DeviceStatus,
    DropReason,
    OnDrop,
    OnScan,
    OnState,
    Post,
    ScanDropped,
    ScanInput,
    StateReporter,
    config_from_mapping,
    run_in_thread,
)

log = logging.getLogger(__name__)

READ_CHUNK: Final = 65536
TICK: Final = 0.1  # longest a read blocks: how soon the reader sees a stop request
_ABSENT_ERRNOS: Final = {errno.ENOENT, errno.ENODEV, errno.ENXIO, errno.EIO}
# AIM ISO/IEC 15424 symbology identifier: "]", a code character, a modifier character.
_AIM: Final = re.compile(r"\][A-Za-z][0-9A-Za-z]")
# C0 controls and DEL never occur in a code; GS (0x1D) does, as the GS1 field separator.
_CONTROL: Final = re.compile(r"[\x00-\x1c\x1e\x1f\x7f]")


class Eol(enum.StrEnum):
    """Which line ends end a frame (besides the idle gap, when one is set)."""

    ANY = "any"  # CR, LF or CRLF: what scanners send, whatever their suffix setting
    CR = "cr"
    LF = "lf"
    CRLF = "crlf"  # a lone CR or LF stays in the frame (and is then dropped as a control)
    NONE = "none"  # only the idle gap ends a frame


class InvalidText(enum.StrEnum):
    """What to do with bytes that are not valid in the configured encoding."""

    DROP = "drop"  # drop the frame as ``invalid_text``
    LATIN1 = "latin-1"  # read the frame as Latin-1 instead: never fails


@dataclass(frozen=True, slots=True)
class SerialScannerConfig:
    """A serial scanner's settings; the field names are the keys of the ``[scanner]`` table."""

    port: str  # a device path, a pty path or symlink, or a pyserial URL (loop://, socket://)
    baud: int = 9600
    eol: Eol = Eol.ANY
    idle_ms: int = 0  # > 0: also end a frame after this long with no byte; 0: off
    prefix: str = ""  # removed from the start of a frame when present
    suffix: str = ""  # removed from the end of a frame when present
    strip_aim: bool = False  # remove a leading AIM symbology identifier such as ]Q1 or ]E0
    max_line: int = 4096  # bytes; longer frames are dropped as ``too_long``
    encoding: str = "utf-8"
    invalid: InvalidText = InvalidText.DROP
    retry_first_s: float = 0.5  # first reconnect delay; doubles per failure, with jitter
    retry_max_s: float = 10.0  # cap of the reconnect delay
    name: str = "scanner"  # the device name in DeviceStatus

    def __post_init__(self) -> None:
        """Check ranges and the encoding.

        Raises:
            ValueError: a value out of range or an unknown encoding.
        """
        if not self.port:
            raise ValueError("port must not be empty")
        if self.baud <= 0:
            raise ValueError(f"baud must be positive, not {self.baud}")
        if self.idle_ms < 0:
            raise ValueError(f"idle_ms must be 0 (off) or positive, not {self.idle_ms}")
        if self.eol is Eol.NONE and self.idle_ms == 0:
            raise ValueError("eol = 'none' needs idle_ms > 0, or no frame would ever end")
        if not 16 <= self.max_line <= 1 << 20:
            raise ValueError(f"max_line must be 16..1048576 bytes, not {self.max_line}")
        if not 0 < self.retry_first_s <= self.retry_max_s:
            raise ValueError("need 0 < retry_first_s <= retry_max_s")
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise ValueError(f"unknown encoding {self.encoding!r}") from None

    @classmethod
    def from_toml(cls, section: dict[str, object]) -> SerialScannerConfig:
        """Build from the ``[scanner]`` table of ``edge.toml``.

        Raises:
            drivers.scan.ScannerConfigError: an unknown key or a bad value.
        """
        return config_from_mapping(cls, section, "[scanner]")

    @property
    def source(self) -> str:
        """The source label of this scanner's scans."""
        return f"serial:{self.port}"


@dataclass(frozen=True, slots=True)
class Overflow:
    """A frame that outgrew ``max_line``: how big it got and how it started."""

    size: int
    preview: bytes


class Framer:
    """Cuts a byte stream into frames; holds at most ``max_line`` bytes whatever arrives.

    Pure and single-threaded: the reader thread feeds it, tests can too.
    """

    def __init__(self, eol: Eol, max_line: int) -> None:
        """Frame on ``eol``; frames over ``max_line`` bytes come out as :class:`Overflow`."""
        self.eol = eol
        self.max_line = max_line
        self._buf = bytearray()
        self._carry = b""  # a CR at a chunk's end that may start a CRLF
        self._over = 0  # > 0: bytes of an overflowing frame discarded so far
        self._preview = b""
        self._pattern = {Eol.ANY: re.compile(b"[\r\n]"), Eol.CR: re.compile(b"\r"),
                         Eol.LF: re.compile(b"\n"), Eol.CRLF: re.compile(b"\r\n"),
                         Eol.NONE: None}[eol]

    @property
    def pending(self) -> int:
        """Bytes of the unfinished frame (counted, not necessarily held)."""
        return self._over or len(self._buf) + len(self._carry)

    @property
    def held(self) -> int:
        """Bytes actually held in memory (never more than ``max_line`` + 1)."""
        return len(self._buf) + len(self._carry)

    @property
    def preview(self) -> bytes:
        """The first bytes of the unfinished frame."""
        return self._preview if self._over else bytes(self._buf[:PREVIEW_BYTES])

    def feed(self, data: bytes) -> list[bytes | Overflow]:
        """Add bytes; return the frames they complete (empty frames are skipped)."""
        if self._carry:
            data, self._carry = self._carry + data, b""
        out: list[bytes | Overflow] = []
        pos = 0
        while self._pattern is not None and (m := self._pattern.search(data, pos)):
            self._take(data, pos, m.start())
            if (frame := self._end()) is not None:
                out.append(frame)
            pos = m.end()
        end = len(data)
        if self.eol is Eol.CRLF and data.endswith(b"\r") and pos < end:
            self._carry, end = b"\r", end - 1
        self._take(data, pos, end)
        return out

    def flush(self) -> bytes | Overflow | None:
        """End the unfinished frame (an idle gap passed); ``None`` when there is none."""
        self._carry = b""  # a CR waiting for its LF ends the frame, as the LF would have
        return self._end()

    def clear(self) -> None:
        """Forget the unfinished frame."""
        self._buf.clear()
        self._carry, self._over, self._preview = b"", 0, b""

    def _take(self, data: bytes, start: int, end: int) -> None:
        n = end - start
        if n <= 0:
            return
        if self._over:
            self._over += n
        elif len(self._buf) + n > self.max_line:
            self._over = len(self._buf) + n
            head = data[start:min(end, start + PREVIEW_BYTES)]
            self._preview = bytes((self._buf + head)[:PREVIEW_BYTES])
            self._buf.clear()
        else:
            self._buf += data[start:end]

    def _end(self) -> bytes | Overflow | None:
        if self._over:
            frame: bytes | Overflow = Overflow(self._over, self._preview)
            self._over, self._preview = 0, b""
            return frame
        if not self._buf:
            return None
        frame = bytes(self._buf)
        self._buf.clear()
        return frame


def clean(frame: bytes, config: SerialScannerConfig) -> str | DropReason:
    """A frame's text with prefix, suffix, AIM identifier and edge blanks removed, or why not.

    Prefix and suffix are removed only where present (a scanner reprogrammed without them
    still reads). Surrounding spaces and tabs go (a "TAB" suffix setting is common); any
    other control character left means line noise.
    """
    try:
        text = frame.decode(config.encoding)
    except UnicodeDecodeError:
        if config.invalid is InvalidText.DROP:
            return DropReason.INVALID_TEXT
        text = frame.decode("latin-1")
    if config.prefix and text.startswith(config.prefix):
        text = text[len(config.prefix):]
    if config.suffix and text.endswith(config.suffix):
        text = text[:-len(config.suffix)]
    text = text.strip(" \t")
    if config.strip_aim and _AIM.match(text):
        text = text[3:]
    if _CONTROL.search(text):
        return DropReason.CONTROL_CHARS
    if not text:
        return DropReason.EMPTY
    return text


class SerialScanner:
    """Reads scans from one serial port for as long as it runs, across unplugs.

    Callbacks run on the event loop thread. ``on_drop(reason, preview)`` gets every dropped
    frame's :class:`~drivers.scan.DropReason` and its first bytes; each drop is logged too.
    """

    def __init__(self, config: SerialScannerConfig, on_scan: OnScan, on_state: OnState,
                 on_drop: OnDrop,
                 opener: Callable[[SerialScannerConfig], serial.Serial] | None = None) -> None:
        """Prepare; nothing is opened until :meth:`run`.

        ``opener`` replaces ``serial.serial_for_url`` (a seam for transports no machine
        here has); it must return an open port.
        """
        self.config = config
        self.on_scan = on_scan
        self.on_state = on_state
        self.on_drop = on_drop
        self._open = opener or _open_port
        self._state = StateReporter(config.name, on_state)

    @property
    def status(self) -> DeviceStatus:
        """The last state reported."""
        return self._state.status

    async def run(self) -> None:
        """Open the port, read scans, and reopen it whenever it fails, until cancelled.

        Never raises for device trouble (it becomes a state change and a log line);
        only cancellation ends it.
        """
        backoff = Backoff(self.config.retry_first_s, self.config.retry_max_s)
        self._state.report(DeviceStatus(self.config.name, DeviceState.CONNECTING, self.config.port))
        while True:
            self._state.opened = False
            try:
                await run_in_thread(self._session, f"serial-{self.config.name}")
                status = DeviceStatus(self.config.name, DeviceState.FAILED, "reader stopped")
            except (serial.SerialException, OSError, ValueError) as exc:
                status = _failure(self.config.name, exc)
            if self._state.opened:
                backoff.reset()  # it worked: this is a fresh failure, retry soon
            delay = backoff.next()
            self._state.report(status, f"retrying in {delay:.2f} s")
            await asyncio.sleep(delay)


    def _drop(self, reason: DropReason, size: int, preview: bytes) -> None:
        log.warning("%s", ScanDropped(self.config.source, reason, size, preview))
        self.on_drop(reason, preview)

    def _deliver(self, frame: bytes | Overflow | None) -> None:
        if frame is None:
            return
        if isinstance(frame, Overflow):
            self._drop(DropReason.TOO_LONG, frame.size, frame.preview)
            return
        text = clean(frame, self.config)
        if isinstance(text, DropReason):
            self._drop(text, len(frame), frame[:PREVIEW_BYTES])
        else:
            self.on_scan(ScanInput(text, self.config.source))

    def _session(self, stop: threading.Event, post: Post) -> None:
        """One open-read-close cycle, in the reader thread. Raises when the port fails."""
        cfg = self.config
        port = self._open(cfg)
        framer = Framer(cfg.eol, cfg.max_line)
        gap = cfg.idle_ms / 1000
        port.timeout = min(TICK, gap / 2) if gap else TICK
        last_rx = time.monotonic()
        post(self._state.report, DeviceStatus(cfg.name, DeviceState.READY, cfg.port))
        try:
            while not stop.is_set():
                # in_waiting or 1: return as soon as anything arrives, so gaps are timed
                # from the last byte (a bigger read would wait out the timeout).
                data = port.read(min(port.in_waiting, READ_CHUNK) or 1)
                now = time.monotonic()
                if data:
                    last_rx = now
                    for frame in framer.feed(data):
                        post(self._deliver, frame)
                elif gap and framer.pending and now - last_rx >= gap:
                    post(self._deliver, framer.flush())
        except BaseException:
            if framer.pending:
                post(self._drop, DropReason.UNFINISHED, framer.pending, framer.preview)
            raise
        finally:
            port.close()


def _open_port(config: SerialScannerConfig) -> serial.Serial:
    # exclusive: a second reader on the same port would steal half of every scan.
    return serial.serial_for_url(config.port, baudrate=config.baud, timeout=TICK,
                                 exclusive=True)


def _failure(name: str, exc: BaseException) -> DeviceStatus:
    code = getattr(exc, "errno", None)
    text = str(exc) or type(exc).__name__
    if code in _ABSENT_ERRNOS or "returned no data" in text:
        # pyserial's words for a device that vanished under an open port
        return DeviceStatus(name, DeviceState.ABSENT, text)
    return DeviceStatus(name, DeviceState.FAILED, text)
