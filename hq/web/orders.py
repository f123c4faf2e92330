"""Pickup orders bound to a web customer: recorded at push time, listed on "my coupons".

An orders file (``edge-hq push-orders``) may name, per order, the web customer it belongs
to (``web_customer``: the first-party cookie id) and the signed pickup code to show them
(``pickup_code``; HQ signs one with its pickup key when none is given). Neither field goes
to the box (the box's order schema is unchanged and no customer id crosses MQTT): both are
kept in ``web_order``, in the push's version transaction. The page's status comes from what
HQ knows: the order as last pushed (``hq_order``: cancelled) and the box's decision events
(``hq_event``: collected, net of voids); else waiting, or late once its window has passed.
"""

from __future__ import annotations

import enum
import functools
import json
from dataclasses import dataclass
from typing import Any, Final

from edge import tokens
from edge.events import EventType
from edge.keys import SigningKey
from edge.qrfit import CODE_MAX_VERSION, qr_version
from hq.db import Cursor, Database
from hq.issuing.codes import sign_token
from hq.web.claims import CUSTOMER_ID
from sync.contract import OrderStatus, OrderUpdate

WEB_FIELDS: Final = ("web_customer", "pickup_code")  # kept at HQ, stripped before the box


class WebOrderError(ValueError):
    """An order's web fields are wrong; the message names the order."""


@dataclass(frozen=True, slots=True)
class WebLink:
    """One order's web fields from an orders file."""

    order_id: str
    customer: str
    pickup_code: str = ""  # empty: HQ signs one


class PickupStatus(enum.StrEnum):
    """An order's state on the customer's page."""

    WAITING = "waiting"
    LATE = "late"  # its window has ended and it was not collected
    CANCELLED = "cancelled"
    COLLECTED = "collected"


@dataclass(frozen=True, slots=True)
class PickupOrder:
    """A customer's pickup order as the page shows it."""

    order_id: str
    store: str
    number: str
    code: str
    window_start: int
    window_end: int
    items: str
    status: PickupStatus
    collected_at: float | None = None
    collected_store: str = ""


def split_web_fields(items: list[Any]) -> tuple[list[Any], list[WebLink]]:
    """The orders without their web fields (for the box), and those fields (for HQ).

    Raises:
        WebOrderError: ``web_customer`` is not a customer id, or ``pickup_code`` is not text
            or comes without a customer.
    """
    bare: list[Any] = []
    links: list[WebLink] = []
    for item in items:
        if not isinstance(item, dict) or not any(k in item for k in WEB_FIELDS):
            bare.append(item)
            continue
        oid = item.get("order_id")
        customer, code = item.get("web_customer"), item.get("pickup_code", "")
        if not isinstance(customer, str) or not CUSTOMER_ID.fullmatch(customer):
            raise WebOrderError(f"order {oid!r}: web_customer must be the customer's cookie id"
                                " (16-64 of A-Z a-z 0-9 _ -)")
        if not isinstance(code, str):
            raise WebOrderError(f"order {oid!r}: pickup_code must be text")
        bare.append({k: v for k, v in item.items() if k not in WEB_FIELDS})
        links.append(WebLink(str(oid), customer, code.strip()))
    return bare, links


@functools.lru_cache(maxsize=256)
def _alnum_version(length: int) -> int:
    """The QR version of ``length`` alphanumeric characters in one segment.

    Every code is QR-alphanumeric (``edge.base41``), so this bounds any code of that
    length: building a QR per code to measure it costs ~50 ms, this once per length.
    """
    return qr_version("A" * length)


def _code_version(code: str) -> int:
    """``qr_version(code)``, or a bound of it that is already small enough."""
    bound = _alnum_version(len(code))
    return bound if bound <= CODE_MAX_VERSION else qr_version(code)


def sign_pickup(key: SigningKey, order: OrderUpdate, store: str) -> str:
    """The pickup code for ``order`` at ``store``, signed with ``key``.

    Raises:
        WebOrderError: a field does not fit a pickup code (an order id outside
            0-9A-Za-z_- or over 63, items or customer over 64 bytes), or the code would need
            a QR version a till camera may not read.
    """
    try:
        code = sign_token(key, tokens.Pickup(key.key_id, order.order_id, store, order.number,
                                             order.window_start, order.window_end,
                                             order.items, order.customer))
    except ValueError as exc:
        raise WebOrderError(f"order {order.order_id!r} cannot have a pickup code: {exc}"
                            ) from None
    version = _code_version(code)
    if version > CODE_MAX_VERSION:  # a till camera reads up to this from a phone
        raise WebOrderError(f"order {order.order_id!r}: its pickup code needs QR version "
                            f"{version}, over {CODE_MAX_VERSION}: shorten items")
    return code


