"""The real store daemon (``edge run --simulate``) as a child process, for the UI tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from edged.localapi import socket_path

ROOT = Path(__file__).resolve().parent.parent


class DaemonProcess:
    """``edge --home HOME run --simulate``, started and stopped like systemd would."""

    def __init__(self, home: Path, env: dict[str, str] | None = None) -> None:
        """A daemon for ``home`` (not started yet), with ``env`` added to its environment."""
        self.home = home
        self.env = env or {}
        self.path = socket_path(home)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = home / "daemon.log"

    def start(self) -> DaemonProcess:
        """Start it; returns once its socket answers (or raises with its log)."""
        env = {**os.environ, "PYTHONPATH": str(ROOT), **self.env}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cli.edge", "--home", str(self.home), "run",
                 "--simulate", "--log-level", "WARNING"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while not self._answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"daemon did not start:\n{self.log.read_text()}")
            time.sleep(0.05)
        return self

    def _answers(self) -> bool:
        import socket

        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.connect(str(self.path))
            except OSError:
                return False
        return True

    def scanner_input(self) -> Path:
        """The simulated serial scanner: bytes written here arrive as a scan."""
        return self.home / "run" / "scanner"

    def stop(self) -> None:
        """SIGTERM and wait (kill after 10 s)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
