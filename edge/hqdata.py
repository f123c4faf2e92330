"""Signed data from HQ to a box: envelopes, what they carry, and their body schemas.

Defined once here, in the domain, because the box's rules and config apply them and HQ
builds them; transport-neutral (``sync`` carries them over MQTT, see ``docs/mqtt.md``).

An envelope is ``{"key_id", "payload", "sig"}`` where ``payload`` is a JSON *string* (so
the exact signed bytes travel, with no canonicalisation) and ``sig`` is the base64 Ed25519
signature of ``SIGN_DOMAIN + payload``. The payload always carries ``kind``, ``store``,
``version`` (strictly increasing per store and kind) and ``issued_at`` (HQ's clock, which
advances the box's trusted time).
"""

from __future__ import annotations

import base64
import enum
import json
from dataclasses import dataclass, field
from typing import Any, Final

from edge import keys, wire
from edge.rules import PICKUP_NUMBER

SIGN_DOMAIN: Final = b"store-edge/hq-envelope/v1\n"


class ContractError(ValueError):
    """A message does not follow the contract; the message says how."""


class TooLargeError(ContractError):
    """A message is over its byte limit (before or after inflating): refused unread."""


class UnsignedError(ContractError):
    """An HQ-to-box message carries no signature."""


class UntrustedKeyError(ContractError):
    """Signed by a key the box does not trust for this kind (unknown, wrong role, expired)."""


class SignatureError(ContractError):
    """The signature does not verify: the payload was tampered with, or forged."""


class DataKind(enum.StrEnum):
    """What an HQ-to-box envelope carries."""

    CONFIG = "config"  # the store's whole configuration (retained on the config topic)
    ORDERS = "orders"  # pickup orders assigned to the store: new, changed, cancelled
    REMOTE_USES = "remote_uses"  # redemptions at other stores, fanned out by HQ
    WORKSHOPS = "workshops"  # the store's workshop sessions: times, counts, cancelled tickets
    TRUST = "trust"  # the set of trusted keys, signed by the trust root (inside a config)
    # Delivery, per device (its ``hq`` topic): what HQ committed, and what it lacks.
    CONFIRMED = "confirmed"  # HQ holds every event of the device up to a seq
    RESEND = "resend"  # HQ lacks a seq range of the device: send it again


def required_purpose(kind: DataKind) -> keys.Purpose:
    """The key role that may sign ``kind``.

    Config needs CONFIG, a trust list TRUST, and every other kind (remote uses, orders,
    and any kind added later) DATA.
    """
    if kind is DataKind.CONFIG:
        return keys.Purpose.CONFIG
    if kind is DataKind.TRUST:
        return keys.Purpose.TRUST
    return keys.Purpose.DATA


def may_sign(key: keys.TrustedKey, kind: DataKind, trusted: list[keys.TrustedKey],
             now: float) -> bool:
    """Whether ``key`` may sign ``kind`` under the trusted set ``trusted`` at ``now``.

    A set without any trust-root key is a box provisioned before key roles (migration,
    ``docs/security.md``): there a config key may also sign data and trust lists, as it
    could then. The first trust list a box applies must name a trust root, and from then
    on each role signs only its own kinds.
    """
    if key.usable_for(required_purpose(kind), now):
        return True
    legacy = not any(keys.Purpose.TRUST in k.purposes for k in trusted)
    return legacy and key.usable_for(keys.Purpose.CONFIG, now)


