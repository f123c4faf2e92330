"""systemd's notify protocol, spoken directly: one datagram per message to ``$NOTIFY_SOCKET``.

No dependency: the protocol is ``KEY=VALUE`` lines in a datagram on a Unix socket (an
abstract one when the path starts with ``@``). Outside systemd (no ``NOTIFY_SOCKET``) every
call is a no-op, so the daemon runs the same from a terminal.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("edge.notify")


class Notifier:
    """Sends READY/WATCHDOG/STATUS/STOPPING to the service manager, if there is one."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        """Read ``NOTIFY_SOCKET`` and ``WATCHDOG_USEC`` from ``environ`` (default os.environ)."""
        env = dict(os.environ if environ is None else environ)
        self.address = env.get("NOTIFY_SOCKET", "")
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        # WATCHDOG_PID names the process the watchdog is meant for; a child must not ping.
        self.watchdog_usec = int(usec) if usec.isdigit() and (not pid or
                                                              pid == str(os.getpid())) else 0
        self._sock: socket.socket | None = None
        self._status = ""

    @property
    def enabled(self) -> bool:
        """Whether a service manager listens."""
        return bool(self.address)

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings (half the manager's timeout), or None."""
        return self.watchdog_usec / 2e6 if self.watchdog_usec else None

    def send(self, *fields: str) -> bool:
        """Send ``fields`` as one message; returns whether it was sent. Never raises."""
        if not self.address:
            return False
        addr = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            if self._sock is None:
                # Non-blocking: a manager that stops reading must never stall the event
                # loop (a full datagram queue blocks a plain sendto).
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                                           | socket.SOCK_NONBLOCK)
            self._sock.sendto("\n".join(fields).encode("utf-8"), addr)
        except BlockingIOError:
            log.debug("notify: %s not sent: the manager's queue is full", fields[0])
            return False
        except OSError as exc:
            # A manager that went away must not take the daemon down with it.
            log.warning("notify: cannot send %s to %s: %s", fields[0], self.address, exc)
            return False
        return True

    def ready(self, status: str = "") -> bool:
        """READY=1 (and a status line)."""
        return self.send("READY=1", *((f"STATUS={status}",) if status else ()))

    def watchdog(self) -> bool:
        """WATCHDOG=1: the daemon's loop is alive."""
        return self.send("WATCHDOG=1")

    def status(self, text: str) -> bool:
        """STATUS=text, shown by ``systemctl status`` (sent only when it changes)."""
        if text == self._status:
            return False
        self._status = text
        return self.send(f"STATUS={text}")

    def stopping(self) -> bool:
        """STOPPING=1."""
        return self.send("STOPPING=1")

    def close(self) -> None:
        """Close the datagram socket."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
