"""Orders without a store, read from JSON lines (``edge-hq orders assign FILE``).

One JSON object per line (format: ``docs/hq.md``, "orders assign"). A line that is not a
good order is a :class:`BadLine` with its line number and the reason, and reading goes on:
one bad line never costs the rest of the file. Blank lines are skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final

from edge.wire import WireError, loads
from hq.issuing.codes import random_pickup_number
from hq.timeparse import parse_time
from hq.web.claims import CUSTOMER_ID
from sync.contract import ContractError, OrderUpdate

MAX_LINE: Final = 64 << 10  # bytes: an order is a few hundred; more is not an order
MAX_DEPTH: Final = 2  # the object, nothing nested in it
REQUIRED: Final = ("order_id", "lat", "lon", "window_start", "window_end")
FIELDS: Final = frozenset({*REQUIRED, "items", "customer", "web_customer", "number"})


@dataclass(frozen=True, slots=True)
class OrderLine:
    """A good line: the order (store-less), where the customer is, whose page shows it.

    ``web_customer`` is the customer-page cookie id (``docs/web.md``), or '' for none.
    """

    line: int
    order: OrderUpdate
    lat: float
    lon: float
    web_customer: str = ""


@dataclass(frozen=True, slots=True)
class BadLine:
    """A line that is not a good order: its number, its order id if it has one, and why."""

    line: int
    order_id: str | None
    error: str


def read_orders(path: Path) -> Iterator[OrderLine | BadLine]:
    """Each non-blank line of ``path``, parsed; an order id seen before is a bad line.

    Raises:
        OSError: the file cannot be opened or read.
    """
    seen: dict[str, int] = {}
    with path.open("rb") as f:
        for n, raw in _lines(f):
            got = parse_line(n, raw)
            if isinstance(got, OrderLine):
                first = seen.setdefault(got.order.order_id, n)
                if first != n:
                    got = BadLine(n, got.order.order_id,
                                  f"order {got.order.order_id} is already on line {first}")
            yield got


def _lines(f: BinaryIO) -> Iterator[tuple[int, bytes | None]]:
    """(line number, bytes) for each non-blank line; None for a line too long.

    The rest of a line over :data:`MAX_LINE` is read and dropped in bounded pieces.
    """
    n = 0
    while True:
        raw = f.readline(MAX_LINE + 1)
        if not raw:
            return
        n += 1
        if len(raw) > MAX_LINE and not raw.endswith(b"\n"):
            while (more := f.readline(MAX_LINE)) and not more.endswith(b"\n"):
                pass
            yield n, None
        elif raw.strip():
            yield n, raw


def parse_line(n: int, raw: bytes | None) -> OrderLine | BadLine:
    """Line ``n`` (None: too long) as an order, or why not."""
    if raw is None:
        return BadLine(n, None, f"longer than {MAX_LINE} bytes")
    try:
        obj = loads(raw, f"line {n}", MAX_LINE, MAX_DEPTH)
    except WireError as exc:
        return BadLine(n, None, str(exc))
    if not isinstance(obj, dict):
        return BadLine(n, None, "not a JSON object")
    oid = obj.get("order_id")
    oid = oid if isinstance(oid, str) and oid else None
    try:
        return _order(n, obj)
    except (ValueError, ContractError) as exc:
        return BadLine(n, oid, str(exc))


def _order(n: int, obj: dict[str, Any]) -> OrderLine:
    """Line ``n``'s object as an order.

    Raises:
        ValueError: a missing, unknown or mistyped field (the message names it).
    """
    unknown = sorted(set(obj) - FIELDS)
    if unknown:
        raise ValueError(f"unknown field(s) {unknown}; known: {sorted(FIELDS)}")
    missing = [k for k in REQUIRED if k not in obj]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    lat, lon = obj["lat"], obj["lon"]
    if any(isinstance(v, bool) or not isinstance(v, int | float) for v in (lat, lon)):
        raise ValueError("lat and lon must be numbers (degrees)")
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise ValueError(f"coordinates {lat},{lon} are not latitude/longitude in degrees")
    customer = obj.get("web_customer", "")
    if customer and not (isinstance(customer, str) and CUSTOMER_ID.fullmatch(customer)):
        raise ValueError("web_customer must be the customer's cookie id (16-64 of A-Z a-z "
                         "0-9 _ -)")
    fields = {k: obj[k] for k in ("order_id", "window_start", "window_end", "items",
                                  "customer", "number") if k in obj}
    for k in ("window_start", "window_end"):
        if isinstance(fields[k], str):
            try:
                fields[k] = parse_time(fields[k])
            except ValueError as exc:
                raise ValueError(f"{k}: {exc}") from None
    fields.setdefault("number", random_pickup_number())
    order = OrderUpdate.from_dict(fields, "order")
    if order.window_end == order.window_start:
        raise ValueError("pickup window is empty (window_end = window_start)")
    return OrderLine(n, order, float(lat), float(lon), customer)
