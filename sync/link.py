"""The one place paho-mqtt meets asyncio: a single MQTT 5 connection driven by the event loop.

paho's ``examples/loop_asyncio.py`` pattern: the client's socket is registered with the loop
(``add_reader`` / ``add_writer``) and ``loop_misc`` runs once a second for keepalive, so
every paho callback runs on the event-loop thread and may touch the ledger directly. Only
``connect()`` (DNS, TCP and the TLS handshake, all blocking) runs in an executor thread; the
socket callbacks it triggers hop back to the loop with ``call_soon_threadsafe``.

One :class:`Link` is one connection. Reconnecting means a new ``Link`` with the same client
id: the broker keeps the session (``clean_start=False`` plus a session expiry interval), while
paho's in-memory queue, which would refuse the newest message when full and is lost on a
restart anyway, is never relied on: the SQLite outbox is the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties, VariableByteIntegers
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from edge import wire
from sync.contract import QOS, SIG_PROPERTY
from sync.settings import MqttSettings, SyncError

log = logging.getLogger(__name__)


class LinkError(SyncError):
    """The connection could not be made or is gone."""


class ConnectRefused(LinkError):
    """The broker answered CONNECT with a failure (bad credentials, not authorised, ...)."""

    def __init__(self, reason: str) -> None:
        """Carry the broker's reason."""
        super().__init__(f"broker refused the connection: {reason}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Will:
    """The message the broker publishes (retained) if the connection dies."""

    topic: str
    payload: bytes
    signature: str | None = None  # the device's ``se-sig`` over the will (sync.contract)


class _PackedProperties(Properties):
    """PUBLISH properties serialised once.

    paho packs its Properties again on every publish: ~25 us each, a tenth of a batch's
    cost in the drain.
    """

    def __init__(self, content_type: str) -> None:
        super().__init__(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        self.ContentType = content_type
        # Properties' __setattr__ admits only MQTT property names: store past it.
        object.__setattr__(self, "_packed", super().pack())  # type: ignore[no-untyped-call]

    def pack(self) -> bytes:
        """The bytes packed at construction."""
        packed: bytes = self.__dict__["_packed"]
        return packed


class _RawProperties(Properties):
    """PUBLISH properties given in their wire form: a signed message's, packed by hand.

    A signature differs per message, so these are made per publish; paho's own
    ``Properties()`` builds its name tables each time (more than the rest of a publish
    costs), and paho only ever calls ``pack`` on PUBLISH properties.
    """

    def __init__(self, packed: bytes) -> None:
        object.__setattr__(self, "_packed", packed)  # no tables: see the class docstring

    def pack(self) -> bytes:
        """The bytes given."""
        packed: bytes = self.__dict__["_packed"]
        return packed

    def __repr__(self) -> str:
        return f"<{len(self.__dict__['_packed'])} bytes of properties>"

    __str__ = __repr__


def _utf8(text: str) -> bytes:
    data = text.encode("utf-8")
    return len(data).to_bytes(2, "big") + data


def signed_properties(content_type: str | None, signature: str) -> bytes:
    """MQTT 5 PUBLISH properties: the content type (if any) and the ``se-sig`` user property."""
    body = (b"\x03" + _utf8(content_type) if content_type else b"") + (
        b"\x26" + _utf8(SIG_PROPERTY) + _utf8(signature))
    packed: bytes = VariableByteIntegers.encode(len(body))  # type: ignore[no-untyped-call]
    return packed + body


Ack = Callable[[int, bool, str], None]  # (mid, ok, reason)
Inbound = Callable[[mqtt.MQTTMessage], None]


class Link:
    """One MQTT 5 connection, its callbacks delivered on the event loop."""

    def __init__(self, settings: MqttSettings, client_id: str, will: Will | None,
                 on_message: Inbound, on_ack: Ack) -> None:
        """Prepare (not open) a connection; ``on_message``/``on_ack`` run on the loop."""
        self.settings = settings
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._on_message = on_message
        self._on_ack = on_ack
        self._connack: asyncio.Future[bool] = self._loop.create_future()
        self.closed = asyncio.Event()
        self.close_reason = ""
        self._fd: int | None = None
        self._writing = False  # the socket is registered for writability
        self._in_write = False  # paho is writing (loop_write) now
        self._write_soon = False  # a write is scheduled for this loop iteration
        self._misc: asyncio.Task[None] | None = None
        self._props: dict[str, _PackedProperties] = {}
        # manual_ack: an inbound message is acknowledged only once it is handled (committed).
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                        protocol=MQTTProtocolVersion.MQTTv5, manual_ack=True)
        c.connect_timeout = settings.connect_timeout_s
        c.max_inflight_messages_set(max(settings.max_inflight, 1) + 4)  # + status, reported
        c.max_queued_messages_set(0)
        if settings.tls:
            c.tls_set(ca_certs=str(settings.ca_file) if settings.ca_file else None,
                      certfile=str(settings.cert_file) if settings.cert_file else None,
                      keyfile=str(settings.key_file) if settings.key_file else None)
        if settings.username is not None:
            c.username_pw_set(settings.username, settings.password)
        if will is not None:
            will_props = None
            if will.signature:
                will_props = Properties(PacketTypes.WILLMESSAGE)  # type: ignore[no-untyped-call]
                will_props.UserProperty = (SIG_PROPERTY, will.signature)
            c.will_set(will.topic, will.payload, qos=QOS, retain=True, properties=will_props)
        c.on_connect = self._handle_connect
        c.on_disconnect = self._handle_disconnect
        c.on_publish = self._handle_publish
        c.on_message = self._handle_message
        c.on_socket_open = self._socket_open
        c.on_socket_close = self._socket_close
        c.on_socket_register_write = self._register_write
        c.on_socket_unregister_write = self._unregister_write
        self.client = c

    # -- opening and closing ----------------------------------------------------------

    async def open(self) -> bool:
        """Connect and wait for CONNACK; returns whether the broker still had our session.

        Raises:
            LinkError: TCP/TLS failure or timeout.
            ConnectRefused: the broker refused (credentials, authorisation, ...).
        """
        s = self.settings
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = s.session_expiry_s
        # The broker never sends us a bigger packet (it drops it for this client): a 60 MB
        # message on the config topic must not reach a box with 200 MB of memory.
        props.MaximumPacketSize = wire.BOX_MAX_PACKET
        connect = partial(self.client.connect, s.host, s.port, s.keepalive_s,
                          clean_start=False, properties=props)
        try:
            rc = await asyncio.wait_for(self._loop.run_in_executor(None, connect),
                                        s.connect_timeout_s + 5)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                raise LinkError(f"connect: {mqtt.error_string(rc)}")
            return await asyncio.wait_for(asyncio.shield(self._connack), s.connect_timeout_s)
        except (OSError, ssl.SSLError, TimeoutError, socket.gaierror) as exc:
            self.abort(f"connect: {exc!r}")
            raise LinkError(f"cannot connect to {s.host}:{s.port}: {exc!r}") from None
        except BaseException:
            self.abort("connect abandoned")
            raise

    async def close(self, timeout: float = 2.0) -> None:
        """Disconnect cleanly (no will), or drop the socket if that takes too long."""
        if self.closed.is_set():
            return
        self.client.disconnect()
        try:
            await asyncio.wait_for(self.closed.wait(), timeout)
        except TimeoutError:
            self.abort("clean disconnect timed out")

    def abort(self, reason: str) -> None:
        """Drop the connection now (the broker will publish the will)."""
        sock = self.client.socket()
        self._forget_socket()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
        self._mark_closed(reason)

    # -- using -------------------------------------------------------------------------

    def publish(self, topic: str, payload: bytes, retain: bool = False,
                content_type: str | None = None, signature: str | None = None,
                properties: bytes | None = None) -> int:
        """Queue a QoS 1 publish; returns its mid (``on_ack`` gets it at PUBACK).

        ``signature``: the device's ``se-sig`` over this message (``sync.contract``).
        ``properties``: the message's PUBLISH properties already packed
        (:func:`signed_properties`, made when a batch was prepared), instead of both.

        Raises:
            LinkError: not connected.
        """
        props: Properties | None = None
        if properties is not None:
            props = _RawProperties(properties)
        elif signature:
            props = _RawProperties(signed_properties(content_type, signature))
        elif content_type:
            props = self._props.get(content_type)
            if props is None:  # built once per content type: paho's Properties are costly
                props = self._props[content_type] = _PackedProperties(content_type)
        info = self.client.publish(topic, payload, qos=QOS, retain=retain, properties=props)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise LinkError(f"publish: {mqtt.error_string(info.rc)}")
        return info.mid

    def subscribe(self, topics: list[str]) -> None:
        """Subscribe at QoS 1 (retained messages are sent on every subscribe).

        Raises:
            LinkError: not connected.
        """
        rc, _mid = self.client.subscribe([(t, SubscribeOptions(qos=QOS)) for t in topics])
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise LinkError(f"subscribe: {mqtt.error_string(rc)}")

    # -- paho callbacks (all on the loop thread) ----------------------------------------

    def _handle_connect(self, _c: mqtt.Client, _u: Any, flags: mqtt.ConnectFlags,
                        rc: ReasonCode, _p: Properties | None) -> None:
        if self._connack.done():
            return
        if rc.is_failure:
            self._connack.set_exception(ConnectRefused(str(rc)))
        else:
            self._connack.set_result(bool(flags.session_present))

    def _handle_disconnect(self, _c: mqtt.Client, _u: Any, _f: mqtt.DisconnectFlags,
                           rc: ReasonCode, _p: Properties | None) -> None:
        self._mark_closed(str(rc))

    def _handle_publish(self, _c: mqtt.Client, _u: Any, mid: int, rc: ReasonCode,
                        _p: Properties | None) -> None:
        self._on_ack(mid, not rc.is_failure, str(rc))

    def _handle_message(self, c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        # PUBACK only after the handler committed: a crash or a ledger error before that
        # leaves the message in the broker's session, delivered again on the next connect.
        try:
            self._on_message(msg)
        except Exception:
            log.exception("inbound message on %s could not be handled; reconnecting to get "
                          "it again", msg.topic)
            self._loop.call_soon(self.abort, "an inbound message could not be handled")
            return
        c.ack(msg.mid, msg.qos)

    def _mark_closed(self, reason: str) -> None:
        if not self.closed.is_set():
            self.close_reason = reason
            self.closed.set()
            if not self._connack.done():
                self._connack.set_exception(LinkError(f"connection closed: {reason}"))
                self._connack.exception()  # retrieved: nobody may be waiting any more
        if self._misc is not None:
            self._misc.cancel()
            self._misc = None

    # -- socket plumbing --------------------------------------------------------------

    def _on_loop(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the loop: now if we are on it, else soon (connect's thread)."""
        if self._loop.is_closed():
            return  # a client garbage-collected after its loop: nothing left to unregister
        if threading.get_ident() == self._loop_thread:
            fn()
        else:
            self._loop.call_soon_threadsafe(fn)

    def _socket_open(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        fd = sock.fileno()

        def register() -> None:
            if self.closed.is_set():  # abandoned while connect() ran in its thread
                with contextlib.suppress(OSError):
                    sock.close()
                return
            self._fd = fd
            self._loop.add_reader(fd, self._read)
            self._misc = self._loop.create_task(self._misc_loop(), name="mqtt-misc")
        self._on_loop(register)

    def _socket_close(self, _c: mqtt.Client, _u: Any, _sock: Any) -> None:
        # Called just before paho closes the socket, on the loop thread: unregister by fd
        # while the fd still names this socket.
        self._on_loop(self._forget_socket)

    def _register_write(self, _c: mqtt.Client, _u: Any, _sock: Any) -> None:
        def register() -> None:
            if self._fd is None or self._writing:
                return
            if self._in_write:  # the socket took less than paho had: wait until it takes more
                self._writing = True
                self._loop.add_writer(self._fd, self._write)
            elif not self._write_soon:
                # New packets queued: write them once this loop iteration's callbacks are
                # done (a drain's burst goes out in one write), without registering the
                # socket for writability and unregistering it again for every burst.
                self._write_soon = True
                self._loop.call_soon(self._write_queued)
        self._on_loop(register)

    def _unregister_write(self, _c: mqtt.Client, _u: Any, _sock: Any) -> None:
        def unregister() -> None:
            if self._fd is not None and self._writing:
                self._writing = False
                self._loop.remove_writer(self._fd)
        self._on_loop(unregister)

    def _forget_socket(self) -> None:
        if self._fd is not None:
            self._loop.remove_reader(self._fd)
            if self._writing:
                self._loop.remove_writer(self._fd)
            self._writing = False
            self._fd = None

    def _read(self) -> None:
        rc = self.client.loop_read()
        sock = self.client.socket()
        # TLS may hold decrypted bytes the selector cannot see: read them now.
        while (rc == MQTTErrorCode.MQTT_ERR_SUCCESS and isinstance(sock, ssl.SSLSocket)
               and sock.pending()):
            rc = self.client.loop_read()
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._mark_closed(f"read: {mqtt.error_string(rc)}")

    def _write_queued(self) -> None:
        self._write_soon = False
        if self._fd is not None and not self._writing:
            self._write()

    def _write(self) -> None:
        self._in_write = True
        try:
            rc = self.client.loop_write()
        finally:
            self._in_write = False
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._mark_closed(f"write: {mqtt.error_string(rc)}")

    async def _misc_loop(self) -> None:
        while self.client.loop_misc() == MQTTErrorCode.MQTT_ERR_SUCCESS:
            await asyncio.sleep(1.0)
        self._mark_closed("keepalive: no answer from the broker")
