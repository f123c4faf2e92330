"""The MQTT contract between a box and HQ: topic map, message envelopes, schemas.

Defined once here, documented in ``docs/mqtt.md``, imported by both the box (``sync``) and
HQ (``hq``). MQTT 5, QoS 1 everywhere, nothing broker-specific: HQ may run mosquitto, EMQX,
HiveMQ or VerneMQ, and ingest scales out with a shared subscription.

Topics, under a configurable root (default ``se``), version segment ``v1``:

===========================================  ========  ========  ==========================
topic                                        from      retained  payload
===========================================  ========  ========  ==========================
``{root}/v1/s/{store}/d/{device}/events``    box       no        :class:`EventBatch`
``{root}/v1/s/{store}/d/{device}/status``    box       yes       :class:`Presence` (birth, will)
``{root}/v1/s/{store}/d/{device}/reported``  box       yes       :class:`Reported` config ack
``{root}/v1/s/{store}/config``               HQ        yes       signed :class:`Envelope`
``{root}/v1/s/{store}/data``                 HQ        no        signed :class:`Envelope`
``{root}/v1/s/{store}/d/{device}/hq``        HQ        no        signed :class:`Envelope`
===========================================  ========  ========  ==========================

HQ-to-box payloads are signed envelopes, defined in ``edge/hqdata.py`` (the domain applies
them) and re-exported here.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import json
import zlib
from dataclasses import dataclass, field
from typing import Any, Final

from edge import wire
from edge.events import SCHEMA_VERSION as EVENT_SCHEMA_VERSION

# The signed HQ-to-box data is defined in the domain (edge/hqdata.py); re-exported here so
# MQTT code finds the whole contract in one import.
from edge.hqdata import (
    MAX_SEQ,
    SIGN_DOMAIN,
    Confirmed,
    ContractError,
    DataKind,
    Envelope,
    HqData,
    OrderStatus,
    OrderUpdate,
    RemoteUse,
    ResendRequest,
    SignatureError,
    TooLargeError,
    UnsignedError,
    UntrustedKeyError,
    decode_orders,
    decode_remote_uses,
    encode_orders,
    encode_remote_uses,
    json_object,
    json_object_checked,
    open_envelope,
    seal,
)
from edge.keys import SigningKey, verify

__all__ = [
    "COMPRESS_LEVEL", "COMPRESS_OVER", "CONTENT_JSON", "CONTENT_JSON_ZLIB", "CONTRACT_VERSION",
    "DEFAULT_ROOT", "MAX_SEQ", "QOS", "SIGN_DOMAIN", "Confirmed", "ContractError", "DataKind",
    "Envelope", "EventBatch",
    "HqData", "OrderStatus", "OrderUpdate", "Presence", "PresenceState", "RemoteUse",
    "Reported", "ResendRequest", "SignatureError", "TooLargeError", "Topics", "UnsignedError",
    "UntrustedKeyError",
    "batch_head", "batch_json", "decode_orders", "decode_remote_uses", "encode_batch_text",
    "encode_orders", "encode_remote_uses", "finish_batch", "open_envelope", "seal",
]

CONTRACT_VERSION: Final = "v1"
DEFAULT_ROOT: Final = "se"
QOS: Final = 1
CONTENT_JSON: Final = "application/json"
CONTENT_JSON_ZLIB: Final = "application/json+zlib"  # MQTT 5 content-type of a compressed batch
COMPRESS_OVER: Final = 1024  # bytes; smaller batches are sent plain (zlib would not pay)
# zlib level 1: a third of level 6's CPU for ~10% more bytes on event JSON (bench/sync_drain.py);
# any level decodes the same way.
COMPRESS_LEVEL: Final = 1


# -- topics ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Topics:
    """The topic map for one root."""

    root: str = DEFAULT_ROOT

    def _base(self) -> str:
        return f"{self.root}/{CONTRACT_VERSION}/s"

    def events(self, store: str, device: str) -> str:
        """Where a device publishes its event batches."""
        return f"{self._base()}/{store}/d/{device}/events"

    def status(self, store: str, device: str) -> str:
        """A device's retained presence (birth message and last will)."""
        return f"{self._base()}/{store}/d/{device}/status"

    def reported(self, store: str, device: str) -> str:
        """A device's retained report of the config version it applied."""
        return f"{self._base()}/{store}/d/{device}/reported"

    def config(self, store: str) -> str:
        """HQ's retained, signed configuration for a store."""
        return f"{self._base()}/{store}/config"

    def data(self, store: str) -> str:
        """HQ's signed data for a store (orders, remote uses), QoS 1, not retained."""
        return f"{self._base()}/{store}/data"

    def hq(self, store: str, device: str) -> str:
        """HQ's signed delivery messages for one device: confirmations, resend requests."""
        return f"{self._base()}/{store}/d/{device}/hq"

    def all_events(self, share_group: str | None = None) -> str:
        """HQ ingest's subscription to every device's events (shared when grouped)."""
        topic = f"{self._base()}/+/d/+/events"
        return f"$share/{share_group}/{topic}" if share_group else topic

    def all_status(self) -> str:
        """Every device's presence."""
        return f"{self._base()}/+/d/+/status"

    def all_reported(self) -> str:
        """Every device's config reports."""
        return f"{self._base()}/+/d/+/reported"

    def parse_device_topic(self, topic: str) -> tuple[str, str, str]:
        """``(store, device, leaf)`` from a device topic.

        Raises:
            ContractError: not a device topic under this root.
        """
        parts = topic.split("/")
        if (len(parts) != 7 or parts[0] != self.root or parts[1] != CONTRACT_VERSION
                or parts[2] != "s" or parts[4] != "d"):
            raise ContractError(f"not a device topic under {self.root!r}: {topic!r}")
        return parts[3], parts[5], parts[6]


