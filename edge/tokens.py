"""The one definition of the three code layouts: coupon, pickup and packaging card.

A code is ``PREFIX + base41(payload || signature)``. The prefix is ``SE`` + a kind
letter + a layout version digit, all QR-alphanumeric, so a whole coupon or pickup code
is encoded in alphanumeric mode. The signature is Ed25519 over ``prefix || payload``
(the prefix binds the kind, so a coupon signature can never pass as a pickup one).

Payload fields, in order (``str`` = 1-byte length + UTF-8, ``uv`` = unsigned LEB128
varint, ``u32`` = 4-byte big-endian seconds since the Unix epoch):

* coupon ``SEC1``: key_id str, coupon_id str, campaign_id str, channel u8,
  benefit kind u8, benefit value uv, benefit item str, valid_from u32,
  valid_until u32, max_uses uv, store count u8, stores str* (0 stores = all stores)
* pickup ``SEP1``: key_id str, order_id str, store_id str, number str,
  window_start u32, window_end u32, items str, customer str
* ticket ``SEW1`` (a workshop seat): key_id str, ticket_id str, session_id str,
  store_id str, party uv, starts u32, ends u32, holder str
* card ``SEK1``: flags u8 (bit 0: device id is written without its store-id prefix,
  bit 1: a receipt reference follows), store_id id6, device_id id6, serial uv,
  issued_at u32, [receipt_ref id6]. ``id6`` = 1-byte length + 6 bits a character over
  ``0-9A-Za-z_-``: a card URL must fit QR version 6-M (154 alphanumeric characters) of
  which the Ed25519 signature alone takes 96, so card fields are packed tight. Signed by
  the device key; the device id names the key.

Parsing is strict and total: :func:`parse` returns a token or a :class:`FormatError`
for any input at all, and never raises.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from edge import base41

SIG_LEN: Final = 64
MAX_CODE_CHARS: Final = 400  # QR version 10-M holds 311 alphanumeric chars; margin for URLs
MAX_FIELD_BYTES: Final = 64


class Kind(enum.StrEnum):
    """What a code is."""

    COUPON = "coupon"
    PICKUP = "pickup"
    CARD = "card"
    TICKET = "ticket"  # a workshop ticket (docs/tokens.md says why not a coupon variant)


PREFIXES: Final[dict[Kind, str]] = {Kind.COUPON: "SEC1", Kind.PICKUP: "SEP1", Kind.CARD: "SEK1",
                                    Kind.TICKET: "SEW1"}
_KIND_BY_PREFIX: Final = {p: k for k, p in PREFIXES.items()}
PREFIX_LEN: Final = 4


class Channel(enum.IntEnum):
    """Where a coupon was handed out."""

    LIVESTREAM = 1
    COMMUNITY = 2
    WELCOME = 3


class BenefitKind(enum.IntEnum):
    """What a coupon gives."""

    FREE_ITEM = 1  # item names the thing; value is the count
    PERCENT_PRICE = 2  # value is the percentage the customer pays (95 = "95折")
    AMOUNT_OFF = 3  # value in fen (1/100 yuan)


@dataclass(frozen=True, slots=True)
class Benefit:
    """A coupon's benefit."""

    kind: BenefitKind
    value: int
    item: str = ""


@dataclass(frozen=True, slots=True)
class Coupon:
    """A coupon issued and signed by HQ."""

    key_id: str
    coupon_id: str
    campaign_id: str
    channel: Channel
    benefit: Benefit
    valid_from: int
    valid_until: int
    max_uses: int = 1
    stores: tuple[str, ...] = ()  # empty: every store

    @property
    def code_id(self) -> str:
        """The ledger's key for this code's uses."""
        return "C:" + self.coupon_id


@dataclass(frozen=True, slots=True)
class Pickup:
    """A pickup code for an order, issued and signed by HQ."""

    key_id: str
    order_id: str
    store_id: str
    number: str
    window_start: int
    window_end: int
    items: str
    customer: str

    @property
    def code_id(self) -> str:
        """The ledger's key for this order's collection."""
        return "P:" + self.order_id


@dataclass(frozen=True, slots=True)
class Ticket:
    """A workshop ticket: ``party`` seats at one session, issued and signed by HQ.

    ``starts``/``ends`` are the session's times as signed at issue; the box adds the
    check-in margins. ``holder`` is the name the customer gave (for the cashier to greet).
    """

    key_id: str
    ticket_id: str
    session_id: str
    store_id: str
    party: int
    starts: int
    ends: int
    holder: str = ""

    @property
    def code_id(self) -> str:
        """The ledger's key for this ticket's check-in (once per ticket)."""
        return "W:" + self.ticket_id


@dataclass(frozen=True, slots=True)
class Card:
    """A packaging-card token, issued and signed by the store device."""

    store_id: str
    device_id: str
    serial: int
    issued_at: int
    receipt_ref: str = ""


Token = Coupon | Pickup | Card | Ticket


