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
===========================================  ========  ========  ==========================

HQ-to-box payloads are signed envelopes: ``{"key_id", "payload", "sig"}`` where ``payload``
is a JSON *string* (so the exact signed bytes travel, with no canonicalisation) and ``sig``
is the base64 Ed25519 signature of ``DOMAIN + payload``. The payload always carries
``kind``, ``store``, ``version`` (strictly increasing per store and kind) and ``issued_at``
(HQ's clock, which advances the box's trusted time).
"""

from __future__ import annotations

import base64
import enum
import json
import zlib
from dataclasses import dataclass, field
from typing import Any, Final

from edge import keys
from edge.events import SCHEMA_VERSION as EVENT_SCHEMA_VERSION
from edge.rules import PICKUP_NUMBER

CONTRACT_VERSION: Final = "v1"
DEFAULT_ROOT: Final = "se"
QOS: Final = 1
SIGN_DOMAIN: Final = b"store-edge/hq-envelope/v1\n"
CONTENT_JSON: Final = "application/json"
CONTENT_JSON_ZLIB: Final = "application/json+zlib"  # MQTT 5 content-type of a compressed batch
COMPRESS_OVER: Final = 1024  # bytes; smaller batches are sent plain (zlib would not pay)
# zlib level 1: a third of level 6's CPU for ~10% more bytes on event JSON (bench/sync_drain.py);
# any level decodes the same way.
COMPRESS_LEVEL: Final = 1


class ContractError(ValueError):
    """A message does not follow the contract; the message says how."""


class UnsignedError(ContractError):
    """An HQ-to-box message carries no signature."""


class UntrustedKeyError(ContractError):
    """Signed by a key the box does not trust for config (unknown, wrong purpose, expired)."""


class SignatureError(ContractError):
    """The signature does not verify: the payload was tampered with, or forged."""


class DataKind(enum.StrEnum):
    """What an HQ-to-box envelope carries."""

    CONFIG = "config"  # the store's whole configuration (retained on the config topic)
    ORDERS = "orders"  # pickup orders assigned to the store: new, changed, cancelled
    REMOTE_USES = "remote_uses"  # redemptions at other stores, fanned out by HQ


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

    def encode(self) -> tuple[bytes, str]:
        """``(payload, content_type)``; compressed when that pays."""
        return encode_batch_text(self.store, self.device, [
            json.dumps(e, ensure_ascii=False, separators=(",", ":")) for e in self.events])

    @classmethod
    def decode(cls, payload: bytes, content_type: str | None) -> EventBatch:
        """Parse a batch; HQ calls this on every message it ingests.

        Raises:
            ContractError: bad compression, JSON, version or shape.
        """
        if content_type == CONTENT_JSON_ZLIB:
            try:
                payload = zlib.decompress(payload, bufsize=len(payload) * 4)
            except zlib.error as exc:
                raise ContractError(f"bad zlib batch: {exc}") from None
        obj = _json_object(payload, "event batch")
        if obj.get("v") != EVENT_SCHEMA_VERSION:
            raise ContractError(f"event batch version {obj.get('v')!r} is not "
                                f"{EVENT_SCHEMA_VERSION}")
        events = obj.get("events")
        if not isinstance(events, list) or not all(_is_event(e) for e in events):
            raise ContractError("event batch has no valid 'events' list")
        return cls(str(obj.get("store")), str(obj.get("device")), events)


def encode_batch_text(store: str, device: str, events: list[str],
                      compress: bool = True) -> tuple[bytes, str]:
    """A batch from events already in their wire JSON text; ``(payload, content_type)``.

    The same bytes :meth:`EventBatch.encode` makes; the box's drain uses this form so an
    event's stored JSON body is never decoded just to be encoded again. ``compress=False``
    always sends plain JSON (a box on a fast LAN may prefer CPU to bytes).
    """
    raw = (f'{{"v":{EVENT_SCHEMA_VERSION},"store":{json.dumps(store, ensure_ascii=False)},'
           f'"device":{json.dumps(device, ensure_ascii=False)},"events":['
           + ",".join(events) + "]}").encode("utf-8")
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

    def encode(self) -> bytes:
        """JSON bytes."""
        return json.dumps({"v": 1, "state": self.state.value, "software": self.software,
                           "config_version": self.config_version, "backlog": self.backlog,
                           "clock_trusted": self.clock_trusted, "at": self.at,
                           "alarm": self.alarm}).encode()

    @classmethod
    def decode(cls, payload: bytes) -> Presence:
        """Parse a status message.

        Raises:
            ContractError: not a presence message.
        """
        obj = _json_object(payload, "presence")
        try:
            return cls(PresenceState(obj["state"]), str(obj.get("software", "")),
                       int(obj.get("config_version", 0)), int(obj.get("backlog", 0)),
                       bool(obj.get("clock_trusted", False)), float(obj.get("at", 0.0)),
                       bool(obj.get("alarm", False)))
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

    def encode(self) -> bytes:
        """JSON bytes."""
        return json.dumps({"v": 1, "applied_version": self.applied_version,
                           "last_rejected_version": self.last_rejected_version,
                           "last_error": self.last_error, "at": self.at,
                           "data_versions": self.data_versions},
                          ensure_ascii=False).encode()

    @classmethod
    def decode(cls, payload: bytes) -> Reported:
        """Parse a report.

        Raises:
            ContractError: not a report.
        """
        obj = _json_object(payload, "reported")
        try:
            rej = obj.get("last_rejected_version")
            versions = obj.get("data_versions") or {}
            return cls(int(obj["applied_version"]), None if rej is None else int(rej),
                       str(obj.get("last_error", "")), float(obj.get("at", 0.0)),
                       {str(k): int(v) for k, v in dict(versions).items()})
        except (KeyError, TypeError, ValueError) as exc:
            raise ContractError(f"bad reported message: {exc}") from None


# -- HQ to box -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Envelope:
    """A signed HQ-to-box message."""

    key_id: str
    payload: str  # JSON text: exactly the signed bytes (after SIGN_DOMAIN)
    sig: bytes

    def encode(self) -> bytes:
        """JSON bytes for the wire."""
        return json.dumps({"key_id": self.key_id, "payload": self.payload,
                           "sig": base64.b64encode(self.sig).decode()}).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Envelope:
        """Parse (not verify) an envelope.

        Raises:
            ContractError: not an envelope.
        """
        obj = _json_object(raw, "envelope")
        if not obj.get("sig"):
            raise UnsignedError("envelope has no signature ('sig')")
        try:
            sig = base64.b64decode(obj["sig"], validate=True)
            if not isinstance(obj["payload"], str) or not isinstance(obj["key_id"], str):
                raise TypeError("key_id and payload must be strings")
            return cls(obj["key_id"], obj["payload"], sig)
        except (KeyError, TypeError, ValueError) as exc:
            raise ContractError(f"unsigned or malformed envelope: {exc}") from None

    def signed_bytes(self) -> bytes:
        """What the signature covers."""
        return SIGN_DOMAIN + self.payload.encode("utf-8")


@dataclass(frozen=True, slots=True)
class HqData:
    """A verified envelope's payload."""

    kind: DataKind
    store: str
    version: int
    issued_at: float
    body: dict[str, Any] = field(default_factory=dict)


