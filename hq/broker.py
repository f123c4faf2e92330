"""HQ's connection to the MQTT broker: options, a paho MQTT 5 client, publish-and-wait.

Nothing here is mosquitto-specific: plain MQTT 5 (shared subscriptions, session expiry,
content type) as EMQX, HiveMQ and VerneMQ clusters also speak it.
"""

from __future__ import annotations

import argparse
import os
import socket
import ssl
import threading
import urllib.parse
from dataclasses import dataclass, field, replace

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge.credentials import SecretError, has_password, read_secret, redact
from edge.wire import HQ_MAX_PACKET
from sync.contract import CONTENT_JSON, DEFAULT_ROOT, QOS, Topics

PASSWORD_ENV = "HQ_MQTT_PASSWORD"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 1883
CONNECT_TIMEOUT_S = 10.0


class BrokerError(Exception):
    """The broker could not be reached, refused us, or did not acknowledge in time."""


@dataclass(frozen=True, slots=True)
class BrokerOptions:
    """Where the broker is and how HQ authenticates to it."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    tls: bool = False
    ca_file: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never printed
    cert_file: str | None = None
    key_file: str | None = None
    root: str = DEFAULT_ROOT
    # Other nodes of a cluster that keeps a retained message only on the node that received
    # it (ejabberd): HQ publishes retained config on each of them too (docs/brokers.md).
    cluster_nodes: tuple[tuple[str, int], ...] = ()

    @property
    def topics(self) -> Topics:
        """The topic map under this root."""
        return Topics(self.root)

    def retain_targets(self) -> list[BrokerOptions]:
        """Where a retained message goes: this broker, then each of ``cluster_nodes``."""
        return [self, *(replace(self, host=h, port=p, cluster_nodes=())
                        for h, p in self.cluster_nodes)]

    @classmethod
    def from_url(cls, url: str, **extra: str | None) -> BrokerOptions:
        """From ``mqtt://[user:pass@]host[:port]`` or ``mqtts://...`` (TLS, port 8883).

        Raises:
            BrokerError: another scheme, or a bad port.
        """
        parts = urllib.parse.urlsplit(url if "://" in url else f"mqtt://{url}")
        if parts.scheme not in ("mqtt", "mqtts"):
            raise BrokerError(f"broker URL {redact(url)!r}: use mqtt://host:port or "
                              "mqtts://host:port")
        tls = parts.scheme == "mqtts"
        try:
            port = parts.port or (8883 if tls else DEFAULT_PORT)
        except ValueError as exc:
            raise BrokerError(f"broker URL {redact(url)!r}: {exc}") from None
        return cls(host=parts.hostname or DEFAULT_HOST, port=port,
                   tls=tls or bool(extra.get("ca_file")),
                   ca_file=extra.get("ca_file"),
                   username=extra.get("username") or parts.username,
                   password=extra.get("password") or parts.password,
                   cert_file=extra.get("cert_file"), key_file=extra.get("key_file"),
                   root=extra.get("root") or DEFAULT_ROOT)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The broker options every HQ subcommand that talks MQTT takes."""
    p.add_argument("--broker", default=f"mqtt://{DEFAULT_HOST}:{DEFAULT_PORT}",
                   help="mqtt://host:port or mqtts://host:port (default %(default)s)")
    p.add_argument("--ca-file", help="CA certificate for TLS")
    p.add_argument("--username")
    p.add_argument("--password-file", help=f"file holding the broker password (or set "
                                           f"{PASSWORD_ENV}; never on the command line)")
    p.add_argument("--cert-file", help="client certificate (instead of a password)")
    p.add_argument("--key-file", help="client certificate's private key")
    p.add_argument("--topic-root", default=DEFAULT_ROOT, help="default %(default)s")
    p.add_argument("--cluster-node", action="append", default=[], metavar="URL",
                   help="another node of a cluster that keeps retained messages per node "
                        "(ejabberd): retained config is published there too (repeatable)")


