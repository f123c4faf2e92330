"""Bounded decoding of what arrives from the network: size first, then zlib, then JSON.

One pure module (no I/O) used by both ends of the MQTT contract: the box, for what HQ
publishes to its config and data topics (``edge.hqdata.json_object``, called by
``sync.inbound``), and HQ, for every event batch, presence and report
(``sync.contract.EventBatch.decode``). Anyone who can publish to a topic can send any bytes,
so nothing here trusts its input:

* the size is checked before anything is parsed or inflated;
* zlib inflates to at most a limit (``max_length``; ``bufsize`` is only a first guess and
  lets a 1 MB bomb grow to gigabytes);
* JSON nesting is bounded: CPython's parser raises ``RecursionError`` (not ``ValueError``)
  on a deep document, which a caller catching ``ValueError`` lets escape.

Every failure is a :class:`WireError` whose :attr:`~WireError.reason` says which bound was
broken, so callers record a specific reason and acknowledge the message (a raised error in
an MQTT handler means no PUBACK, and the broker would deliver the poison again forever).
The limits, and the MQTT 5 Maximum Packet Size each side announces, are documented in
``docs/security.md`` ("Inbound limits").
"""

from __future__ import annotations

import enum
import json
import re
import zlib
from typing import Any, Final

import orjson

# HQ -> box: one signed envelope (config, orders, remote uses). A config with 10,000
# revoked codes is ~0.7 MB; a catch-up envelope of 500 orders ~0.2 MB.
MAX_HQ_MESSAGE: Final = 2 << 20
# Box -> HQ: an event batch as published (zlib or plain) and inflated. A box's batch is at
# most 1,000 events; these leave room for 8 KB events uncompressed.
MAX_BATCH_WIRE: Final = 8 << 20
MAX_BATCH_JSON: Final = 16 << 20
# Nesting: the deepest contract message (an event batch: batch, events, event, body, facts,
# a list in facts) is 6 levels.
MAX_DEPTH: Final = 32
# MQTT 5 Maximum Packet Size (CONNECT property): the broker does not deliver a bigger packet
# to the client at all. The headroom covers the topic and properties around the payload.
PACKET_HEADROOM: Final = 64 << 10
BOX_MAX_PACKET: Final = MAX_HQ_MESSAGE + PACKET_HEADROOM
HQ_MAX_PACKET: Final = MAX_BATCH_WIRE + PACKET_HEADROOM


class Bound(enum.StrEnum):
    """Which bound a message broke (a recorded reason's detail starts with it)."""

    TOO_LARGE = "too_large"  # over the byte limit, before or after inflating
    TOO_DEEP = "too_deep"  # JSON nested deeper than MAX_DEPTH
    BAD_ZLIB = "bad_zlib"  # not a complete zlib stream
    NOT_JSON = "not_json"  # not UTF-8 JSON


class WireError(ValueError):
    """A message broke a bound or is not what it claims to be; ``reason`` says which."""

    def __init__(self, reason: Bound, message: str) -> None:
        """Carry the broken bound and a sentence naming the message."""
        super().__init__(message)
        self.reason = reason


def check_size(raw: bytes, limit: int, what: str) -> None:
    """Refuse ``raw`` over ``limit`` bytes before anything reads it.

    Raises:
        WireError: ``too_large``.
    """
    if len(raw) > limit:
        raise WireError(Bound.TOO_LARGE, f"{what} is {len(raw)} bytes, over the limit of "
                                         f"{limit}")


