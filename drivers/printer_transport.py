"""Receipt-printer transports, chosen by a URL-like string from config (``[printer] url``).

As pyserial's ``serial_for_url`` does::

    file:/var/spool/edge/out.bin      bytes appended to a file or device path (/dev/usb/lp0)
    simulate:[/path]                  a file printer for the demo; its state is read from
                                      ``<path>.state`` if present (e.g. ``no_paper``)
    tcp://192.168.1.50:9100           a network printer (raw port 9100)
    serial:/dev/ttyUSB0?baud=19200    an RS-232 / USB-serial printer
    usb:0x04b8:0x0e15                 a USB printer by vendor:product, through the kernel's
                                      usblp driver (``/dev/usb/lpN``; no libusb needed)

Query parameters: ``timeout`` (seconds per write, default 5), ``status=0`` for a printer that
does not answer status requests (it is then printed to whenever it can be opened), and for
serial ``baud`` and ``rtscts=1``.

Every write counts the bytes the transport accepted, so a failure can say whether any byte
of a job went out: the print queue's exactly-once rule depends on it
(:attr:`SendError.nothing_sent`). python-escpos's printer classes are not used here: their
``_raw`` cannot say how much of a write went out before a failure.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import os
import select
import socket
from abc import ABC, abstractmethod
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

DLE_EOT = b"\x10\x04"
STATUS_WAIT_S = 0.5
CHUNK = 1024
SIM_DEFAULT = "printer-sim.bin"

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


class FileTransport(Transport):
    """Appends to a file or device path; opened per write so the file may be rotated."""

    def __init__(self, path: Path, timeout: float = 5.0) -> None:
        """Write to ``path``."""
        super().__init__(timeout, reads_status=False)
        self.path = path
        self._fd: int | None = None

    def __str__(self) -> str:
        return f"file:{self.path}"

    @property
    def is_open(self) -> bool:
        """Whether the file is open."""
        return self._fd is not None

    def open(self) -> None:
        """Open ``path`` for appending.

        Raises:
            PrinterUnavailable: the path cannot be opened (missing folder, permission).
        """
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise PrinterUnavailable(f"cannot open {self.path}: {exc.strerror}") from None

    def close(self) -> None:
        """Close the file."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def _write_some(self, data: bytes) -> int:
        assert self._fd is not None
        return os.write(self._fd, data)

    def write(self, data: bytes) -> None:
        """Append ``data`` and close (so a reader sees whole jobs and the file can move).

        Raises:
            SendError: the file could not be opened or written.
        """
        try:
            super().write(data)
        finally:
            self.close()

    def presence(self) -> str:
        """Empty when the path can be written, else why not."""
        target = self.path if self.path.exists() else self.path.parent
        if not target.exists():
            return f"{target} does not exist"
        if not os.access(target, os.W_OK):
            return f"{target} is not writable"
        return ""


class SimulatedTransport(FileTransport):
    """A file printer for the demo whose state can be changed by writing ``<path>.state``."""

    def __str__(self) -> str:
        return f"simulate:{self.path}"

    @property
    def state_path(self) -> Path:
        """The file holding the simulated state (a :class:`PrinterState` value)."""
        return self.path.with_name(self.path.name + ".state")

    def simulated_state(self) -> tuple[PrinterState, str]:
        """The state written to :attr:`state_path` (READY when absent or unreadable)."""
        try:
            text = self.state_path.read_text(encoding="utf-8").strip().lower()
        except OSError:
            return PrinterState.READY, ""
        try:
            return PrinterState(text), f"simulated ({self.state_path})"
        except ValueError:
            return PrinterState.ERROR, f"{self.state_path} holds {text[:20]!r}, not a state"


class _FdTransport(Transport):
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


