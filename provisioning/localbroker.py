"""Real MQTT 5 brokers on a free loopback port: the demo's embedded broker, and the tests'.

Two independent implementations behind one interface (:class:`LocalBroker`): mosquitto
(:class:`Broker`, the default) and rumqttd (:class:`Rumqttd`, from the ``iotcore`` wheel).
Each runs as its own process; ``start``/``stop``/``kill``/``restart`` keep the same port.

mosquitto runs with persistence on, in the broker's own temporary folder, so a stop and
start keeps client sessions, their subscriptions and queued QoS 1 messages, as a
production broker does across a restart. rumqttd keeps everything in memory: a restart
forgets sessions, queued messages and retained messages (``persistent`` is False).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import ClassVar

MOSQUITTO = os.environ.get("MOSQUITTO", "/usr/sbin/mosquitto")
BROKER_KINDS = ("mosquitto", "rumqttd")


def free_port() -> int:
    """A TCP port nothing listens on right now (127.0.0.1)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalBroker:
    """One broker process on 127.0.0.1; subclasses say how to run it.

    ``features`` names what the tests may rely on beyond what every broker here does:
    ``persistence`` (sessions and queued messages survive a restart), ``shared_redelivery``
    (a message of a ``$share`` subscription left unacknowledged is delivered again when the
    session resumes, as MQTT 5 requires), ``acl`` and ``tls`` (set up through mosquitto's
    ``listener_options``), ``max_packet_size`` (a message larger than a client's announced
    MQTT 5 Maximum Packet Size is not forwarded to it, as MQTT 5 requires).
    """

    kind: ClassVar[str] = ""
    features: ClassVar[frozenset[str]] = frozenset()
    log_name: ClassVar[str] = "broker.log"

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        """Prepare a broker in ``workdir`` (its config and log live there)."""
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def persistent(self) -> bool:
        """Whether sessions and queued messages survive ``restart``."""
        return "persistence" in self.features

    def command(self) -> list[str]:
        """The command line that runs the broker in the foreground."""
        raise NotImplementedError

    def check_installed(self) -> None:
        """Raise RuntimeError naming what to install when the broker is missing."""

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        """Start and wait until the port accepts connections.

        Raises:
            RuntimeError: the broker exited or never listened (its log is in the message).
        """
        self.check_installed()
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited {self.proc.returncode}: {self._log()}")
            with contextlib.suppress(OSError), socket.create_connection(
                    (self.host, self.port), timeout=0.2):
                return
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"{self.kind} did not listen on {self.port}: {self._log()}")

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
        """Stop (saving sessions where the broker can) and start again on the same port."""
        self.stop()
        self.start()

    def _close(self) -> None:
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()

    def _log(self) -> str:
        path = self.workdir / self.log_name
        text = path.read_text(errors="replace")[-2000:] if path.exists() else ""
        err = b""
        if self.proc is not None and self.proc.stderr is not None and self.proc.poll() is not None:
            err = self.proc.stderr.read()[-2000:]
        return (text + err.decode(errors="replace")).strip()


class Broker(LocalBroker):
    """One mosquitto process (persistence on; ACL and TLS through ``listener_options``)."""

    kind = "mosquitto"
    features = frozenset({"persistence", "shared_redelivery", "acl", "tls", "max_packet_size"})
    log_name = "mosquitto.log"

    def __init__(self, workdir: Path, port: int | None = None,
                 max_queued_messages: int = 200_000, listener_options: str = "",
                 anonymous: bool = True) -> None:
        """Prepare a broker in ``workdir`` (config, persistence, log).

        ``listener_options`` are mosquitto lines for the listener (TLS files, password
        file...); ``anonymous=False`` makes clients authenticate.
        """
        super().__init__(workdir, port)
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

    def command(self) -> list[str]:
        """``mosquitto -c CONF``."""
        return [MOSQUITTO, "-c", str(self.conf)]

    def check_installed(self) -> None:
        """Mosquitto is a Debian package (scripts/bootstrap.sh)."""
        if shutil.which(MOSQUITTO) is None:
            raise RuntimeError(f"{MOSQUITTO} not found: install mosquitto (make setup)")


class Rumqttd(LocalBroker):
    """One rumqttd process (the Rust broker in PyPI's ``iotcore`` wheel), MQTT 5 listener.

    Independent of mosquitto in code and behaviour, which is the point: what passes on both
    assumes nothing of either. It keeps sessions, queued and retained messages in memory
    only; a message of a ``$share`` subscription that the subscriber did not acknowledge
    is not delivered again when its session resumes (a plain subscription's is); it has no
    ACL file, and its TLS needs certificates in its own TOML. None of those is in
    ``features``.
    """

    kind = "rumqttd"
    features = frozenset()
    log_name = "rumqttd.log"

    def __init__(self, workdir: Path, port: int | None = None,
                 max_payload_size: int = 4 * 1024 * 1024, max_inflight: int = 100) -> None:
        """Prepare a broker in ``workdir`` (its TOML config).

        ``max_payload_size`` caps one PUBLISH (rumqttd's default, 20 kB, is below a full
        compressed batch); ``max_inflight`` is per connection.
        """
        super().__init__(workdir, port)
        self.conf = workdir / "rumqttd.toml"
        # One MQTT 5 listener; router segments sized for tests (the default keeps up to
        # 1 GB of messages in memory).
        self.conf.write_text(
            "id = 0\n"
            "[router]\n"
            "id = 0\n"
            "max_connections = 10010\n"
            "max_outgoing_packet_count = 200\n"
            "max_segment_size = 16777216\n"
            "max_segment_count = 10\n"
            "[v5.1]\n"
            'name = "v5-1"\n'
            f'listen = "{self.host}:{self.port}"\n'
            "next_connection_delay_ms = 1\n"
            "[v5.1.connections]\n"
            "connection_timeout_ms = 60000\n"
            f"max_payload_size = {max_payload_size}\n"
            f"max_inflight_count = {max_inflight}\n", encoding="utf-8")

    def command(self) -> list[str]:
        """``python -m iotcore --config CONF`` in this interpreter.

        Python logging off: rumqttd reports every routed packet as an error-level span.
        """
        return [sys.executable, "-m", "iotcore", "--config", str(self.conf),
                "--log-level", "CRITICAL"]

    def check_installed(self) -> None:
        """Rumqttd comes with the ``iotcore`` wheel (the ``test`` extra)."""
        try:
            import iotcore  # noqa: F401  (only whether it is there)
        except ImportError:
            raise RuntimeError("rumqttd not found: pip install iotcore (make setup)") from None


BROKERS: dict[str, type[LocalBroker]] = {"mosquitto": Broker, "rumqttd": Rumqttd}


def local_broker(kind: str, workdir: Path, port: int | None = None) -> LocalBroker:
    """A broker of ``kind`` (one of :data:`BROKER_KINDS`) in ``workdir``.

    Raises:
        ValueError: an unknown kind.
    """
    if kind not in BROKERS:
        raise ValueError(f"unknown broker {kind!r}: use one of {', '.join(BROKER_KINDS)}")
    return BROKERS[kind](workdir, port)
