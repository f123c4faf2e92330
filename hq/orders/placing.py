"""Orders placed for good: assigned against the store registry, kept, issued and pushed.

``edge-hq orders assign`` in two steps:

1. :func:`place`, one transaction: the orders of the file not assigned before go to the
   nearest open store with a place left (``hq.orders.assign``), counting the places earlier
   runs took (``hq_assignment`` rows per store and slot), and each is kept with its signed
   pickup code. Runs take turns (every run first updates one ``hq_meta`` row, so on
   PostgreSQL as on SQLite a second run waits for the first to commit); an order id
   assigned before keeps its store, its number and its code (``repeat``).
2. :func:`push_placed`: every assigned order of the file not yet pushed goes to its store
   like any order (``hq.publishing.push.push_orders``, with its web customer and code for
   their "my coupons" page), and is marked pushed. A store whose push fails is reported and
   the others go on; a later run pushes what is left.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from edge.keys import SigningKey
from hq.broker import BrokerError, BrokerOptions
from hq.db import Cursor, Database
from hq.orders.assign import (
    DEFAULT_MAX_DISTANCE_M,
    DEFAULT_SLOT_S,
    OrderRequest,
    Outcome,
    Stores,
    assign,
)
from hq.orders.intake import BadLine, OrderLine
from hq.publishing.push import BodyError, push_orders
from hq.storeregistry import list_stores, sites
from hq.web.orders import WebLink, WebOrderError, sign_pickup
from sync.contract import OrderUpdate

BAD_LINE: Final = "bad_line"
PUSH_CHUNK: Final = 500  # orders per envelope: well under the box's 2 MiB message bound
_IN_CHUNK: Final = 500  # ids per IN (...) query
# What an unassigned outcome means, in the output line's ``reason``.
REASONS: Final = {
    Outcome.NO_STORE_IN_RANGE.value: "no store within range (--max-km)",
    Outcome.NONE_OPEN.value: "every store within range is closed for the pickup window",
    Outcome.ALL_FULL.value: "every store within range that is open for the window has no "
                            "pickup place left in that slot",
}


@dataclass(frozen=True, slots=True)
class Placed:
    """What became of one line: an assignment (``outcome`` ``assigned``), or why not.

    ``outcome``: an :class:`hq.orders.assign.Outcome` value, or ``bad_line`` (``error``
    says why). ``repeat``: the order was assigned by an earlier run. ``push_error``: its
    store's push failed (it stays to be pushed by the next run).
    """

    line: int
    order_id: str | None
    outcome: str
    store: str | None = None
    distance_m: float | None = None
    slot: int | None = None
    number: str | None = None
    code: str | None = None
    web_customer: str = ""
    repeat: bool = False
    pushed: bool = False
    error: str = ""
    push_error: str = ""

    def to_json(self) -> dict[str, Any]:
        """The output line for this order (only the fields that say something)."""
        out: dict[str, Any] = {"line": self.line, "order_id": self.order_id,
                               "outcome": self.outcome}
        if self.outcome == Outcome.ASSIGNED.value:
            out.update(store=self.store, distance_m=round(self.distance_m or 0.0, 1),
                       slot=self.slot, number=self.number, pickup_code=self.code,
                       repeat=self.repeat, pushed=self.pushed)
            if self.push_error:
                out["push_error"] = self.push_error
        elif self.outcome in REASONS:
            out["reason"] = REASONS[self.outcome]
        if self.error:
            out["error"] = self.error
        return out


def place(db: Database, lines: Sequence[OrderLine | BadLine], pickup_key: SigningKey,
          max_distance_m: float = DEFAULT_MAX_DISTANCE_M,
          clock: Callable[[], float] = time.time) -> list[Placed]:
    """Assign the file's new orders for good and sign their pickup codes (step 1).

    Returns one :class:`Placed` per line, in line order. Orders whose pickup code would not
    fit a till camera's QR are bad lines and take no place.

    Raises:
        hq.db.DbError: the database failed (nothing of this run is kept).
    """
    stores = Stores(sites(list_stores(db)))
    out: dict[int, Placed] = {b.line: _bad(b) for b in lines if isinstance(b, BadLine)}
    good = [g for g in lines if isinstance(g, OrderLine)]
    # The longest store id makes the longest code: an order that fits there fits anywhere.
    longest = max(stores.ids, key=len, default="")
    with db.tx() as cur:
        cur.execute("UPDATE hq_meta SET value=value WHERE key='assign_turn'")
        earlier = _earlier(cur, [g.order.order_id for g in good])
        new: list[OrderLine] = []
        for g in good:
            row = earlier.get(g.order.order_id)
            if row is not None:
                out[g.line] = replace(row, line=g.line)
                continue
            try:
                sign_pickup(pickup_key, g.order, longest)
            except WebOrderError as exc:
                out[g.line] = Placed(g.line, g.order.order_id, BAD_LINE, error=str(exc))
                continue
            new.append(g)
        requests = [OrderRequest(g.order.order_id, g.lat, g.lon, g.order.window_start,
                                 g.order.window_end) for g in new]
        got = assign(stores, requests, max_distance_m, _load(cur, requests))
        now = clock()
        for g, a in zip(new, got, strict=True):
            if a.outcome is not Outcome.ASSIGNED or a.store_id is None:
                out[g.line] = Placed(g.line, g.order.order_id, a.outcome.value)
                continue
            code = sign_pickup(pickup_key, g.order, a.store_id)
            cur.execute("INSERT INTO hq_assignment(order_id, store, slot, distance_m, body,"
                        " web_customer, code, assigned_at) VALUES (?,?,?,?,?,?,?,?)",
                        (g.order.order_id, a.store_id, a.slot, a.distance_m,
                         json.dumps(g.order.to_dict(), ensure_ascii=False), g.web_customer,
                         code, now))
            out[g.line] = Placed(g.line, g.order.order_id, Outcome.ASSIGNED.value, a.store_id,
                                 a.distance_m, a.slot, g.order.number, code, g.web_customer)
    return [out[n] for n in sorted(out)]


def _bad(b: BadLine) -> Placed:
    return Placed(b.line, b.order_id, BAD_LINE, error=b.error)


def _earlier(cur: Cursor, ids: list[str]) -> dict[str, Placed]:
    """The assignments earlier runs made of these order ids."""
    found: dict[str, Placed] = {}
    for i in range(0, len(ids), _IN_CHUNK):
        part = ids[i:i + _IN_CHUNK]
        marks = ",".join("?" * len(part))
        cur.execute("SELECT order_id, store, slot, distance_m, body, web_customer, code,"
                    f" pushed_at FROM hq_assignment WHERE order_id IN ({marks})", part)
        for oid, store, slot, dist, body, customer, code, pushed_at in cur.fetchall():
            found[str(oid)] = Placed(0, str(oid), Outcome.ASSIGNED.value, str(store),
                                     float(dist), int(slot), str(json.loads(body)["number"]),
                                     str(code), str(customer), repeat=True,
                                     pushed=pushed_at is not None)
    return found


def _load(cur: Cursor, requests: list[OrderRequest]) -> dict[tuple[str, int], int]:
    """Places taken per (store, slot) in the slots these orders can fall in."""
    if not requests:
        return {}
    lo = min(r.window_start for r in requests) - DEFAULT_SLOT_S
    hi = max(r.window_start for r in requests)
    cur.execute("SELECT store, slot, COUNT(*) FROM hq_assignment WHERE slot >= ? AND"
                " slot <= ? GROUP BY store, slot", (lo, hi))
    return {(str(s), int(slot)): int(n) for s, slot, n in cur.fetchall()}


def push_placed(db: Database, opts: BrokerOptions, key: SigningKey, placed: list[Placed],
                clock: Callable[[], float] = time.time) -> list[Placed]:
    """Push every assigned, not yet pushed order of ``placed`` to its store (step 2).

    Returns ``placed`` with ``pushed`` (or ``push_error``) set for those.

    Raises:
        hq.db.DbError: the database failed.
    """
    todo = [p for p in placed if p.outcome == Outcome.ASSIGNED.value and not p.pushed]
    bodies = _bodies(db, [p.order_id for p in todo if p.order_id])
    by_store: dict[str, list[Placed]] = {}
    for p in todo:
        by_store.setdefault(str(p.store), []).append(p)
    done: dict[str, Placed] = {}
    for store, group in sorted(by_store.items()):
        for i in range(0, len(group), PUSH_CHUNK):
            part = group[i:i + PUSH_CHUNK]
            orders = [bodies[str(p.order_id)] for p in part]
            links = [WebLink(str(p.order_id), p.web_customer, str(p.code)) for p in part
                     if p.web_customer]
            try:
                push_orders(db, opts, key, store, orders, links)
            except (BrokerError, BodyError) as exc:
                done.update((str(p.order_id), replace(p, push_error=str(exc))) for p in part)
                continue
            ids = [str(p.order_id) for p in part]
            with db.tx() as cur:
                cur.execute("UPDATE hq_assignment SET pushed_at=? WHERE order_id IN"
                            f" ({','.join('?' * len(ids))})", [clock(), *ids])
            done.update((str(p.order_id), replace(p, pushed=True)) for p in part)
    return [done.get(str(p.order_id), p) if p.outcome == Outcome.ASSIGNED.value else p
            for p in placed]


def _bodies(db: Database, ids: list[str]) -> dict[str, OrderUpdate]:
    """The orders as assigned (the store's copy is the one kept at assignment)."""
    out: dict[str, OrderUpdate] = {}
    for i in range(0, len(ids), _IN_CHUNK):
        part = ids[i:i + _IN_CHUNK]
        for oid, body in db.query("SELECT order_id, body FROM hq_assignment WHERE order_id"
                                  f" IN ({','.join('?' * len(part))})", part):
            out[str(oid)] = OrderUpdate.from_dict(json.loads(body))
    return out