@dataclass(frozen=True, slots=True)
class Signed:
    """A parsed code: the token, the exact bytes that were signed, and the signature."""

    token: Token
    signed: bytes
    signature: bytes

    @property
    def kind(self) -> Kind:
        """The token's kind."""
        return _KIND_OF[type(self.token)]


_KIND_OF: Final[dict[type, Kind]] = {Coupon: Kind.COUPON, Pickup: Kind.PICKUP, Card: Kind.CARD,
                                     Ticket: Kind.TICKET}


@dataclass(frozen=True, slots=True)
class FormatError:
    """Why a string is not a well-formed store-edge code (never raised, returned)."""

    detail: str


class _Truncated(Exception):
    pass


ID6_ALPHABET: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_-"
_ID6_INDEX: Final = {c: i for i, c in enumerate(ID6_ALPHABET)}
_CARD_RELATIVE_DEVICE: Final = 1
_CARD_HAS_RECEIPT: Final = 2


# -- binary fields -----------------------------------------------------------------


class _Writer:
    def __init__(self) -> None:
        self.buf = bytearray()

    def uv(self, n: int) -> None:
        if n < 0:
            raise ValueError("varint must be non-negative")
        while True:
            b = n & 0x7F
            n >>= 7
            if n:
                self.buf.append(b | 0x80)
            else:
                self.buf.append(b)
                return

    def u8(self, n: int) -> None:
        self.buf.append(n)

    def u32(self, n: int) -> None:
        self.buf += n.to_bytes(4, "big")

    def id6(self, s: str) -> None:
        if len(s) > 63:
            raise ValueError(f"id {s[:20]!r} is over 63 characters")
        try:
            n = sum(_ID6_INDEX[c] << (6 * i) for i, c in enumerate(s))
        except KeyError as exc:
            raise ValueError(f"id {s!r}: {exc.args[0]!r} is not in 0-9A-Za-z_-") from None
        self.buf.append(len(s))
        self.buf += n.to_bytes((6 * len(s) + 7) // 8, "little")

    def str(self, s: str) -> None:
        raw = s.encode("utf-8")
        if len(raw) > MAX_FIELD_BYTES:
            raise ValueError(f"field {s[:20]!r} is over {MAX_FIELD_BYTES} bytes")
        self.buf.append(len(raw))
        self.buf += raw


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise _Truncated
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def uv(self) -> int:
        n = shift = 0
        while True:
            b = self._take(1)[0]
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                if b == 0 and shift:  # an overlong form: the writer never makes it
                    raise ValueError("varint not in its shortest form")
                return n
            shift += 7
            if shift > 35:
                raise ValueError("varint too long")

    def u8(self) -> int:
        return self._take(1)[0]

    def u32(self) -> int:
        return int.from_bytes(self._take(4), "big")

    def id6(self) -> str:
        count = self.u8()
        if count > 63:
            raise ValueError("id too long")
        n = int.from_bytes(self._take((6 * count + 7) // 8), "little")
        if n >> (6 * count):
            raise ValueError("non-zero padding bits")  # one byte string per id, no aliases
        return "".join(ID6_ALPHABET[(n >> (6 * i)) & 63] for i in range(count))

    def str(self) -> str:
        n = self.u8()
        if n > MAX_FIELD_BYTES:
            raise ValueError("field too long")
        return self._take(n).decode("utf-8")  # UnicodeDecodeError is a ValueError


# -- layouts -----------------------------------------------------------------------


def _write(token: Token) -> bytes:
    w = _Writer()
    match token:
        case Coupon():
            if not token.max_uses > 0 or len(token.stores) > 255:
                raise ValueError("max_uses must be >= 1 and at most 255 stores")
            w.str(token.key_id)
            w.str(token.coupon_id)
            w.str(token.campaign_id)
            w.u8(token.channel)
            w.u8(token.benefit.kind)
            w.uv(token.benefit.value)
            w.str(token.benefit.item)
            w.u32(token.valid_from)
            w.u32(token.valid_until)
            w.uv(token.max_uses)
            w.u8(len(token.stores))
            for s in token.stores:
                w.str(s)
        case Pickup():
            w.str(token.key_id)
            w.str(token.order_id)
            w.str(token.store_id)
            w.str(token.number)
            w.u32(token.window_start)
            w.u32(token.window_end)
            w.str(token.items)
            w.str(token.customer)
        case Ticket():
            if not token.party > 0:
                raise ValueError("a ticket is for a party of 1 or more")
            w.str(token.key_id)
            w.str(token.ticket_id)
            w.str(token.session_id)
            w.str(token.store_id)
            w.uv(token.party)
            w.u32(token.starts)
            w.u32(token.ends)
            w.str(token.holder)
        case Card():
            relative = token.device_id.startswith(token.store_id) and token.store_id != ""
            w.u8((_CARD_RELATIVE_DEVICE if relative else 0)
                 | (_CARD_HAS_RECEIPT if token.receipt_ref else 0))
            w.id6(token.store_id)
            w.id6(token.device_id[len(token.store_id):] if relative else token.device_id)
            w.uv(token.serial)
            w.u32(token.issued_at)
            if token.receipt_ref:
                w.id6(token.receipt_ref)
    return bytes(w.buf)


def _read(kind: Kind, payload: bytes) -> Token:
    r = _Reader(payload)
    token: Token
    if kind is Kind.COUPON:
        key_id, coupon_id, campaign_id = r.str(), r.str(), r.str()
        channel = Channel(r.u8())
        benefit = Benefit(BenefitKind(r.u8()), r.uv(), r.str())
        valid_from, valid_until, max_uses = r.u32(), r.u32(), r.uv()
        if max_uses < 1:  # the writer refuses it too: read only what can be written
            raise ValueError("max_uses 0")
        stores = tuple(r.str() for _ in range(r.u8()))
        token = Coupon(key_id, coupon_id, campaign_id, channel, benefit, valid_from,
                       valid_until, max_uses, stores)
    elif kind is Kind.PICKUP:
        token = Pickup(r.str(), r.str(), r.str(), r.str(), r.u32(), r.u32(), r.str(), r.str())
    elif kind is Kind.TICKET:
        token = Ticket(r.str(), r.str(), r.str(), r.str(), r.uv(), r.u32(), r.u32(), r.str())
        if token.party < 1:  # the writer refuses it too
            raise ValueError("party 0")
    else:
        flags = r.u8()
        if flags & ~(_CARD_RELATIVE_DEVICE | _CARD_HAS_RECEIPT):
            raise ValueError("unknown card flags")
        store_id = r.id6()
        device_id = r.id6()
        if flags & _CARD_RELATIVE_DEVICE:
            device_id = store_id + device_id
        serial, issued_at = r.uv(), r.u32()
        receipt = r.id6() if flags & _CARD_HAS_RECEIPT else ""
        if flags & _CARD_HAS_RECEIPT and not receipt:
            raise ValueError("empty receipt reference")
        token = Card(store_id, device_id, serial, issued_at, receipt)
    if r.pos != len(payload):
        raise ValueError("trailing bytes after the last field")
    if not _required_ids(token):
        raise ValueError("empty identifier")
    return token


def _required_ids(token: Token) -> bool:
    if isinstance(token, Coupon):
        return bool(token.key_id and token.coupon_id and token.campaign_id)
    if isinstance(token, Pickup):
        return bool(token.key_id and token.order_id and token.store_id)
    if isinstance(token, Ticket):
        return bool(token.key_id and token.ticket_id and token.session_id and token.store_id)
    return bool(token.store_id and token.device_id)


def signing_bytes(token: Token) -> bytes:
    """The exact bytes a signer signs for ``token``: prefix then payload."""
    return PREFIXES[_KIND_OF[type(token)]].encode("ascii") + _write(token)


def assemble(token: Token, signature: bytes) -> str:
    """Build the code text from a token and its signature over :func:`signing_bytes`."""
    if len(signature) != SIG_LEN:
        raise ValueError("an Ed25519 signature is 64 bytes")
    return PREFIXES[_KIND_OF[type(token)]] + base41.encode(_write(token) + signature)


def parse(text: str | bytes) -> Signed | FormatError:
    """Parse any input into a signed token, or say why it is not one. Never raises.

    The signature is *not* checked here: that needs the trusted keys (``edge.rules``).
    """
    if isinstance(text, bytes):
        if len(text) > MAX_CODE_CHARS:
            return FormatError(f"too long ({len(text)} bytes)")
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            return FormatError("not text: contains non-ASCII bytes")
    if not isinstance(text, str):
        return FormatError("not text")
    text = text.strip()
    if len(text) > MAX_CODE_CHARS:
        return FormatError(f"too long ({len(text)} characters)")
    if not text:
        return FormatError("empty")
    kind = _KIND_BY_PREFIX.get(text[:PREFIX_LEN].upper())
    if kind is None:
        return FormatError("not a store-edge code")
    try:
        raw = base41.decode(text[PREFIX_LEN:].upper())
    except base41.Base41Error as exc:
        return FormatError(f"damaged code: {exc}")
    if len(raw) <= SIG_LEN:
        return FormatError("damaged code: too short")
    payload, signature = raw[:-SIG_LEN], raw[-SIG_LEN:]
    try:
        token = _read(kind, payload)
    except _Truncated:
        return FormatError("damaged code: truncated")
    except ValueError as exc:  # bad enum value, bad UTF-8, bad varint, trailing bytes
        return FormatError(f"damaged code: {exc}")
    return Signed(token, PREFIXES[kind].encode("ascii") + payload, signature)


def card_url(base: str, code: str) -> str:
    """The packaging-card URL: the configured base followed by the card code."""
    return base + code


def code_from_url(url: str) -> str:
    """The code in a packaging-card URL: its last path segment (base41 has no ``/``)."""
    return url.strip().rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0].split("#", 1)[0]