def _code_for(order: OrderUpdate, store: str, link: WebLink, key: SigningKey | None) -> str:
    """The given pickup code, checked against the order, or one signed now."""
    if not link.pickup_code:
        if key is None:
            raise WebOrderError(f"order {order.order_id!r}: no pickup_code given and no pickup"
                                " key to sign one (keygen --purposes pickup)")
        return sign_pickup(key, order, store)
    parsed = tokens.parse(link.pickup_code)
    token = None if isinstance(parsed, tokens.FormatError) else parsed.token
    if not isinstance(token, tokens.Pickup):
        raise WebOrderError(f"order {order.order_id!r}: pickup_code is not a pickup code")
    if (token.order_id, token.store_id, token.number) != (order.order_id, store, order.number):
        raise WebOrderError(f"order {order.order_id!r}: pickup_code is for order "
                            f"{token.order_id} number {token.number} at {token.store_id}")
    return link.pickup_code


def codes_for(store: str, orders: list[OrderUpdate], links: list[WebLink],
              key: SigningKey | None) -> list[tuple[WebLink, OrderUpdate, str]]:
    """Each web link with its order and pickup code (checked or signed), before any write.

    Raises:
        WebOrderError: a link names no order in the file, or its code does not fit.
    """
    by_id = {o.order_id: o for o in orders}
    out = []
    for link in links:
        order = by_id.get(link.order_id)
        if order is None:
            raise WebOrderError(f"order {link.order_id!r}: no such order in the file")
        out.append((link, order, _code_for(order, store, link, key)))
    return out


def record_links(cur: Cursor, store: str, linked: list[tuple[WebLink, OrderUpdate, str]],
                 now: float) -> None:
    """Keep each order's customer and code, inside the push's transaction."""
    for link, o, code in linked:
        cur.execute("INSERT INTO web_order(store, order_id, customer, number, code,"
                    " window_start, window_end, created_at) VALUES (?,?,?,?,?,?,?,?)"
                    " ON CONFLICT (store, order_id) DO UPDATE SET customer=excluded.customer,"
                    " number=excluded.number, code=excluded.code,"
                    " window_start=excluded.window_start, window_end=excluded.window_end",
                    (store, o.order_id, link.customer, o.number, code, o.window_start,
                     o.window_end, now))


def orders_of(db: Database, customer: str, now: float) -> list[PickupOrder]:
    """A customer's pickup orders, latest window first, each with its status."""
    rows = db.query("SELECT w.store, w.order_id, w.number, w.code, w.window_start,"
                    " w.window_end, h.body FROM web_order w LEFT JOIN hq_order h"
                    " ON h.store=w.store AND h.order_id=w.order_id WHERE w.customer=?"
                    " ORDER BY w.window_start DESC, w.order_id", (customer,))
    out = []
    for store, oid, number, code, start, end, body in rows:
        pushed = json.loads(body) if body else {}
        status, at, where = _status(db, str(store), str(oid), pushed.get("status"), int(end),
                                    now)
        out.append(PickupOrder(str(oid), str(store), str(number), str(code), int(start),
                               int(end), str(pushed.get("items", "")), status, at, where))
    return out


def _status(db: Database, store: str, order_id: str, pushed: object, window_end: int,
            now: float) -> tuple[PickupStatus, float | None, str]:
    """Collected (the box's accepted decisions net of voids), cancelled, late or waiting."""
    rows = db.query("SELECT type, at FROM hq_event WHERE store=? AND code_id=? AND"
                    " kind='pickup' AND ((type=? AND accepted=1) OR type=?) ORDER BY at",
                    (store, "P:" + order_id, EventType.DECISION.value, EventType.VOID.value))
    net = sum(1 if t == EventType.DECISION.value else -1 for t, _at in rows)
    if net > 0:
        last = max(float(at) for t, at in rows if t == EventType.DECISION.value)
        return PickupStatus.COLLECTED, last, store
    if pushed == OrderStatus.COLLECTED.value:
        return PickupStatus.COLLECTED, None, store
    if pushed == OrderStatus.CANCELLED.value:
        return PickupStatus.CANCELLED, None, ""
    return (PickupStatus.LATE if window_end < now else PickupStatus.WAITING), None, ""
