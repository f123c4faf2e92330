"""The dashboard's aggregates, per store and local day, kept as the facts arrive.

:func:`count_events` runs inside the event store's insert transaction (``hq.ingest``), and
:func:`count_claim` inside a card claim's (``hq.web.claims``), so a figure and the facts it
counts commit together: the dashboard never reads a half-counted batch, and a redelivered
batch (no new rows) counts nothing. :func:`rebuild` recounts everything from ``hq_event``
and ``web_card_claim`` with the same code (``edge-hq dashboard rebuild``), for a database
that has events from before these tables.

Each step is counted on the local day it happened, at the store where it happened:

- ``printed``: a ``card_issued`` event;
- ``claimed``: a card claimed on the web (the card's store);
- ``welcome``: an accepted redemption of a ``welcome``-channel coupon;
- ``came_back``: a web customer's second accepted redemption (a customer once);
- ``redeemed``, ``rejected``, ``voided``, ``pickups``: accepted coupon decisions, rejected
  decisions (coupon or pickup), coupon voids, accepted pickup decisions.

``dash_month`` holds the same per store and month (long ranges read it),
``dash_chain_day`` per day for the whole chain (in a few shards); ``dash_detail``
breaks ``redeemed`` down by ``campaign`` and ``channel`` and ``rejected`` by ``reason``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Final

from edge.events import EventType
from hq.db import Cursor, Database
from hq.events import Lifted, Received, lifted_of

COLUMNS: Final = ("printed", "claimed", "welcome", "came_back", "redeemed", "rejected",
                  "voided", "pickups")
_INDEX: Final = {c: i for i, c in enumerate(COLUMNS)}
UNKNOWN_DAY: Final = 0  # an event time no calendar can place (absurd clock): counted here
REBUILD_CHUNK: Final = 5000

_UPSERT_DAY: Final = (
    f"INSERT INTO dash_day(store, day, {', '.join(COLUMNS)}) VALUES"
    f" (?, ?, {', '.join('?' for _ in COLUMNS)}) ON CONFLICT (store, day) DO UPDATE SET "
    + ", ".join(f"{c}=dash_day.{c}+excluded.{c}" for c in COLUMNS))
_UPSERT_MONTH: Final = (
    f"INSERT INTO dash_month(store, month, {', '.join(COLUMNS)}) VALUES"
    f" (?, ?, {', '.join('?' for _ in COLUMNS)}) ON CONFLICT (store, month) DO UPDATE SET "
    + ", ".join(f"{c}=dash_month.{c}+excluded.{c}" for c in COLUMNS))
_UPSERT_CHAIN: Final = (
    f"INSERT INTO dash_chain_day(day, shard, {', '.join(COLUMNS)}) VALUES"
    f" (?, ?, {', '.join('?' for _ in COLUMNS)}) ON CONFLICT (day, shard) DO UPDATE SET "
    + ", ".join(f"{c}=dash_chain_day.{c}+excluded.{c}" for c in COLUMNS))
SHARDS: Final = 16
_UPSERT_DETAIL: Final = (
    "INSERT INTO dash_detail(store, day, metric, dim, n) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (store, day, metric, dim) DO UPDATE SET n=dash_detail.n+excluded.n")


def shard(store: str) -> int:
    """Which of the chain's rows of a day counts ``store`` (``dash_chain_day``)."""
    return ord(store[-1]) % SHARDS if store else 0


# Since 2000 every zone's UTC offset is a whole number of quarter hours, so a local day
# starts on a quarter hour of UTC: within one quarter the day cannot change. Ingest places
# every event it stores; this remembers a quarter's day instead of asking localtime().
_QUARTER: Final = 900
_CACHED_FROM: Final = 946_684_800  # 2000-01-01 UTC
_CACHED_UNTIL: Final = 4_102_444_800  # 2100-01-01 UTC
_CACHE_MAX: Final = 100_000  # quarters remembered per zone
_ZONES_MAX: Final = 16
# per zone (time.tzset(): a test, a changed TZ, changes it), a quarter's local day
_days: dict[tuple[int, int, tuple[str, str]], dict[int, int]] = {}


def day_of(at: float) -> int:
    """The local calendar day of ``at`` as ``YYYYMMDD`` (:data:`UNKNOWN_DAY` if unplaceable)."""
    return days_of((at,))[0]


