"""Pickup orders the store knows about, from HQ's feed or from signed pickup codes."""

from __future__ import annotations

import sqlite3
from typing import Any

from edge import keys, tokens
from edge.ledger import Ledger

STATUSES = ("waiting", "collected", "cancelled")


class OrderError(ValueError):
    """An order cannot be learned: bad code, bad signature, another store's order."""


def upsert_order(conn: sqlite3.Connection, order: tokens.Pickup, status: str = "waiting") -> None:
    """Add or update an order inside the caller's transaction.

    A collected order stays collected: HQ's feed may lag behind the counter.
    """
    if status not in STATUSES:
        raise OrderError(f"order status {status!r} is not one of {STATUSES}")
    conn.execute(
        "INSERT INTO pickup_order(order_id, store_id, number, window_start, window_end, items,"
        " customer, status) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(order_id) DO UPDATE SET"
        " store_id=excluded.store_id, number=excluded.number,"
        " window_start=excluded.window_start, window_end=excluded.window_end,"
        " items=excluded.items, customer=excluded.customer,"
        " status=CASE WHEN pickup_order.status='collected' THEN 'collected'"
        " ELSE excluded.status END",
        (order.order_id, order.store_id, order.number, order.window_start, order.window_end,
         order.items, order.customer, status))


def learn_pickup_code(ledger: Ledger, store_id: str, code: str) -> tokens.Pickup:
    """Verify a signed pickup code and remember its order as waiting.

    Raises:
        OrderError: the code is not a valid, HQ-signed pickup code for this store.
    """
    parsed = tokens.parse(code)
    if isinstance(parsed, tokens.FormatError):
        raise OrderError(f"not a pickup code: {parsed.detail}")
    token = parsed.token
    if not isinstance(token, tokens.Pickup):
        raise OrderError(f"not a pickup code but a {parsed.kind.value} code")
    key = ledger.trusted_key(token.key_id)
    if key is None or keys.Purpose.PICKUP not in key.purposes:
        raise OrderError(f"pickup code signed by unknown key {token.key_id!r}")
    if not keys.verify(key.public_key, parsed.signed, parsed.signature):
        raise OrderError("pickup code signature is invalid")
    if token.store_id != store_id:
        raise OrderError(f"order {token.order_id} is for store {token.store_id}, not {store_id}")
    with ledger.immediate() as conn:
        upsert_order(conn, token)
    return token


def orders(ledger: Ledger, start: float, end: float,
           now: float | None = None) -> list[dict[str, Any]]:
    """Orders whose pickup window overlaps ``[start, end)``, earliest first.

    With ``now`` (the box's decision time), each order also says whether it is ``late``:
    still waiting after its window ended.
    """
    rows = ledger.conn.execute(
        "SELECT order_id, number, window_start, window_end, items, customer, status,"
        " collected_at FROM pickup_order WHERE window_end >= ? AND window_start < ?"
        " ORDER BY window_start, number", (start, end))
    cols = ("order_id", "number", "window_start", "window_end", "items", "customer", "status",
            "collected_at")
    found = [dict(zip(cols, r, strict=True)) for r in rows]
    if now is not None:
        for o in found:
            o["late"] = o["status"] == "waiting" and now > o["window_end"]
    return found
