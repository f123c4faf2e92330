"""File and simulated printers: bytes appended to a path (a file, or a device like /dev/usb/lp0)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from drivers.printer_transport.base import PrinterState, PrinterUnavailable, Transport


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