# -- box to HQ -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventBatch:
    """A batch of outbox events (each in ``edge.events.Event.to_wire`` form), in seq order."""

    store: str
    device: str
    events: list[dict[str, Any]]
    # Decoded from strict JSON (no NaN or infinity: edge.wire.loads_checked): HQ may then
    # write the events' bodies back with orjson.
    strict: bool = False

    def encode(self) -> tuple[bytes, str]:
        """``(payload, content_type)``; compressed when that pays."""
        return encode_batch_text(self.store, self.device, [
            json.dumps(e, ensure_ascii=False, separators=(",", ":")) for e in self.events])

    @classmethod
    def decode(cls, payload: bytes, content_type: str | None) -> EventBatch:
        """Parse a batch; HQ calls this on every message it ingests.

        Raises:
            TooLargeError: over ``edge.wire``'s batch limits, as sent or inflated.
            ContractError: bad compression, JSON, version or shape.
        """
        # Bounded (edge.wire): size before anything, zlib to a limit, JSON depth.
        obj, strict = json_object_checked(batch_json(payload, content_type), "event batch",
                                          wire.MAX_BATCH_JSON)
        if obj.get("v") != EVENT_SCHEMA_VERSION:
            raise ContractError(f"event batch version {obj.get('v')!r} is not "
                                f"{EVENT_SCHEMA_VERSION}")
        events = obj.get("events")
        if not isinstance(events, list) or not all(_is_event(e) for e in events):
            raise ContractError("event batch has no valid 'events' list")
        return cls(str(obj.get("store")), str(obj.get("device")), events, strict)


def batch_json(payload: bytes, content_type: str | None) -> bytes:
    """A batch's JSON bytes: its size checked, inflated (to a limit) if compressed.

    Raises:
        TooLargeError: over ``edge.wire``'s batch limits, as sent or inflated.
        ContractError: bad compression.
    """
    try:
        wire.check_size(payload, wire.MAX_BATCH_WIRE, "event batch")
        if content_type == CONTENT_JSON_ZLIB:
            return wire.inflate(payload, wire.MAX_BATCH_JSON, "event batch")
        return payload
    except wire.WireError as exc:
        raise (TooLargeError if exc.reason is wire.Bound.TOO_LARGE
               else ContractError)(str(exc)) from None


def batch_head(store: str, device: str) -> str:
    """A batch's JSON up to its first event: ``{"v":..,"store":..,"device":..,"events":[``."""
    return (f'{{"v":{EVENT_SCHEMA_VERSION},"store":{json.dumps(store, ensure_ascii=False)},'
            f'"device":{json.dumps(device, ensure_ascii=False)},"events":[')


