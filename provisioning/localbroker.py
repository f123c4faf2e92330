"""A real mosquitto on a free loopback port: the demo's embedded broker, and the tests'.

Persistence is on, in the broker's own temporary folder, so a stop and start on the same
port keeps client sessions, their subscriptions and queued QoS 1 messages, as a production
broker does across a restart.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

MOSQUITTO = os.environ.get("MOSQUITTO", "/usr/sbin/mosquitto")


def free_port() -> int:
    """A TCP port nothing listens on right now (127.0.0.1)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """One mosquitto process; ``start``/``stop``/``kill``/``restart`` keep the same port."""

    def __init__(self, workdir: Path, port: int | None = None,
                 max_queued_messages: int = 200_000, listener_options: str = "",
                 anonymous: bool = True) -> None:
        """Prepare a broker in ``workdir`` (config, persistence, log).

        ``listener_options`` are mosquitto lines for the listener (TLS files, password
        file...); ``anonymous=False`` makes clients authenticate.
        """
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.conf = workdir / "mosquitto.conf"
        user = "user root\n" if os.geteuid() == 0 else ""  # else mosquitto drops to its user
        self.conf.write_text(
            f"listener {self.port} {self.host}\n"
            f"{listener_options.strip()}\n"
            f"allow_anonymous {'true' if anonymous else 'false'}\n"
            f"{user}"
            "persistence true\n"
            f"persistence_location {workdir}/\n"
            "persistence_file mosquitto.db\n"
            f"max_queued_messages {max_queued_messages}\n"
            "max_inflight_messages 20\n"
            "set_tcp_nodelay true\n"
            f"log_dest file {workdir}/mosquitto.log\n"
            "log_type error\nlog_type warning\nlog_type notice\n", encoding="utf-8")

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        """Start and wait until the port accepts connections.

        Raises:
            RuntimeError: mosquitto exited or never listened (its log is in the message).
        """
        if shutil.which(MOSQUITTO) is None:
            raise RuntimeError(f"{MOSQUITTO} not found: install mosquitto (make setup)")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited {self.proc.returncode}: {self._log()}")
            with contextlib.suppress(OSError), socket.create_connection(
                    (self.host, self.port), timeout=0.2):
                return
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"mosquitto did not listen on {self.port}: {self._log()}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (mosquitto saves its persistence file) and wait."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close()

    def kill(self) -> None:
        """SIGKILL: what was not yet saved is gone, as after a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close()

    def restart(self) -> None:
        """Stop (saving sessions) and start again on the same port."""
        self.stop()
        self.start()

    def _close(self) -> None:
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()

    def _log(self) -> str:
        path = self.workdir / "mosquitto.log"
        text = path.read_text(errors="replace")[-2000:] if path.exists() else ""
        err = b""
        if self.proc is not None and self.proc.stderr is not None and self.proc.poll() is not None:
            err = self.proc.stderr.read()[-2000:]
        return (text + err.decode(errors="replace")).strip()