def options_from_args(args: argparse.Namespace) -> BrokerOptions:
    """:class:`BrokerOptions` from :func:`add_arguments`' options.

    The password comes from ``HQ_MQTT_PASSWORD`` or ``--password-file``: a command line is
    readable by every user of the machine (``ps``).

    Raises:
        BrokerError: a password in ``--broker``, or an unreadable password file.
    """
    if has_password(args.broker):
        raise BrokerError(f"--broker {redact(args.broker)} carries a password, which ps shows "
                          f"to every user: set {PASSWORD_ENV} or use --password-file")
    try:
        password = os.environ.get(PASSWORD_ENV) or (
            read_secret(args.password_file, "--password-file") if args.password_file else None)
    except SecretError as exc:
        raise BrokerError(str(exc)) from None
    opts = BrokerOptions.from_url(args.broker, ca_file=args.ca_file, username=args.username,
                                password=password, cert_file=args.cert_file,
                                  key_file=args.key_file, root=args.topic_root)
    nodes = [BrokerOptions.from_url(u) for u in getattr(args, "cluster_node", [])]
    return replace(opts, cluster_nodes=tuple((n.host, n.port) for n in nodes))


def make_client(opts: BrokerOptions, client_id: str, manual_ack: bool = False) -> mqtt.Client:
    """A paho MQTT 5 client set up for ``opts`` (not yet connected)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=MQTTProtocolVersion.MQTTv5, manual_ack=manual_ack)
    if opts.username:
        client.username_pw_set(opts.username, opts.password)
    if opts.tls:
        client.tls_set(ca_certs=opts.ca_file, certfile=opts.cert_file, keyfile=opts.key_file,
                       tls_version=ssl.PROTOCOL_TLS_CLIENT)
    client.reconnect_delay_set(1, 30)
    return client


def set_nodelay(client: mqtt.Client) -> None:
    """Turn Nagle off on the client's socket (paho leaves it on).

    An ingest worker writes a PUBACK and then a fan-out PUBLISH back to back; with Nagle
    the second waits for the broker's delayed ACK of the first: ~40 ms per fan-out.
    """
    sock = client.socket()
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def connect_properties(session_expiry_s: int) -> Properties:
    """CONNECT properties: a session that outlives the connection by ``session_expiry_s``.

    Also the MQTT 5 Maximum Packet Size (``edge.wire.HQ_MAX_PACKET``): the broker drops a
    bigger message for HQ rather than sending it (``docs/security.md``, "Inbound limits").
    """
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = session_expiry_s
    props.MaximumPacketSize = HQ_MAX_PACKET
    return props


def json_properties() -> Properties:
    """PUBLISH properties for a JSON payload."""
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.ContentType = CONTENT_JSON
    return props


class OneShot:
    """A short-lived connection that publishes a few messages and waits for their PUBACKs."""

    def __init__(self, opts: BrokerOptions, client_id: str) -> None:
        """Prepare a client; nothing is sent until :meth:`__enter__`."""
        self.opts = opts
        self.client = make_client(opts, client_id)
        self._connected = threading.Event()
        self._refused: str = ""
        self.client.on_connect = self._on_connect

    def _on_connect(self, _c: mqtt.Client, _u: object, _f: mqtt.ConnectFlags,
                    rc: ReasonCode, _p: Properties | None) -> None:
        if rc.is_failure:
            self._refused = str(rc)
        else:
            set_nodelay(self.client)
        self._connected.set()

    def __enter__(self) -> OneShot:
        """Connect and wait for CONNACK.

        Raises:
            BrokerError: unreachable, refused, or no CONNACK in time.
        """
        try:
            self.client.connect(self.opts.host, self.opts.port, keepalive=30, clean_start=True)
        except (OSError, ssl.SSLError) as exc:
            raise BrokerError(f"cannot reach broker {self.opts.host}:{self.opts.port}: "
                              f"{exc}") from None
        self.client.loop_start()
        if not self._connected.wait(CONNECT_TIMEOUT_S) or self._refused:
            self.close()
            raise BrokerError(f"broker {self.opts.host}:{self.opts.port} refused us: "
                              f"{self._refused or 'no CONNACK'}")
        return self

    def __exit__(self, *exc: object) -> None:
        """Disconnect cleanly."""
        self.close()

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, topic: str, payload: bytes, retain: bool = False,
                timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        """Publish at QoS 1 and wait for the broker's PUBACK.

        Raises:
            BrokerError: the publish failed or was not acknowledged in time.
        """
        info = self.client.publish(topic, payload, qos=QOS, retain=retain,
                                   properties=json_properties())
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise BrokerError(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")
        try:
            info.wait_for_publish(timeout_s)
        except (RuntimeError, ValueError) as exc:
            raise BrokerError(f"publish to {topic} failed: {exc}") from None
        if not info.is_published():
            raise BrokerError(f"no PUBACK for {topic} within {timeout_s:.0f} s")