def encode_batch_text(store: str, device: str, events: list[str],
                      compress: bool = True) -> tuple[bytes, str]:
    """A batch from events already in their wire JSON text; ``(payload, content_type)``.

    The same bytes :meth:`EventBatch.encode` makes. ``compress=False`` always sends plain
    JSON (a box on a fast LAN may prefer CPU to bytes).
    """
    return finish_batch((batch_head(store, device) + ",".join(events) + "]}").encode("utf-8"),
                        compress)


def finish_batch(raw: bytes, compress: bool = True) -> tuple[bytes, str]:
    """A whole batch's JSON bytes as sent: zlib when allowed and it pays; ``(payload, type)``."""
    if compress and len(raw) > COMPRESS_OVER:
        packed = zlib.compress(raw, COMPRESS_LEVEL)
        if len(packed) < len(raw) * 0.9:
            return packed, CONTENT_JSON_ZLIB
    return raw, CONTENT_JSON


def _is_event(e: object) -> bool:
    return (isinstance(e, dict) and isinstance(e.get("id"), str) and isinstance(e.get("seq"), int)
            and isinstance(e.get("type"), str) and isinstance(e.get("at"), (int, float))
            and isinstance(e.get("body"), dict))


class PresenceState(enum.StrEnum):
    """A device's presence."""

    ONLINE = "online"
    OFFLINE = "offline"


