"""A network printer on a raw TCP port (``tcp://host:9100``)."""

from __future__ import annotations

import contextlib
import errno
import socket

from drivers.printer_transport.base import PrinterUnavailable, Transport


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
