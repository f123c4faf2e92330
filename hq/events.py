"""Events as HQ reads them: typed, each body kept as the JSON text the box sent.

``sync.contract.EventBatch.decode`` is the contract's reader: it makes Python objects of
every value of every event, and ingest then wrote each body back to JSON text for
``hq_event.body``. :func:`read_batch` reads a batch against typed structs with msgspec (a
maintained C library made for exactly this): the fields ingest needs come out typed, each
body stays the bytes it came as (checked to be a JSON object), and only the fields HQ lifts
into columns and counts (:class:`Lifted`) are read from it. ``bench/wire_decode.py``: 0.54
of the unbounded zlib + json.loads floor, where the contract's reader takes about 0.7 and
each body was then written back to JSON besides.

Whatever msgspec does not take (a value of another type, NaN, a lone surrogate, invalid
UTF-8, nesting not bounded on the bytes alone, a version it does not know) goes to
``EventBatch.decode``, which accepts or refuses it exactly as before, with the same error;
what that accepts is converted (:func:`from_dicts`). So both read the same batches as
the same events (``tests/test_hq_events.py`` holds them to it on generated batches).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import msgspec
import orjson

from edge import wire
from edge.events import SCHEMA_VERSION as EVENT_SCHEMA_VERSION
from sync.contract import EventBatch, batch_json

UNSET: Final = msgspec.UNSET  # an event that does not name its store or device


class Facts(msgspec.Struct, frozen=True, gc=False):
    """The two facts of a decision the dashboard reads (of accepted coupons only).

    Only these are read: a box's facts hold more (the benefit, the stores, the uses left),
    which stay in the stored body unparsed.
    """

    coupon_id: Any = None
    channel: Any = None


class Lifted(msgspec.Struct, frozen=True, gc=False):
    """The body fields HQ lifts into ``hq_event`` columns and counts on the dashboard.

    As the body has them (any JSON value; None when absent): ingest writes them to the
    columns as text or 0/1. ``facts``: None when absent, null or not an object.
    """

    accepted: Any = None
    kind: Any = None
    code_id: Any = None
    campaign_id: Any = None
    reason: Any = None
    facts: Facts | None = None


class Received(msgspec.Struct, frozen=True, gc=False):
    """One event of a batch, as ingest checks and stores it."""

    id: str
    seq: int
    type: str
    at: float  # from EventBatch.decode also an int, or a bool that ingest refuses
    clock_trusted: bool
    body: str  # a JSON object's text
    lifted: Lifted
    store: Any = UNSET  # as the event says: UNSET when it does not say
    device: Any = UNSET


@dataclass(frozen=True, slots=True)
class ReceivedBatch:
    """A batch: the store and device it names, and its events in the order sent."""

    store: str
    device: str
    events: list[Received]


class _Event(msgspec.Struct, gc=False):
    id: str
    seq: int
    type: str
    at: float
    body: msgspec.Raw
    clock_trusted: Any = False
    store: Any = UNSET
    device: Any = UNSET


class _Batch(msgspec.Struct, gc=False):
    v: int
    events: list[_Event]
    store: Any = None
    device: Any = None


_read: Final = msgspec.json.Decoder(_Batch)
_lifted: Final = msgspec.json.Decoder(Lifted)
_NOT_READ: Final = (msgspec.DecodeError, UnicodeDecodeError)  # ValidationError is one


class _Refer(Exception):
    """Not for this reader: EventBatch.decode decides."""


def read_batch(payload: bytes, content_type: str | None) -> ReceivedBatch:
    """Read an event batch as sent (compressed or not).

    Raises:
        TooLargeError: over ``edge.wire``'s batch limits, as sent or inflated.
        ContractError: bad compression, JSON, version or shape (``EventBatch.decode``'s
            error).
    """
    raw = batch_json(payload, content_type)
    try:
        if not wire.surely_shallow(raw):
            raise _Refer
        batch = _read.decode(raw)
        if batch.v != EVENT_SCHEMA_VERSION:
            raise _Refer
        events = [Received(e.id, e.seq, e.type, e.at, bool(e.clock_trusted),
                           str(e.body, "utf-8"), _lifted.decode(e.body), e.store, e.device)
                  for e in batch.events]
        return ReceivedBatch(str(batch.store), str(batch.device), events)
    except (_Refer, *_NOT_READ):
        pass
    slow = EventBatch.decode(payload, content_type)  # inflated again: rare
    return ReceivedBatch(slow.store, slow.device, from_dicts(slow.events, slow.strict))


def from_dicts(events: list[dict[str, Any]], strict: bool = False) -> list[Received]:
    """Events in the contract's dict form (``EventBatch.events``), as ingest reads them.

    ``strict``: read from strict JSON (no NaN or infinity), so orjson may write the bodies.
    """
    body_json = _body_orjson if strict else _body_json
    out = []
    for e in events:
        body = e["body"]
        at = e["at"]
        out.append(Received(
            e["id"], e["seq"], e["type"], at if type(at) is bool else float(at),
            bool(e.get("clock_trusted")), body_json(body), lifted_from(body),
            e.get("store", UNSET), e.get("device", UNSET)))
    return out


def lifted_from(body: dict[str, Any]) -> Lifted:
    """The lifted fields of a body already parsed."""
    get = body.get
    facts = get("facts")
    return Lifted(get("accepted"), get("kind"), get("code_id"), get("campaign_id"),
                  get("reason"), Facts(facts.get("coupon_id"), facts.get("channel"))
                  if isinstance(facts, dict) else None)


def lifted_of(body: str) -> Lifted | None:
    """The lifted fields of a stored body's text; None if it is not a JSON object."""
    try:
        return _lifted.decode(body)
    except msgspec.DecodeError:
        try:
            parsed = json.loads(body)  # NaN and the like, which json wrote
        except ValueError:
            return None
        return lifted_from(parsed) if isinstance(parsed, dict) else None


def _json_encoder() -> Callable[[Any], str]:
    """Compact JSON as ``json.dumps`` writes it, without building an encoder per call.

    The same text as ``json.dumps(obj, ensure_ascii=False, separators=(",", ":"))``; the
    encoder json.dumps builds per call was half the Python cost of storing an event.
    """
    enc = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
    make = getattr(json.encoder, "c_make_encoder", None)  # None without the C accelerator
    if make is None:
        return enc.encode
    # As json.dumps builds it on each call, less the cycle check (markers None): a body
    # fresh from json.loads has no cycles.
    c_encode = make(None, enc.default, json.encoder.encode_basestring, None, ":", ",",
                    False, False, True)
    return lambda obj: "".join(c_encode(obj, 0))


_body_json: Final = _json_encoder()


def _body_orjson(body: Any) -> str:
    """A body read as strict JSON (no NaN, no infinity), as JSON text.

    orjson writes it in a quarter of the time; the text may differ from ``_body_json``'s
    in a float's spelling (``1e16`` for ``1e+16``), never in a value.
    """
    return orjson.dumps(body).decode()