@dataclass(frozen=True, slots=True)
class Presence:
    """The retained status message: birth (online, with figures) or last will (offline)."""

    state: PresenceState
    software: str = ""
    config_version: int = 0
    backlog: int = 0
    clock_trusted: bool = False
    at: float = 0.0
    alarm: bool = False  # added after v1 shipped (optional on the wire): outbox alarm is on
    # Added with HQ's confirmations (optional on the wire, absent reads as 0): the seq of
    # the device's newest event (HQ asks for a tail it lacks), and how many events the
    # broker acknowledged that HQ has not confirmed yet.
    last_seq: int = 0
    unconfirmed: int = 0

    def encode(self) -> bytes:
        """JSON bytes."""
        return json.dumps({"v": 1, "state": self.state.value, "software": self.software,
                           "config_version": self.config_version, "backlog": self.backlog,
                           "clock_trusted": self.clock_trusted, "at": self.at,
                           "alarm": self.alarm, "last_seq": self.last_seq,
                           "unconfirmed": self.unconfirmed}).encode()

    @classmethod
    def decode(cls, payload: bytes) -> Presence:
        """Parse a status message.

        Raises:
            ContractError: not a presence message.
        """
        obj = json_object(payload, "presence")
        try:
            return cls(PresenceState(obj["state"]), str(obj.get("software", "")),
                       int(obj.get("config_version", 0)), int(obj.get("backlog", 0)),
                       bool(obj.get("clock_trusted", False)), float(obj.get("at", 0.0)),
                       bool(obj.get("alarm", False)), _seq(obj.get("last_seq", 0)),
                       int(obj.get("unconfirmed", 0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ContractError(f"bad presence message: {exc}") from None


@dataclass(frozen=True, slots=True)
class Reported:
    """The box's answer to a config: the version now applied, or why one was refused."""

    applied_version: int
    last_rejected_version: int | None = None
    last_error: str = ""
    at: float = 0.0
    # Added after v1 shipped (optional on the wire): the applied version of each DataKind.
    data_versions: dict[str, int] = field(default_factory=dict)
    # The broker held no session for the box at this connect (a new box, or one offline
    # past its session expiry): HQ sends it the orders and remote uses it may have missed.
    resync: bool = False
    # Added with HQ's confirmations (optional on the wire, absent reads as 0): the seq of
    # the device's newest event, as in Presence.
    last_seq: int = 0

    def encode(self) -> bytes:
        """JSON bytes."""
        return json.dumps({"v": 1, "applied_version": self.applied_version,
                           "last_rejected_version": self.last_rejected_version,
                           "last_error": self.last_error, "at": self.at,
                           "data_versions": self.data_versions, "resync": self.resync,
                           "last_seq": self.last_seq},
                          ensure_ascii=False).encode()

    @classmethod
    def decode(cls, payload: bytes) -> Reported:
        """Parse a report.

        Raises:
            ContractError: not a report.
        """
        obj = json_object(payload, "reported")
        try:
            rej = obj.get("last_rejected_version")
            versions = obj.get("data_versions") or {}
            resync = obj.get("resync", False)
            if not isinstance(resync, bool):
                raise TypeError(f"resync must be true or false, not {resync!r}")
            return cls(int(obj["applied_version"]), None if rej is None else int(rej),
                       str(obj.get("last_error", "")), float(obj.get("at", 0.0)),
                       {str(k): int(v) for k, v in dict(versions).items()}, resync,
                       _seq(obj.get("last_seq", 0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ContractError(f"bad reported message: {exc}") from None




# -- device signatures (box to HQ): every message a box publishes is signed ----------------
# HQ believes only what a registered box signed (docs/security.md, "Event authentication"):
# each event batch, presence and report carries the Ed25519 signature of the device key HQ
# registered for that device and store, over the exact bytes sent, in an MQTT 5 user
# property. One signature per message, never per event; the payload is not re-encoded, so
# a batch prepared while offline (``sync.outbox``) is signed as stored, at send time.

DEVICE_SIGN_DOMAIN: Final = b"store-edge/device-message/v1\n"
SIG_PROPERTY: Final = "se-sig"  # MQTT 5 user property: base64 Ed25519 signature
MAX_BATCH_EVENTS: Final = 1000  # events in one batch (the box's batch_size is at most this)
MAX_MESSAGE_BYTES: Final = 1 << 20  # a box message's payload as sent (compressed or not)
__all__ += ["DEVICE_SIGN_DOMAIN", "MAX_BATCH_EVENTS", "MAX_MESSAGE_BYTES", "SIG_PROPERTY",
            "device_digest", "device_signed_bytes", "sign_device_digest", "sign_device_message",
            "verify_device_message"]


def device_digest(topic: str, content_type: str | None, payload: bytes) -> bytes:
    """The SHA-256 a device signature covers (see :func:`device_signed_bytes`)."""
    h = hashlib.sha256()
    for part in (topic.encode("utf-8"), (content_type or "").encode("utf-8")):
        h.update(len(part).to_bytes(2, "big"))
        h.update(part)
    h.update(payload)
    return h.digest()


def device_signed_bytes(topic: str, content_type: str | None, payload: bytes) -> bytes:
    """What a device signature covers: the domain and a SHA-256 of topic, type and payload.

    The topic binds a message to its device's own topic (a signed report cannot be moved to
    another device or store); the content type, to how HQ will read the bytes. The payload
    is hashed once here rather than twice inside Ed25519 (``bench/sync_drain.py``: a third
    of the cost on a 36 KB plain batch); topic and type are length-prefixed, so no two
    messages hash the same input.
    """
    return DEVICE_SIGN_DOMAIN + device_digest(topic, content_type, payload)


def sign_device_message(key: SigningKey, topic: str, content_type: str | None,
                        payload: bytes) -> str:
    """The ``se-sig`` user property value for a message the box publishes on ``topic``."""
    return sign_device_digest(key, device_digest(topic, content_type, payload))


def sign_device_digest(key: SigningKey, digest: bytes) -> str:
    """The ``se-sig`` value for a message whose :func:`device_digest` is ``digest``."""
    return base64.b64encode(key.sign(DEVICE_SIGN_DOMAIN + digest)).decode("ascii")


def verify_device_message(public_key: bytes, topic: str, content_type: str | None,
                          payload: bytes, signature: str | None) -> bool:
    """Whether ``signature`` (the ``se-sig`` value) is ``public_key``'s over this message."""
    if not signature or len(signature) > 128:
        return False
    try:
        sig = base64.b64decode(signature, validate=True)
    except ValueError:
        return False
    return verify(public_key, device_signed_bytes(topic, content_type, payload), sig)


def _seq(value: object) -> int:
    """A ``last_seq`` field: a whole number from 0 (no events yet) to ``MAX_SEQ``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEQ:
        raise ValueError(f"last_seq must be a whole number from 0 to {MAX_SEQ}, not {value!r}")
    return value


# -- enrolment: edge provision <-> edge-hq enrol-serve (docs/mqtt.md, "Enrolment") ---------

ENROL_MAX_BYTES: Final = 4096


def enrol_topic(topics: Topics, store: str, device: str) -> str:
    """Where a new box sends its enrolment request (QoS 1, not retained)."""
    return f"{topics.root}/{CONTRACT_VERSION}/enrol/{store}/{device}"


def enrol_reply_topic(topics: Topics, store: str, device: str) -> str:
    """Where HQ answers that box (QoS 1, not retained)."""
    return enrol_topic(topics, store, device) + "/reply"


def all_enrol_requests(topics: Topics) -> str:
    """HQ's subscription to every enrolment request."""
    return f"{topics.root}/{CONTRACT_VERSION}/enrol/+/+"


@dataclass(frozen=True, slots=True)
class EnrolRequest:
    """A box asking HQ to register its device key with a one-time enrolment token.

    ``signature`` is the device key's over :meth:`message`: HQ registers only a key whose
    holder signed the request (proof of possession); the private key never leaves the box.
    """

    token: str
    store: str
    device: str
    public_key: str  # hex, 32 bytes
    signature: str = ""  # hex, 64 bytes

    def message(self) -> bytes:
        """The bytes the device key signs."""
        return (f"store-edge enrol v1\n{self.token}\n{self.store}\n{self.device}\n"
                f"{self.public_key}").encode()

    def encode(self) -> bytes:
        """The JSON payload."""
        return json.dumps({"token": self.token, "store": self.store, "device": self.device,
                           "public_key": self.public_key, "signature": self.signature},
                          separators=(",", ":")).encode()

    @classmethod
    def decode(cls, payload: bytes) -> EnrolRequest:
        """Parse a request.

        Raises:
            ContractError: not a request (too big, not JSON, a field missing or not text).
        """
        if len(payload) > ENROL_MAX_BYTES:
            raise ContractError(f"enrolment request over {ENROL_MAX_BYTES} bytes")
        obj = json_object(payload, "enrolment request")
        try:
            fields = [obj[k] for k in ("token", "store", "device", "public_key", "signature")]
        except KeyError as exc:
            raise ContractError(f"bad enrolment request: {exc} missing") from None
        if not all(isinstance(f, str) for f in fields):
            raise ContractError("bad enrolment request: every field is a string")
        return cls(*fields)


@dataclass(frozen=True, slots=True)
class EnrolReply:
    """HQ's answer: ``code`` ``ok``, or why not (``token_used``, ``token_expired``...).

    An ``ok`` reply from an HQ that manages the broker's accounts carries the box's broker
    credentials: ``username`` (the device id) and ``sealed_password``, the password sealed
    to the device key (``edge.keys.seal_to``, base64): the reply topic is readable by other
    claim clients of the store, so only the key that signed the request can open it.
    """

    code: str
    message: str = ""
    username: str = ""
    sealed_password: str = ""  # base64 of a libsodium sealed box; "" without credentials

    @property
    def ok(self) -> bool:
        """Whether the device is registered."""
        return self.code == "ok"

    def encode(self) -> bytes:
        """The JSON payload."""
        obj = {"code": self.code, "message": self.message}
        if self.username:
            obj |= {"username": self.username, "sealed_password": self.sealed_password}
        return json.dumps(obj, ensure_ascii=False).encode()

    @classmethod
    def decode(cls, payload: bytes) -> EnrolReply:
        """Parse a reply.

        Raises:
            ContractError: not a reply.
        """
        obj = json_object(payload, "enrolment reply")
        if not isinstance(obj.get("code"), str):
            raise ContractError("bad enrolment reply: no code")
        username, sealed = obj.get("username", ""), obj.get("sealed_password", "")
        if not isinstance(username, str) or not isinstance(sealed, str) or \
                bool(username) != bool(sealed):
            raise ContractError("bad enrolment reply: username and sealed_password go together")
        return cls(obj["code"], str(obj.get("message", "")), username, sealed)


def claim_username(token: str) -> str:
    """The broker username a new box enrols under: derived from its one-time token.

    The token is the claim password (AWS IoT's claim credential, one per bundle), so a
    bundle is all a box needs to reach the enrolment topics of its store and nothing else
    (``provisioning.brokerauth``); the username names the token without revealing it.
    """
    return "enrol-" + hashlib.sha256(token.encode()).hexdigest()[:16]
