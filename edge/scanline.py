"""A plain serial line reader the daemon falls back on when ``drivers.scanner_serial`` is absent.

It opens the port with ``termios`` (raw, the configured baud), reads with the event loop's
``add_reader`` (no thread), frames scans on CR, LF or CRLF (or an idle gap), strips the
configured prefix/suffix and an AIM symbology identifier, and drops lines over the bound
with a logged reason. It returns (raising) when the device goes away; the daemon's
supervisor reopens it with backoff. The full driver (pyserial, reconnect state, counters)
lives in ``drivers/scanner_serial.py``; this is the minimum the daemon needs to run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import termios
import tty
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from edge.config import ConfigError

log = logging.getLogger("edge.scanline")

AIM_ID = re.compile(rb"^\][A-Za-z][0-9A-Za-z]")

_BAUD = {b: getattr(termios, f"B{b}") for b in (1200, 2400, 4800, 9600, 19200, 38400, 57600,
                                                  115200, 230400)}


@dataclass(frozen=True, slots=True)
class LineConfig:
    """The ``[scanner]`` keys this reader understands (the driver's names for them)."""

    port: str
    baudrate: int = 9600
    idle_gap_ms: int = 0  # > 0: a gap this long also ends a scan
    prefix: str = ""
    suffix: str = ""
    strip_aim: bool = False
    max_line: int = 4096

    @classmethod
    def from_table(cls, table: dict[str, Any]) -> LineConfig:
        """Build from ``[scanner]``.

        Raises:
            ConfigError: an unknown key, a wrong type, or a bad value (named).
        """
        known = {f.name: f for f in fields(cls)}
        for key, value in table.items():
            if key not in known:
                raise ConfigError(f"[scanner] {key} is not a known setting")
            want = type(getattr(cls("x"), key))
            if not isinstance(value, want) or (want is int and isinstance(value, bool)):
                raise ConfigError(f"[scanner] {key} must be {want.__name__}, not {value!r}")
        cfg = cls(**table)
        if not cfg.port:
            raise ConfigError("[scanner] port must not be empty")
        if cfg.baudrate not in _BAUD:
            raise ConfigError(f"[scanner] baudrate {cfg.baudrate} is not one of {sorted(_BAUD)}")
        if not 16 <= cfg.max_line <= 1 << 20:
            raise ConfigError(f"[scanner] max_line must be 16..1048576, not {cfg.max_line}")
        return cfg


class ScanLineError(Exception):
    """The port cannot be opened or was lost; the message says which and why."""


def frame(buf: bytearray) -> list[bytes]:
    """Cut the complete lines out of ``buf`` (in place); CR, LF and CRLF all end a line."""
    out: list[bytes] = []
    while True:
        cut = min((i for i in (buf.find(b"\r"), buf.find(b"\n")) if i >= 0), default=-1)
        if cut < 0:
            return out
        line = bytes(buf[:cut])
        end = cut + 1
        if buf[cut:cut + 2] == b"\r\n":
            end += 1
        del buf[:end]
        if line:
            out.append(line)


def clean(line: bytes, cfg: LineConfig) -> bytes:
    """Strip the configured prefix/suffix and a leading AIM identifier."""
    pre, suf = cfg.prefix.encode(), cfg.suffix.encode()
    if pre and line.startswith(pre):
        line = line[len(pre):]
    if suf and line.endswith(suf):
        line = line[:-len(suf)]
    if cfg.strip_aim:
        line = AIM_ID.sub(b"", line, count=1)
    return line.strip()


async def read_lines(cfg: LineConfig, on_line: Callable[[str], None],
                     on_drop: Callable[[str], None],
                     on_open: Callable[[], None] | None = None) -> None:
    """Read scans from ``cfg.port`` forever, calling ``on_line(text)`` per scan.

    ``on_open`` is called once the port is open and being read.

    Undecodable bytes become U+FFFD (the rules engine rejects them as a bad format, with the
    reason recorded); over-long lines are dropped through ``on_drop(reason)``.

    Raises:
        ScanLineError: the port cannot be opened, or it was lost (unplugged).
    """
    try:
        fd = os.open(cfg.port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as exc:
        raise ScanLineError(f"cannot open scanner port {cfg.port}: {exc.strerror}") from None
    loop = asyncio.get_running_loop()
    lost: asyncio.Future[str] = loop.create_future()
    buf = bytearray()
    idle: asyncio.TimerHandle | None = None

    def emit(line: bytes) -> None:
        text = clean(line, cfg)
        if text:
            on_line(text.decode("utf-8", "replace"))

    def flush_idle() -> None:
        if buf:
            emit(bytes(buf))
            buf.clear()

    def readable() -> None:
        nonlocal idle
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError as exc:
            if not lost.done():
                lost.set_result(exc.strerror or str(exc))
            return
        if not data:
            if not lost.done():
                lost.set_result("end of file")
            return
        buf.extend(data)
        if cfg.idle_gap_ms > 0:
            if idle is not None:
                idle.cancel()
            idle = loop.call_later(cfg.idle_gap_ms / 1000, flush_idle)
        else:
            for line in frame(buf):
                if len(line) > cfg.max_line:
                    on_drop(f"line of {len(line)} bytes over [scanner] max_line {cfg.max_line}")
                else:
                    emit(line)
        if len(buf) > cfg.max_line:
            on_drop(f"over {cfg.max_line} bytes without an end of line: discarded")
            buf.clear()

    try:
        with contextlib.suppress(termios.error):
            tty.setraw(fd)
            attrs = termios.tcgetattr(fd)
            attrs[4] = attrs[5] = _BAUD[cfg.baudrate]
            termios.tcsetattr(fd, termios.TCSANOW, attrs)
        loop.add_reader(fd, readable)
        if on_open is not None:
            on_open()
        why = await lost
        raise ScanLineError(f"scanner port {cfg.port} lost: {why}")
    finally:
        if idle is not None:
            idle.cancel()
        with contextlib.suppress(ValueError, OSError):
            loop.remove_reader(fd)
        os.close(fd)