def seal(key: keys.SigningKey, data: HqData) -> Envelope:
    """Sign ``data`` as an envelope (HQ side)."""
    payload = json.dumps({"kind": data.kind.value, "store": data.store, "version": data.version,
                          "issued_at": data.issued_at, "body": data.body},
                         ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    env = Envelope(key.key_id, payload, b"")
    return Envelope(key.key_id, payload, key.sign(env.signed_bytes()))


def open_envelope(env: Envelope, trusted: list[keys.TrustedKey], now: float) -> HqData:
    """Verify an envelope against the box's trusted config keys and parse its payload.

    Raises:
        ContractError: unknown or unusable key, bad signature, or malformed payload.
    """
    key = next((k for k in trusted if k.key_id == env.key_id), None)
    if key is None:
        raise UntrustedKeyError(f"signed by unknown key {env.key_id!r}")
    if not key.usable_for(keys.Purpose.CONFIG, now):
        raise UntrustedKeyError(f"key {env.key_id!r} may not sign config or has expired")
    if not keys.verify(key.public_key, env.signed_bytes(), env.sig):
        raise SignatureError("signature does not verify: tampered or forged")
    obj = _json_object(env.payload.encode("utf-8"), "envelope payload")
    try:
        return HqData(DataKind(obj["kind"]), str(obj["store"]), int(obj["version"]),
                      float(obj["issued_at"]), dict(obj.get("body") or {}))
    except (KeyError, TypeError, ValueError) as exc:
        raise ContractError(f"bad envelope payload: {exc}") from None


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ContractError(f"{what} is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ContractError(f"{what} must be a JSON object")
    return obj


# -- data down: bodies of DataKind.ORDERS and DataKind.REMOTE_USES envelopes ----------------
# Added by the HQ side (additive); documented in docs/mqtt.md, "Data down".


class OrderStatus(enum.StrEnum):
    """An order's state as HQ sends it (new and changed orders are both ``waiting``)."""

    WAITING = "waiting"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """One pickup order in an ``orders`` envelope: ``{"orders": [OrderUpdate, ...]}``.

    The box upserts it (``edge.orders.upsert_order``); a collected order stays collected.
    """

    order_id: str
    number: str
    window_start: int
    window_end: int
    items: str = ""
    customer: str = ""
    status: OrderStatus = OrderStatus.WAITING

    def to_dict(self) -> dict[str, Any]:
        """The JSON object in an envelope body."""
        return {"order_id": self.order_id, "number": self.number,
                "window_start": self.window_start, "window_end": self.window_end,
                "items": self.items, "customer": self.customer, "status": self.status.value}

    @classmethod
    def from_dict(cls, obj: object) -> OrderUpdate:
        """Parse one order.

        Raises:
            ContractError: missing or mistyped field, unknown status, window ends before start.
        """
        if not isinstance(obj, dict):
            raise ContractError("an order must be a JSON object")
        try:
            order = cls(str(obj["order_id"]), str(obj["number"]), int(obj["window_start"]),
                        int(obj["window_end"]), str(obj.get("items", "")),
                        str(obj.get("customer", "")),
                        OrderStatus(obj.get("status", OrderStatus.WAITING.value)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ContractError(f"bad order {obj.get('order_id')!r}: {exc!r}") from None
        if not order.order_id or order.window_end < order.window_start:
            raise ContractError(f"bad order {order.order_id!r}: empty id or window ends "
                                "before it starts")
        if not PICKUP_NUMBER.fullmatch(order.number):
            raise ContractError(f"bad order {order.order_id!r}: number {order.number!r} "
                                "must be 3-8 digits")
        return order


def encode_orders(orders: list[OrderUpdate]) -> dict[str, Any]:
    """The body of an ``orders`` envelope."""
    return {"orders": [o.to_dict() for o in orders]}


def decode_orders(body: dict[str, Any]) -> list[OrderUpdate]:
    """The orders in an ``orders`` envelope body.

    Raises:
        ContractError: no ``orders`` list, or a bad order in it.
    """
    items = body.get("orders")
    if not isinstance(items, list):
        raise ContractError("orders body has no 'orders' list")
    orders = [OrderUpdate.from_dict(o) for o in items]
    ids = [o.order_id for o in orders]
    if len(set(ids)) != len(ids):
        raise ContractError("orders body names an order_id twice")
    return orders


@dataclass(frozen=True, slots=True)
class RemoteUse:
    """How many times a code is used at another store, in a ``remote_uses`` envelope.

    Wire form ``{"code_id", "store", "uses", "last_at"}`` (the box's
    ``edge.storeconfig.parse_remote_uses`` refuses other fields). ``uses`` is the *absolute*
    net count at ``store`` (accepted minus voided), not an increment: applying the same
    entry twice changes nothing, and a void elsewhere arrives as a lower count. ``last_at``
    is when the use or void that caused the entry happened (the deciding box's clock). The
    box upserts it into its ``remote_use`` table keyed by ``(code_id, store)``.
    See ``docs/mqtt.md``, "Data down".
    """

    code_id: str
    store: str
    uses: int
    last_at: float

    def to_dict(self) -> dict[str, Any]:
        """The JSON object in an envelope body."""
        return {"code_id": self.code_id, "store": self.store, "uses": self.uses,
                "last_at": self.last_at}

    @classmethod
    def from_dict(cls, obj: object) -> RemoteUse:
        """Parse one entry.

        Raises:
            ContractError: missing or mistyped field, or a negative count.
        """
        if not isinstance(obj, dict):
            raise ContractError("a remote use must be a JSON object")
        try:
            use = cls(str(obj["code_id"]), str(obj["store"]), int(obj["uses"]),
                      float(obj["last_at"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ContractError(f"bad remote use: {exc!r}") from None
        if use.uses < 0 or not use.code_id or not use.store:
            raise ContractError(f"bad remote use of {use.code_id!r} at {use.store!r}")
        return use


def encode_remote_uses(uses: list[RemoteUse]) -> dict[str, Any]:
    """The body of a ``remote_uses`` envelope."""
    return {"uses": [u.to_dict() for u in uses]}


def decode_remote_uses(body: dict[str, Any]) -> list[RemoteUse]:
    """The entries in a ``remote_uses`` envelope body.

    Raises:
        ContractError: no ``uses`` list, or a bad entry in it.
    """
    items = body.get("uses")
    if not isinstance(items, list):
        raise ContractError("remote_uses body has no 'uses' list")
    return [RemoteUse.from_dict(u) for u in items]