def days_of(ats: Iterable[float]) -> list[int]:
    """:func:`day_of` of each time; the zone looked up once (ingest places a batch at once)."""
    zone = (time.timezone, time.altzone, time.tzname)
    days = _days.get(zone)
    if days is None:
        if len(_days) >= _ZONES_MAX:
            _days.clear()
        days = _days[zone] = {}
    out = []
    for at in ats:
        if _CACHED_FROM <= at < _CACHED_UNTIL:
            quarter = int(at) // _QUARTER
            day = days.get(quarter)
            if day is None:
                if len(days) >= _CACHE_MAX:
                    days.clear()
                day = days[quarter] = _local_day(quarter * _QUARTER)
        else:
            day = _local_day(at)
        out.append(day)
    return out


def _local_day(at: float) -> int:
    try:
        t = time.localtime(at)
    except (OverflowError, OSError, ValueError):
        return UNKNOWN_DAY
    if not 1 <= t.tm_year <= 9999:
        return UNKNOWN_DAY
    return t.tm_year * 10000 + t.tm_mon * 100 + t.tm_mday


class Tally:
    """Deltas gathered over many facts, written in a few statements (:meth:`write`)."""

    def __init__(self) -> None:
        self.days: dict[tuple[str, int], list[int]] = {}
        self.details: dict[tuple[str, int, str, str], int] = {}
        # per web customer, their redemptions here in order: (store, day) of each
        self.redemptions: dict[str, list[tuple[str, int]]] = {}

    def add(self, store: str, day: int, column: str, n: int = 1) -> None:
        """Count ``n`` into ``column`` of ``store``'s ``day``."""
        row = self.days.get((store, day))
        if row is None:  # not setdefault: that builds a new list on every call
            row = self.days[store, day] = [0] * len(COLUMNS)
        row[_INDEX[column]] += n

    def detail(self, store: str, day: int, metric: str, dim: str) -> None:
        """Count one into ``metric``'s ``dim`` (a campaign, channel or reason) that day."""
        key = (store, day, metric, dim[:64])
        self.details[key] = self.details.get(key, 0) + 1

    def write(self, cur: Cursor) -> None:
        """Add the deltas to the aggregates, in ``cur``'s transaction, and start afresh."""
        # Customers first, in sorted order (as every row below): two transactions never
        # take the same rows in opposite orders, so PostgreSQL has no deadlock to break.
        for customer, visits in sorted(self.redemptions.items()):
            cur.execute("INSERT INTO dash_customer(customer, redemptions) VALUES (?, ?)"
                        " ON CONFLICT (customer) DO UPDATE SET"
                        " redemptions=dash_customer.redemptions+excluded.redemptions"
                        " RETURNING redemptions", (customer, len(visits)))
            before = int(cur.fetchone()[0]) - len(visits)
            if before < 2 <= before + len(visits):  # the second one is among these
                store, day = visits[1 - before]
                self.add(store, day, "came_back")
        self.redemptions = {}
        if self.days:
            cur.executemany(_UPSERT_DAY, [(s, d, *row) for (s, d), row in
                                          sorted(self.days.items())])
            months: dict[tuple[str, int], list[int]] = {}
            chain: dict[tuple[int, int], list[int]] = {}
            for (s, d), row in self.days.items():
                _add(months.setdefault((s, d // 100), [0] * len(COLUMNS)), row)
                _add(chain.setdefault((d, shard(s)), [0] * len(COLUMNS)), row)
            cur.executemany(_UPSERT_MONTH, [(s, m, *row) for (s, m), row in
                                            sorted(months.items())])
            cur.executemany(_UPSERT_CHAIN, [(d, k, *row) for (d, k), row in
                                            sorted(chain.items())])
        if self.details:
            cur.executemany(_UPSERT_DETAIL, [(*k, n) for k, n in sorted(self.details.items())])
        self.days, self.details = {}, {}


def _add(total: list[int], row: list[int]) -> None:
    for i, n in enumerate(row):
        total[i] += n


def count_events(cur: Cursor, store: str, events: Iterable[Received],
                 tally: Tally | None = None) -> None:
    """Count newly stored events of ``store``.

    Call it in the transaction that inserts them, with only the events inserted now. With
    a ``tally`` the counts go there, for its owner to write before that transaction
    commits (a group commit writes its messages' figures once); else they are written now.
    """
    events = list(events)
    customers = _customers(cur, ((e.type, e.lifted) for e in events))  # none: no query
    own = tally is None
    tally = Tally() if tally is None else tally
    for e, day in zip(events, days_of(e.at for e in events), strict=True):
        _count(customers, tally, store, e.type, day, e.lifted)
    if own:
        tally.write(cur)


# Plain strings: an event's type is compared for every event counted.
_DECISION: Final = EventType.DECISION.value
_VOID: Final = EventType.VOID.value
_CARD_ISSUED: Final = EventType.CARD_ISSUED.value


def _coupon_id(kind: str, body: Lifted) -> str | None:
    """The coupon id of an accepted coupon redemption, else None."""
    if kind != _DECISION or body.accepted is not True or body.kind != "coupon":
        return None
    coupon_id = body.facts.coupon_id if body.facts is not None else None
    return coupon_id if isinstance(coupon_id, str) else None


def _customers(cur: Cursor, facts: Iterable[tuple[str, Lifted]]) -> dict[str, str]:
    """The web customer of each web coupon redeemed: one query per 500.

    ``facts``: each event's type and lifted body fields.
    """
    ids = sorted({c for kind, body in facts if (c := _coupon_id(kind, body)) is not None})
    found: dict[str, str] = {}
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        cur.execute("SELECT coupon_id, customer FROM web_coupon WHERE coupon_id IN"
                    f" ({', '.join('?' for _ in chunk)})", chunk)
        found.update((str(c), str(u)) for c, u in cur.fetchall())
    return found


def _count(customers: Mapping[str, str], tally: Tally, store: str, kind: str, day: int,
           body: Lifted) -> None:
    if kind == _CARD_ISSUED:
        tally.add(store, day, "printed")
    elif kind == _VOID and body.kind == "coupon":
        tally.add(store, day, "voided")
    elif kind == _DECISION:
        if body.accepted is not True:
            tally.add(store, day, "rejected")
            tally.detail(store, day, "reason", str(body.reason or "-"))
        elif body.kind == "pickup":
            tally.add(store, day, "pickups")
        elif body.kind == "coupon":
            channel = str((body.facts.channel if body.facts is not None else None) or "-")
            tally.add(store, day, "redeemed")
            tally.detail(store, day, "campaign", str(body.campaign_id or "-"))
            tally.detail(store, day, "channel", channel)
            if channel == "welcome":
                tally.add(store, day, "welcome")
            # a coupon not minted for a web customer (edge-hq issue coupon) has none
            customer = customers.get(_coupon_id(kind, body) or "")
            if customer is not None:
                tally.redemptions.setdefault(customer, []).append((store, day))


def count_claim(cur: Cursor, store: str, at: float) -> None:
    """Count a card claimed at ``at`` for ``store``, in the claim's transaction."""
    tally = Tally()
    tally.add(store, day_of(at), "claimed")
    tally.write(cur)


def rebuild(db: Database) -> int:
    """Recount every aggregate from the stored events and claims; returns events counted.

    One transaction: the dashboard shows the old figures until the new ones are whole.
    """
    counted = 0
    with db.tx() as cur:
        for table in ("dash_day", "dash_month", "dash_chain_day", "dash_detail",
                      "dash_customer"):
            cur.execute(f"DELETE FROM {table}")
        last = 0
        while True:
            # ingest order (id), so the second redemption is the same one ingest saw
            cur.execute("SELECT id, store, type, at, body FROM hq_event WHERE id>? ORDER BY id"
                        " LIMIT ?", (last, REBUILD_CHUNK))
            rows = cur.fetchall()
            if not rows:
                break
            # a body that is not a JSON object counts nothing (ingest stores none)
            events = [(str(store), str(kind), float(at), lifted)
                      for _id, store, kind, at, body in rows
                      if (lifted := lifted_of(str(body))) is not None]
            customers = _customers(cur, ((kind, lifted) for _s, kind, _at, lifted in events))
            tally = Tally()
            days = days_of(at for _s, _k, at, _l in events)
            for (store, kind, _at, lifted), day in zip(events, days, strict=True):
                _count(customers, tally, store, kind, day, lifted)
            tally.write(cur)
            counted += len(rows)
            last = int(rows[-1][0])
        cur.execute("SELECT store, claimed_at FROM web_card_claim")
        tally = Tally()
        for store, at in cur.fetchall():
            tally.add(str(store), day_of(float(at)), "claimed")
        tally.write(cur)
    return counted
