"""A USB printer by vendor and product id, through the kernel's usblp driver (``usb:VID:PID``)."""

from __future__ import annotations

import os
from pathlib import Path

from drivers.printer_transport.base import FdTransport, PrinterUnavailable


class UsbTransport(FdTransport):
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
