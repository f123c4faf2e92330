"""An RS-232 / USB-serial printer (``serial:/dev/ttyUSB0?baud=19200``)."""

from __future__ import annotations

import contextlib

from drivers.printer_transport.base import FdTransport, PrinterUnavailable


class SerialTransport(FdTransport):
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