class SerialTransport(_FdTransport):
    """An RS-232 / USB-serial printer through pyserial (port set-up), I/O on its descriptor."""

    def __init__(self, port: str, baud: int = 19200, rtscts: bool = False,
                 timeout: float = 5.0, reads_status: bool = True) -> None:
        """Use serial ``port`` at ``baud``; ``rtscts`` for hardware flow control."""
        super().__init__(timeout, reads_status)
        self.port, self.baud, self.rtscts = port, baud, rtscts
        self._serial: object | None = None

    def __str__(self) -> str:
        return f"serial:{self.port}"

    def open(self) -> None:
        """Open and configure the port.

        Raises:
            PrinterUnavailable: the port does not exist or cannot be opened.
        """
        import serial  # pyserial: imported only when a serial printer is configured

        try:
            port = serial.Serial(self.port, self.baud, rtscts=self.rtscts, timeout=0,
                                 write_timeout=self.timeout, exclusive=True)
        except (serial.SerialException, ValueError) as exc:
            raise PrinterUnavailable(f"cannot open serial printer {self.port}: {exc}") from None
        self._serial = port
        self._fd = port.fileno()

    def close(self) -> None:
        """Close the port."""
        if self._serial is not None:
            with contextlib.suppress(Exception):
                self._serial.close()  # type: ignore[attr-defined]
        self._serial = None
        self._fd = None


class UsbTransport(_FdTransport):
    """A USB printer found by vendor and product id among the kernel's usblp devices.

    ``sysfs`` and ``dev`` are the roots to look under (``/sys``, ``/dev``); tests point them
    at a folder standing in for the vendor-id lookup, the one part no test machine has.
    """

    def __init__(self, vendor: int, product: int, timeout: float = 5.0,
                 reads_status: bool = True, sysfs: Path = Path("/sys"),
                 dev: Path = Path("/dev")) -> None:
        """Find the printer ``vendor:product``."""
        super().__init__(timeout, reads_status)
        self.vendor, self.product = vendor, product
        self.sysfs, self.dev = sysfs, dev

    def __str__(self) -> str:
        return f"usb:0x{self.vendor:04x}:0x{self.product:04x}"

    def find(self) -> Path | None:
        """The device node of the printer, or None when it is not plugged in."""
        for lp in sorted((self.sysfs / "class" / "usbmisc").glob("lp*")):
            usbdev = (lp / "device").resolve().parent  # interface -> its USB device
            try:
                vid = int((usbdev / "idVendor").read_text().strip(), 16)
                pid = int((usbdev / "idProduct").read_text().strip(), 16)
            except (OSError, ValueError):
                continue
            if (vid, pid) == (self.vendor, self.product):
                return self.dev / "usb" / lp.name
        return None

    def open(self) -> None:
        """Find and open the printer's node.

        Raises:
            PrinterUnavailable: not plugged in, or the node cannot be opened.
        """
        node = self.find()
        if node is None:
            raise PrinterUnavailable(f"no USB printer {self} (is it plugged in and the usblp "
                                     "driver loaded?)")
        try:
            self._fd = os.open(node, os.O_RDWR | os.O_NONBLOCK | os.O_NOCTTY)
        except OSError as exc:
            raise PrinterUnavailable(f"cannot open {node}: {exc.strerror}") from None