@dataclass(frozen=True, slots=True)
class Envelope:
    """A signed HQ-to-box message."""

    key_id: str
    payload: str  # JSON text: exactly the signed bytes (after SIGN_DOMAIN)
    sig: bytes

    def encode(self) -> bytes:
        """JSON bytes for the wire."""
        return json.dumps(self.to_object()).encode()

    def to_object(self) -> dict[str, str]:
        """The JSON object form (also how a trust list travels inside a config body)."""
        return {"key_id": self.key_id, "payload": self.payload,
                "sig": base64.b64encode(self.sig).decode()}

    @classmethod
    def decode(cls, raw: bytes) -> Envelope:
        """Parse (not verify) an envelope.

        Raises:
            ContractError: not an envelope.
        """
        return cls.from_object(json_object(raw, "envelope"))

    @classmethod
    def from_object(cls, obj: object) -> Envelope:
        """Parse (not verify) an envelope's JSON object form.

        Raises:
            ContractError: not an envelope.
        """
        if not isinstance(obj, dict):
            raise ContractError("an envelope must be a JSON object")
        if not obj.get("sig"):
            raise UnsignedError("envelope has no signature ('sig')")
        try:
            sig = base64.b64decode(obj["sig"], validate=True)
            if not isinstance(obj["payload"], str) or not isinstance(obj["key_id"], str):
                raise TypeError("key_id and payload must be strings")
            # JSON may escape a lone surrogate (\udddd): such a payload has no UTF-8 bytes
            # to verify, so it is malformed rather than an exception later.
            obj["payload"].encode("utf-8")
            return cls(obj["key_id"], obj["payload"], sig)
        except (KeyError, TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
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


def open_envelope(env: Envelope, trusted: list[keys.TrustedKey], now: float,
                  candidates: list[keys.TrustedKey] | None = None) -> HqData:
    """Verify an envelope against the box's trusted keys and parse its payload.

    The signing key must hold the role its kind needs (:func:`may_sign`).
    ``candidates``: the keys of a trust list being applied with this envelope (a config
    carrying a new trusted set may already be signed by a key of that set); they are
    tried after ``trusted``, and judged by their own set's roles.

    Raises:
        UntrustedKeyError: an unknown key, or one without the role or expired.
        SignatureError: the signature does not verify.
        ContractError: malformed payload.
    """
    sets = [trusted] + ([candidates] if candidates else [])
    found = [(k, ks) for ks in sets for k in ks if k.key_id == env.key_id]
    if not found:
        raise UntrustedKeyError(f"signed by unknown key {env.key_id!r}")
    verified = [(k, ks) for k, ks in found
                if keys.verify(k.public_key, env.signed_bytes(), env.sig)]
    if not verified:
        raise SignatureError("signature does not verify: tampered or forged")
    obj = json_object(env.payload.encode("utf-8"), "envelope payload")
    try:
        data = HqData(DataKind(obj["kind"]), str(obj["store"]), int(obj["version"]),
                      float(obj["issued_at"]), dict(obj.get("body") or {}))
    except (KeyError, TypeError, ValueError) as exc:
        raise ContractError(f"bad envelope payload: {exc}") from None
    if not any(may_sign(k, data.kind, ks, now) for k, ks in verified):
        raise UntrustedKeyError(f"key {env.key_id!r} may not sign {data.kind.value} (it needs "
                                f"a {required_purpose(data.kind).value} key) or has expired")
    return data


def json_object(raw: bytes, what: str, limit: int = wire.MAX_HQ_MESSAGE) -> dict[str, Any]:
    """Parse bytes that must hold one JSON object, within ``edge.wire``'s bounds.

    Raises:
        TooLargeError: over ``limit`` bytes (nothing was parsed).
        ContractError: not JSON, nested too deep, or not an object; the message names
            ``what``.
    """
    return json_object_checked(raw, what, limit)[0]


def json_object_checked(raw: bytes, what: str, limit: int = wire.MAX_HQ_MESSAGE
                        ) -> tuple[dict[str, Any], bool]:
    """:func:`json_object`, and whether it was strict JSON (``edge.wire.loads_checked``).

    Raises:
        TooLargeError: over ``limit`` bytes (nothing was parsed).
        ContractError: not JSON, nested too deep, or not an object.
    """
    try:
        obj, strict = wire.loads_checked(raw, what, limit)
    except wire.WireError as exc:
        if exc.reason is wire.Bound.TOO_LARGE:
            raise TooLargeError(str(exc)) from None
        raise ContractError(str(exc)) from None
    if not isinstance(obj, dict):
        raise ContractError(f"{what} must be a JSON object")
    return obj, strict


# -- data down: bodies of DataKind.ORDERS and DataKind.REMOTE_USES envelopes ----------------
# Added by the HQ side (additive); documented in docs/mqtt.md, "Data down".


class OrderStatus(enum.StrEnum):
    """An order's state as HQ sends it (new and changed orders are both ``waiting``).

    ``collected`` comes in a catch-up: HQ saw the order collected at this store (a box
    replaced or reset would otherwise hand it out again).
    """

    WAITING = "waiting"
    CANCELLED = "cancelled"
    COLLECTED = "collected"


_ORDER_FIELDS: Final = frozenset({"order_id", "number", "window_start", "window_end", "items",
                                  "customer", "status"})
_USE_FIELDS: Final = frozenset({"code_id", "store", "uses", "last_at", "device"})
_MAX_TIME: Final = 2**32


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
    def from_dict(cls, obj: object, where: str = "order") -> OrderUpdate:
        """Parse one order strictly; errors name the field (``orders[3].number``).

        Raises:
            ContractError: unknown, missing or mistyped field, unknown status, a number that
                is not 3-8 digits, or a window that ends before it starts.
        """
        item = _fields(obj, where, _ORDER_FIELDS)
        number = _text(item.get("number"), f"{where}.number")
        if not PICKUP_NUMBER.fullmatch(number):
            raise ContractError(f"{where}.number {number!r} must be 3-8 digits")
        try:
            status = OrderStatus(item.get("status", OrderStatus.WAITING.value))
        except ValueError:
            raise ContractError(f"{where}.status {item.get('status')!r} is not one of "
                                f"{[s.value for s in OrderStatus]}") from None
        start = _int(item.get("window_start"), f"{where}.window_start", 0, _MAX_TIME)
        end = _int(item.get("window_end"), f"{where}.window_end", 0, _MAX_TIME)
        if end < start:
            raise ContractError(f"{where}: pickup window ends before it starts")
        return cls(_text(item.get("order_id"), f"{where}.order_id", required=True), number,
                   start, end,
                   _text(item.get("items", ""), f"{where}.items"),
                   _text(item.get("customer", ""), f"{where}.customer"), status)


def encode_orders(orders: list[OrderUpdate]) -> dict[str, Any]:
    """The body of an ``orders`` envelope."""
    return {"orders": [o.to_dict() for o in orders]}


def decode_orders(body: object) -> list[OrderUpdate]:
    """The orders in an ``orders`` envelope body.

    Raises:
        ContractError: not ``{"orders": [...]}``, a bad order, or an order_id twice.
    """
    items = _fields(body, "orders body", frozenset({"orders"})).get("orders")
    if not isinstance(items, list):
        raise ContractError("orders body has no 'orders' list")
    orders = []
    for i, obj in enumerate(items):
        try:
            orders.append(OrderUpdate.from_dict(obj, f"orders[{i}]"))
        except ContractError as exc:
            oid = obj.get("order_id") if isinstance(obj, dict) else None
            if isinstance(oid, str) and oid:  # HQ operators find orders by id, not index
                raise ContractError(f"bad order {oid!r}: {exc}") from None
            raise
    ids = [o.order_id for o in orders]
    if len(set(ids)) != len(ids):
        raise ContractError("orders body names an order_id twice")
    return orders


@dataclass(frozen=True, slots=True)
class RemoteUse:
    """How many times a code is used at another store, in a ``remote_uses`` envelope.

    ``uses`` is the *absolute* net count at ``store`` (accepted minus voided), not an
    increment: applying the same entry twice changes nothing, and a void elsewhere arrives
    as a lower count. ``last_at`` is when the use or void that caused the entry happened
    (the deciding box's clock). The box upserts it into its ``remote_use`` table keyed by
    ``(code_id, store)``. See ``docs/mqtt.md``, "Data down".
    """

    code_id: str
    store: str
    uses: int
    last_at: float
    # Set when the count is one device's of the receiving store itself (HQ counts uses per
    # device): the store's other boxes count it, the device named skips it. Absent from
    # the wire when empty, so a store-level line reads as it always did.
    device: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON object in an envelope body."""
        out: dict[str, Any] = {"code_id": self.code_id, "store": self.store,
                               "uses": self.uses, "last_at": self.last_at}
        if self.device:
            out["device"] = self.device
        return out

    @property
    def place(self) -> str:
        """Where the uses were: the store, or ``store/device`` for a device's own count."""
        return f"{self.store}/{self.device}" if self.device else self.store

    @classmethod
    def from_dict(cls, obj: object, where: str = "use") -> RemoteUse:
        """Parse one entry strictly; errors name the field.

        Raises:
            ContractError: unknown, missing or mistyped field, or a negative count.
        """
        item = _fields(obj, where, _USE_FIELDS)
        last_at = item.get("last_at")
        if isinstance(last_at, bool) or not isinstance(last_at, (int, float)) or last_at < 0:
            raise ContractError(f"{where}.last_at must be a Unix time, not {last_at!r}")
        return cls(_text(item.get("code_id"), f"{where}.code_id", required=True),
                   _text(item.get("store"), f"{where}.store", required=True),
                   _int(item.get("uses"), f"{where}.uses", 0, 1_000_000), float(last_at),
                   _text(item.get("device", ""), f"{where}.device"))


def encode_remote_uses(uses: list[RemoteUse]) -> dict[str, Any]:
    """The body of a ``remote_uses`` envelope."""
    return {"uses": [u.to_dict() for u in uses]}


def decode_remote_uses(body: object) -> list[RemoteUse]:
    """The entries in a ``remote_uses`` envelope body.

    Raises:
        ContractError: not ``{"uses": [...]}``, or a bad entry in it.
    """
    items = _fields(body, "remote uses body", frozenset({"uses"})).get("uses")
    if not isinstance(items, list):
        raise ContractError("remote_uses body has no 'uses' list")
    return [RemoteUse.from_dict(u, f"uses[{i}]") for i, u in enumerate(items)]


def _fields(obj: object, where: str, known: frozenset[str]) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise ContractError(f"{where} must be a JSON object")
    unknown = sorted(set(obj) - known)
    if unknown:
        raise ContractError(f"{where}: unknown field(s) {unknown}")
    return obj


def _text(value: object, where: str, required: bool = False) -> str:
    if not isinstance(value, str) or (required and not value):
        raise ContractError(f"{where} must be {'a non-empty' if required else 'a'} string, "
                            f"not {value!r}")
    return value


def _int(value: object, where: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ContractError(f"{where} must be a whole number from {lo} to {hi}, not {value!r}")
    return value


# -- data down: body of DataKind.WORKSHOPS envelopes ---------------------------------------
# Added with workshops (additive); documented in docs/mqtt.md, "Workshops body".

MAX_REVOKED_TICKETS: Final = 2000  # cancelled tickets one session line may name
_SESSION_FIELDS: Final = frozenset({"session_id", "title", "starts", "ends", "capacity",
                                    "party_max", "signed_up", "tickets", "early_s", "late_s",
                                    "status", "revoked"})
MAX_MARGIN_S: Final = 86400


class SessionStatus(enum.StrEnum):
    """A workshop session's state as HQ sends it."""

    OPEN = "open"
    CANCELLED = "cancelled"  # HQ called it off: every ticket for it is refused


@dataclass(frozen=True, slots=True)
class WorkshopSession:
    """One session in a ``workshops`` envelope: ``{"sessions": [WorkshopSession, ...]}``.

    Each line is HQ's **whole current state** of the session (like a remote use's count),
    so applying it twice changes nothing: ``signed_up`` seats and ``tickets`` held now,
    the check-in margins ``early_s``/``late_s`` around ``starts``..``ends``, and every
    ticket of the session cancelled so far (``revoked``): the box refuses those.
    """

    session_id: str
    title: str
    starts: int
    ends: int
    capacity: int
    party_max: int
    signed_up: int = 0
    tickets: int = 0
    early_s: int = 1800
    late_s: int = 900
    status: SessionStatus = SessionStatus.OPEN
    revoked: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The JSON object in an envelope body."""
        return {"session_id": self.session_id, "title": self.title, "starts": self.starts,
                "ends": self.ends, "capacity": self.capacity, "party_max": self.party_max,
                "signed_up": self.signed_up, "tickets": self.tickets, "early_s": self.early_s,
                "late_s": self.late_s, "status": self.status.value,
                "revoked": list(self.revoked)}

    @classmethod
    def from_dict(cls, obj: object, where: str = "session") -> WorkshopSession:
        """Parse one session line strictly; errors name the field (``sessions[2].ends``).

        Raises:
            ContractError: unknown, missing or mistyped field, an unknown status, a session
                that ends before it starts, or more revoked tickets than the bound.
        """
        item = _fields(obj, where, _SESSION_FIELDS)
        starts = _int(item.get("starts"), f"{where}.starts", 0, _MAX_TIME)
        ends = _int(item.get("ends"), f"{where}.ends", 0, _MAX_TIME)
        if ends < starts:
            raise ContractError(f"{where}: the session ends before it starts")
        try:
            status = SessionStatus(item.get("status", SessionStatus.OPEN.value))
        except ValueError:
            raise ContractError(f"{where}.status {item.get('status')!r} is not one of "
                                f"{[s.value for s in SessionStatus]}") from None
        revoked = item.get("revoked", [])
        if not isinstance(revoked, list) or len(revoked) > MAX_REVOKED_TICKETS:
            raise ContractError(f"{where}.revoked must be a list of at most "
                                f"{MAX_REVOKED_TICKETS} ticket ids")
        return cls(_text(item.get("session_id"), f"{where}.session_id", required=True),
                   _text(item.get("title", ""), f"{where}.title"), starts, ends,
                   _int(item.get("capacity"), f"{where}.capacity", 1, 100_000),
                   _int(item.get("party_max"), f"{where}.party_max", 1, 100),
                   _int(item.get("signed_up", 0), f"{where}.signed_up", 0, 100_000),
                   _int(item.get("tickets", 0), f"{where}.tickets", 0, 100_000),
                   _int(item.get("early_s", 1800), f"{where}.early_s", 0, MAX_MARGIN_S),
                   _int(item.get("late_s", 900), f"{where}.late_s", 0, MAX_MARGIN_S), status,
                   tuple(_text(t, f"{where}.revoked[{i}]", required=True)
                         for i, t in enumerate(revoked)))


def encode_workshops(sessions: list[WorkshopSession]) -> dict[str, Any]:
    """The body of a ``workshops`` envelope."""
    return {"sessions": [s.to_dict() for s in sessions]}


def decode_workshops(body: object) -> list[WorkshopSession]:
    """The sessions in a ``workshops`` envelope body.

    Raises:
        ContractError: not ``{"sessions": [...]}``, a bad session, or a session_id twice.
    """
    items = _fields(body, "workshops body", frozenset({"sessions"})).get("sessions")
    if not isinstance(items, list):
        raise ContractError("workshops body has no 'sessions' list")
    sessions = [WorkshopSession.from_dict(o, f"sessions[{i}]") for i, o in enumerate(items)]
    ids = [s.session_id for s in sessions]
    if len(set(ids)) != len(ids):
        raise ContractError("workshops body names a session_id twice")
    return sessions


# -- delivery: bodies of DataKind.CONFIRMED and DataKind.RESEND envelopes -----------------
# On the device's own topic (``Topics.hq``); see docs/mqtt.md, "Delivery".

MAX_SEQ: Final = 2**62  # a device's seqs run from 1 to this (HQ refuses others as bad_seq)


@dataclass(frozen=True, slots=True)
class Confirmed:
    """HQ holds every event of ``device`` from seq 1 up to ``seq`` (committed).

    Body of a ``confirmed`` envelope: ``{"device": "BJ001-T1", "seq": 41}``. The box may
    prune what is confirmed, and nothing else.
    """

    device: str
    seq: int

    def to_dict(self) -> dict[str, Any]:
        """The envelope body."""
        return {"device": self.device, "seq": self.seq}

    @classmethod
    def from_dict(cls, body: object) -> Confirmed:
        """Parse a ``confirmed`` body strictly.

        Raises:
            ContractError: unknown, missing or mistyped field.
        """
        item = _fields(body, "confirmed body", frozenset({"device", "seq"}))
        return cls(_text(item.get("device"), "confirmed.device", required=True),
                   _int(item.get("seq"), "confirmed.seq", 0, MAX_SEQ))


@dataclass(frozen=True, slots=True)
class ResendRequest:
    """HQ lacks events ``first``..``last`` (inclusive) of ``device``: send them again.

    Body of a ``resend`` envelope: ``{"device": "BJ001-T1", "first": 3, "last": 9}``. The
    box sends again whatever of that range it still holds, and takes back any confirmation
    of it (an HQ database restored from a backup asks for what it no longer has).
    """

    device: str
    first: int
    last: int

    def to_dict(self) -> dict[str, Any]:
        """The envelope body."""
        return {"device": self.device, "first": self.first, "last": self.last}

    @classmethod
    def from_dict(cls, body: object) -> ResendRequest:
        """Parse a ``resend`` body strictly.

        Raises:
            ContractError: unknown, missing or mistyped field, or ``last`` before ``first``.
        """
        item = _fields(body, "resend body", frozenset({"device", "first", "last"}))
        first = _int(item.get("first"), "resend.first", 1, MAX_SEQ)
        last = _int(item.get("last"), "resend.last", 1, MAX_SEQ)
        if last < first:
            raise ContractError(f"resend range {first}..{last} ends before it starts")
        return cls(_text(item.get("device"), "resend.device", required=True), first, last)
