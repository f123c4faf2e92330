"""The simulated serial scanner: a pseudo-terminal people (and tests) can type codes into.

Two pty pairs joined by the daemon, as ``socat`` would:

* the *input* side: its slave path (``/dev/pts/N``, linked as ``<home>/run/scanner``) is
  where ``echo CODE > <home>/run/scanner`` writes; the daemon reads the master.
* the *port* side: its slave path is what the serial scanner driver opens, exactly as it
  opens ``/dev/ttyACM0`` on a box; the daemon writes to the master what came in.

The daemon keeps its own descriptor on the input slave open, so a writer closing its end
(``echo`` exits) never hangs up the master. Both slaves are raw: no echo, no line editing,
no CR/LF translation: the driver sees the bytes that were written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pty
import tty
from pathlib import Path

log = logging.getLogger("edge.sim")


class PtyBridge:
    """Owns both pty pairs; :meth:`start` wires them on the running loop."""

    def __init__(self, link: Path | None = None) -> None:
        """Create the pairs; ``link`` (if given) becomes a symlink to the input path."""
        self._in_master, self._in_slave = pty.openpty()
        self._port_master, self._port_slave = pty.openpty()
        for fd in (self._in_slave, self._port_slave):
            tty.setraw(fd)
        for fd in (self._in_master, self._port_master):
            os.set_blocking(fd, False)
        self.input_path = os.ttyname(self._in_slave)
        self.port_path = os.ttyname(self._port_slave)
        self.link = link
        if link is not None:
            link.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                link.unlink()
            link.symlink_to(self.input_path)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.forwarded = 0

    def start(self) -> None:
        """Start forwarding input to the port on the running loop."""
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._in_master, self._forward)
        # Drain whatever the port side's reader writes back (a driver may send commands).
        self._loop.add_reader(self._port_master, self._drain_port)

    def _forward(self) -> None:
        try:
            data = os.read(self._in_master, 65536)
        except BlockingIOError:
            return
        except OSError as exc:
            log.warning("sim scanner: input side read failed: %s", exc)
            return
        view = memoryview(data)
        while view:
            try:
                n = os.write(self._port_master, view)
            except BlockingIOError:
                # The port side's reader is not keeping up: a real scanner has no buffer
                # either; dropping is what a line with no flow control would do.
                log.warning("sim scanner: port side full, %d bytes dropped", len(view))
                return
            except OSError as exc:
                log.warning("sim scanner: port side write failed: %s", exc)
                return
            view = view[n:]
            self.forwarded += n

    def _drain_port(self) -> None:
        with contextlib.suppress(OSError):
            os.read(self._port_master, 65536)

    def close(self) -> None:
        """Stop forwarding, close every descriptor and remove the link."""
        if self._loop is not None:
            for fd in (self._in_master, self._port_master):
                with contextlib.suppress(ValueError, OSError):
                    self._loop.remove_reader(fd)
        for fd in (self._in_master, self._in_slave, self._port_master, self._port_slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self.link is not None and self.link.is_symlink():
            with contextlib.suppress(FileNotFoundError):
                self.link.unlink()