def inflate(raw: bytes, limit: int, what: str) -> bytes:
    """A zlib stream inflated to at most ``limit`` bytes.

    Raises:
        WireError: ``too_large`` (it would inflate past ``limit``: the rest is never
            inflated), ``bad_zlib`` (corrupt or truncated).
    """
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise WireError(Bound.BAD_ZLIB, f"{what}: bad zlib: {exc}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise WireError(Bound.TOO_LARGE, f"{what} inflates past the limit of {limit} bytes")
    if not inflater.eof:
        raise WireError(Bound.BAD_ZLIB, f"{what}: zlib stream is truncated")
    return out


def loads(raw: bytes | str, what: str, limit: int = MAX_HQ_MESSAGE,
          max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON of at most ``limit`` bytes nested at most ``max_depth`` deep.

    Raises:
        WireError: ``too_large``, ``not_json`` (invalid UTF-8 or JSON), ``too_deep``.
    """
    return loads_checked(raw, what, limit, max_depth)[0]


def loads_checked(raw: bytes | str, what: str, limit: int = MAX_HQ_MESSAGE,
                  max_depth: int = MAX_DEPTH) -> tuple[Any, bool]:
    """:func:`loads`, and whether the text was strict JSON.

    Strict: RFC 8259, no NaN, no infinity, no lone surrogate (orjson took it), so that
    ``orjson.dumps`` writes the same values back.

    Raises:
        WireError: ``too_large``, ``not_json`` (invalid UTF-8 or JSON), ``too_deep``.
    """
    check_size(raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass"),
               limit, what)
    try:
        # orjson (Rust) parses a valid message three to four times faster than json (HQ
        # parses every batch of every box). What it refuses (NaN, lone surrogates, UTF-16,
        # depth past 1024) json.loads then judges as before; the one difference: an
        # integer past 64 bits comes out as a float.
        obj, strict = orjson.loads(raw), True
    except orjson.JSONDecodeError:
        obj, strict = _stdlib_loads(raw, what, max_depth), False
    # Fewer openers than the bound cannot nest past it: small messages skip the walk.
    openers = raw.count(b"[") + raw.count(b"{") if isinstance(raw, bytes) else (
        raw.count("[") + raw.count("{"))
    if openers > max_depth:
        shallow = _text_within(raw, max_depth) if isinstance(raw, bytes) else None
        if shallow is None:
            shallow = _depth_within(obj, max_depth)
        if not shallow:
            raise WireError(Bound.TOO_DEEP, f"{what} is nested deeper than {max_depth}")
    return obj, strict


def surely_shallow(raw: bytes, max_depth: int = MAX_DEPTH) -> bool:
    """Whether valid JSON ``raw`` surely nests at most ``max_depth`` deep, on its bytes.

    False: deeper, or no telling without parsing it.
    """
    # Not counting openers first, as loads_checked does: a batch has more than the bound,
    # and the count would be half of this check's cost.
    return _text_within(raw, max_depth) is True


def _stdlib_loads(raw: bytes | str, what: str, max_depth: int) -> Any:
    try:
        return json.loads(raw)
    except RecursionError:  # deeper than the interpreter's recursion limit
        raise WireError(Bound.TOO_DEEP, f"{what} is nested deeper than {max_depth}") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise WireError(Bound.NOT_JSON, f"{what} is not JSON: {exc}") from None


# What _text_within keeps of a JSON text: its brackets and quotes.
_NOT_STRUCTURE: Final = bytes(b for b in range(256) if b not in b'[]{}"')
_STRING: Final = re.compile(rb'"[^"]*"')


def _text_within(raw: bytes, max_depth: int) -> bool | None:
    """True if valid JSON ``raw`` nests at most ``max_depth`` deep; None: cannot tell.

    For None, :func:`_depth_within` walks the parsed object. On the bytes, at C speed, a
    third of the walk's cost on an event batch: drop the escapes, keep only brackets and
    quotes, drop the strings (with any brackets in them), then strip empty ``[]`` and ``{}``
    pairs a pass at a time. A pass takes off at least one level and at most two, so ``p``
    passes mean a depth of at most ``2p``.
    """
    if b"\\" in raw:
        # An escaped quote would end a string early. Escaped backslashes first, left to
        # right as the parser pairs them; the other escapes (\n, \u...) lose their
        # backslash to the translate below and hold no bracket or quote.
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    text = raw.translate(None, _NOT_STRUCTURE).replace(b'""', b"")
    if b'"' in text:  # strings holding brackets
        text = _STRING.sub(b"", text)
    passes = 0
    while text:
        passes += 1
        if 2 * passes > max_depth:
            return None
        text = text.replace(b"[]", b"").replace(b"{}", b"")
    return True


def _depth_within(obj: object, max_depth: int) -> bool:
    """Whether ``obj``'s containers nest at most ``max_depth`` deep (breadth first).

    ``type() is`` rather than ``isinstance``: JSON gives exact dicts and lists, and this runs
    over every value of every event batch HQ ingests (half the cost of an isinstance walk).
    """
    level: list[Any] = [obj] if type(obj) is dict or type(obj) is list else []
    depth = 0
    while level:
        depth += 1
        if depth > max_depth:
            return False
        deeper: list[Any] = []
        more = deeper.extend
        for o in level:
            more([v for v in (o.values() if type(o) is dict else o)
                  if type(v) is dict or type(v) is list])
        level = deeper
    return True
