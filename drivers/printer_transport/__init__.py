"""Receipt-printer transports, one module each, chosen by a URL-like string from config.

The ``[printer] url`` picks the class, as pyserial's ``serial_for_url`` does::

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

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from drivers.printer_transport.base import (
    PRINTABLE,
    FdTransport,
    PrinterConfigError,
    PrinterError,
    PrinterState,
    PrinterUnavailable,
    SendError,
    Transport,
)
from drivers.printer_transport.file import FileTransport, SimulatedTransport
from drivers.printer_transport.serial_port import SerialTransport
from drivers.printer_transport.tcp import TcpTransport
from drivers.printer_transport.usb_lp import UsbTransport

__all__ = [
    "PRINTABLE", "FdTransport", "FileTransport", "PrinterConfigError", "PrinterError",
    "PrinterState", "PrinterUnavailable", "SendError", "SerialTransport", "SimulatedTransport",
    "TcpTransport", "Transport", "UsbTransport", "transport_from_url",
]

SIM_DEFAULT = "printer-sim.bin"


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