class TcpTransport(Transport):
    """A network printer on a raw TCP port (9100); one connection kept open between jobs."""

    bidirectional = True

    def __init__(self, host: str, port: int = 9100, timeout: float = 5.0,
                 reads_status: bool = True) -> None:
        """Connect to ``host:port``."""
        super().__init__(timeout, reads_status)
        self.host, self.port = host, port
        self._sock: socket.socket | None = None

    def __str__(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    @property
    def is_open(self) -> bool:
        """Whether connected."""
        return self._sock is not None

    def open(self) -> None:
        """Connect.

        Raises:
            PrinterUnavailable: refused, unreachable or timed out.
        """
        try:
            self._sock = socket.create_connection((self.host, self.port),
                                                  timeout=min(self.timeout, 3.0))
        except OSError as exc:
            raise PrinterUnavailable(f"cannot connect to {self}: {exc}") from None
        self._sock.settimeout(self.timeout)

    def close(self) -> None:
        """Disconnect."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None

    def _write_some(self, data: bytes) -> int:
        assert self._sock is not None
        sent = self._sock.send(data)
        if sent == 0:
            raise OSError(errno.EPIPE, "connection closed")
        return sent

    def _read_byte(self, wait: float) -> int | None:
        assert self._sock is not None
        self._sock.settimeout(wait)
        try:
            chunk = self._sock.recv(1)
        except TimeoutError:
            return None
        finally:
            self._sock.settimeout(self.timeout)
        if not chunk:
            raise OSError(errno.ECONNRESET, "printer closed the connection")
        return chunk[0]

    def _drain(self) -> None:
        assert self._sock is not None
        self._sock.setblocking(False)
        try:
            while True:
                try:
                    if not self._sock.recv(256):
                        raise OSError(errno.ECONNRESET, "printer closed the connection")
                except BlockingIOError:
                    return
        finally:
            self._sock.settimeout(self.timeout)


def _flag(params: dict[str, list[str]], name: str, default: bool) -> bool:
    value = params.get(name, ["1" if default else "0"])[-1].lower()
    if value not in ("0", "1", "true", "false", "yes", "no"):
        raise PrinterConfigError(f"printer URL parameter {name}={value!r}: use 1 or 0")
    return value in ("1", "true", "yes")


def _number(params: dict[str, list[str]], name: str, default: float) -> float:
    raw = params.get(name, [str(default)])[-1]
    try:
        value = float(raw)
    except ValueError:
        raise PrinterConfigError(f"printer URL parameter {name}={raw!r} is not a number") \
            from None
    if value <= 0:
        raise PrinterConfigError(f"printer URL parameter {name} must be positive")
    return value


def transport_from_url(url: str, home: Path | None = None) -> Transport:
    """The transport a printer URL names (see the module docstring).

    ``home`` is where ``simulate:`` without a path writes (``<home>/printer-sim.bin``).

    Raises:
        PrinterConfigError: unknown scheme, missing host/port/path, bad parameter.
    """
    scheme, _, rest = url.partition(":")
    path_part, _, query = rest.partition("?")
    params = parse_qs(query, keep_blank_values=True)
    timeout = _number(params, "timeout", 5.0)
    reads_status = _flag(params, "status", True)
    if scheme == "file":
        path = path_part.removeprefix("//")
        if not path:
            raise PrinterConfigError(f"printer URL {url!r}: file: needs a path")
        return FileTransport(Path(path), timeout)
    if scheme == "simulate":
        path = path_part.removeprefix("//")
        if not path:
            if home is None:
                raise PrinterConfigError("simulate: without a path needs the box home")
            return SimulatedTransport(home / SIM_DEFAULT, timeout)
        return SimulatedTransport(Path(path), timeout)
    if scheme == "tcp":
        parts = urlsplit(url)
        try:
            port = parts.port or 9100
        except ValueError:
            raise PrinterConfigError(f"printer URL {url!r}: bad port") from None
        if not parts.hostname:
            raise PrinterConfigError(f"printer URL {url!r}: tcp:// needs a host")
        return TcpTransport(parts.hostname, port, timeout, reads_status)
    if scheme == "serial":
        if not path_part:
            raise PrinterConfigError(f"printer URL {url!r}: serial: needs a port path")
        baud = _number(params, "baud", 19200)
        if baud != int(baud):
            raise PrinterConfigError(f"printer URL {url!r}: baud must be a whole number")
        return SerialTransport(path_part, int(baud), _flag(params, "rtscts", False), timeout,
                               reads_status)
    if scheme == "usb":
        ids = path_part.split(":")
        try:
            if len(ids) != 2:
                raise ValueError
            vendor, product = (int(i, 16) for i in ids)
        except ValueError:
            raise PrinterConfigError(f"printer URL {url!r}: use usb:0xVVVV:0xPPPP (hex vendor "
                                     "and product id)") from None
        return UsbTransport(vendor, product, timeout, reads_status)
    raise PrinterConfigError(f"printer URL {url!r}: unknown kind {scheme!r}; use file:, "
                             "simulate:, tcp://, serial: or usb:")
