"""The dashboard's figures: plain SQL over the aggregates (``hq.reports.aggregates``).

Every function takes a :class:`Days` range and, where it makes sense, one store (None: the
whole chain). The funnel, campaign and rejection figures read only the aggregates: whole
months of a range from ``dash_month``, the days around them from ``dash_day`` (a year of
2,000 stores is some 80,000 rows, not 730,000 day rows or millions of events);
pickups read the orders HQ pushed (``hq_order``) and their collections (``hq_event`` by
code); boxes read the device state ``hq.reports.stores`` reads.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass, field
from typing import Final

from edge.events import EventType
from hq.db import Database
from hq.reports.aggregates import COLUMNS
from hq.reports.stores import DeviceStatus, device_statuses
from sync.contract import DataKind

FUNNEL: Final = ("printed", "claimed", "welcome", "came_back")
_AT: Final = {c: i for i, c in enumerate(COLUMNS)}
_SUMS: Final = ", ".join(f"SUM({c})" for c in COLUMNS)


class RangeError(ValueError):
    """A date range that cannot be read; the message says why."""


@dataclass(frozen=True, slots=True)
class Days:
    """An inclusive range of local days, ``YYYYMMDD`` integers."""

    first: int
    last: int

    @classmethod
    def parse(cls, first: str, last: str) -> Days:
        """A range from two ``YYYY-MM-DD`` texts.

        Raises:
            RangeError: a text is not a date, the range runs backwards or over 3 years.
        """
        try:
            a, b = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
        except ValueError:
            raise RangeError(f"dates are YYYY-MM-DD: {first[:20]!r}, {last[:20]!r}") from None
        if b < a:
            raise RangeError("the range ends before it starts")
        if (b - a).days > 3 * 366:
            raise RangeError("a range is at most 3 years")
        return cls(_num(a), _num(b))

    @classmethod
    def last_days(cls, n: int, today: dt.date | None = None) -> Days:
        """The ``n`` days up to and including today (local)."""
        today = today or dt.date.today()
        return cls(_num(today - dt.timedelta(days=n - 1)), _num(today))

    def __len__(self) -> int:
        """How many days the range holds."""
        return (_date(self.last) - _date(self.first)).days + 1

    def iso(self) -> tuple[str, str]:
        """The first and last day as ``YYYY-MM-DD``."""
        return iso_day(self.first), iso_day(self.last)

    def epoch(self) -> tuple[float, float]:
        """Local midnight starting the first day, and ending the last."""
        a = _date(self.first)
        b = _date(self.last) + dt.timedelta(days=1)
        return (time.mktime(a.timetuple()), time.mktime(b.timetuple()))


def _num(d: dt.date) -> int:
    return d.year * 10000 + d.month * 100 + d.day


def _date(day: int) -> dt.date:
    return dt.date(day // 10000, day // 100 % 100, day % 100)


def iso_day(day: int) -> str:
    """``YYYYMMDD`` as ``YYYY-MM-DD``."""
    return f"{day // 10000:04d}-{day // 100 % 100:02d}-{day % 100:02d}"


@dataclass(frozen=True, slots=True)
class Totals:
    """The aggregate columns summed over some rows (``COLUMNS`` order)."""

    key: str  # a store id or a YYYYMMDD day, by what they were grouped
    values: tuple[int, ...]

    def get(self, column: str) -> int:
        """One column's sum."""
        return self.values[_AT[column]]


@dataclass(frozen=True, slots=True)
class Step:
    """One funnel step: its count, its share of the step before and of the first."""

    name: str
    count: int
    of_previous: float | None  # None: the step before is 0 (or this is the first)
    of_first: float | None


def funnel(totals: Totals) -> list[Step]:
    """The four funnel steps of ``totals``."""
    steps: list[Step] = []
    first = totals.get(FUNNEL[0])
    previous: int | None = None
    for name in FUNNEL:
        n = totals.get(name)
        steps.append(Step(name, n, None if not previous else n / previous,
                          None if not first or previous is None else n / first))
        previous = n
    return steps


def _where(days: Days, store: str | None) -> tuple[str, tuple[object, ...]]:
    if store is None:
        return "day BETWEEN ? AND ?", (days.first, days.last)
    return "store=? AND day BETWEEN ? AND ?", (store, days.first, days.last)


def _totals(key: object, row: tuple[object, ...]) -> Totals:
    # SQLite sums to int, PostgreSQL to Decimal (or NULL over no rows)
    return Totals(str(key), tuple(v if type(v) is int else int(str(v or 0)) for v in row))


def by_day(db: Database, days: Days, store: str | None = None) -> list[Totals]:
    """The aggregates per day (days with nothing left out), oldest first."""
    where, params = _where(days, store)
    table = "dash_day" if store is not None else "dash_chain_day"  # the chain's own rows
    rows = db.query(f"SELECT day, {_SUMS} FROM {table} WHERE {where} GROUP BY day"
                    " ORDER BY day", params)
    return [_totals(r[0], r[1:]) for r in rows]


def _split(days: Days) -> tuple[list[tuple[int, int]], tuple[int, int] | None]:
    """The range as its whole months (``YYYYMM`` first and last) and the days around them."""
    a, b = _date(days.first), _date(days.last)
    start = a if a.day == 1 else (a.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    after = b + dt.timedelta(days=1)
    end = after if after.day == 1 else b.replace(day=1)  # the day after the last whole month
    if start >= end:
        return [(days.first, days.last)], None
    parts = []
    if a < start:
        parts.append((days.first, _num(start - dt.timedelta(days=1))))
    if end <= b:
        parts.append((_num(end), days.last))
    last = end - dt.timedelta(days=1)
    return parts, (start.year * 100 + start.month, last.year * 100 + last.month)


def _rolled(db: Database, days: Days, store: str | None, key_day: str,
            key_month: str) -> list[Totals]:
    """Sums grouped by a key, whole months read from ``dash_month``, the rest by day."""
    cols = ", ".join(COLUMNS)
    only = "" if store is None else "store=? AND "
    parts, params = [], []
    day_parts, months = _split(days)
    for lo, hi in day_parts:
        parts.append(f"SELECT {key_day} AS k, {cols} FROM dash_day WHERE {only}"
                     "day BETWEEN ? AND ?")
        params += [*([store] if store else []), lo, hi]
    if months is not None:
        parts.append(f"SELECT {key_month} AS k, {cols} FROM dash_month WHERE {only}"
                     "month BETWEEN ? AND ?")
        params += [*([store] if store else []), *months]
    rows = db.query(f"SELECT k, {_SUMS} FROM ({' UNION ALL '.join(parts)}) u GROUP BY k"
                    " ORDER BY k", params)
    return [_totals(r[0], r[1:]) for r in rows]


def by_store(db: Database, days: Days, store: str | None = None) -> list[Totals]:
    """The aggregates per store, by store id."""
    return _rolled(db, days, store, "store", "store")


def by_month(db: Database, days: Days, store: str | None = None) -> list[Totals]:
    """The aggregates per month (``YYYYMM``) of the range, oldest first."""
    if store is None:  # the chain's days are few rows: summed by month as they are
        rows = db.query(f"SELECT day / 100, {_SUMS} FROM dash_chain_day WHERE day BETWEEN ?"
                        " AND ? GROUP BY day / 100 ORDER BY day / 100", (days.first, days.last))
        return [_totals(r[0], r[1:]) for r in rows]
    return _rolled(db, days, store, "day / 100", "month")


def total(rows: list[Totals], key: str = "") -> Totals:
    """The sum of per-day or per-store totals."""
    return Totals(key, tuple(sum(t.values[i] for t in rows) for i in range(len(COLUMNS))))


def details(db: Database, days: Days, metric: str,
            store: str | None = None) -> list[tuple[str, int]]:
    """A breakdown (``campaign``, ``channel``, ``reason``): (value, count), biggest first."""
    where, params = _where(days, store)
    rows = db.query(f"SELECT dim, SUM(n) FROM dash_detail WHERE metric=? AND {where}"
                    " GROUP BY dim ORDER BY SUM(n) DESC, dim", (metric, *params))
    return [(str(d), int(n)) for d, n in rows]


@dataclass(frozen=True, slots=True)
class CampaignUse:
    """A campaign's redemptions in the range and its budget (web campaigns only)."""

    campaign_id: str
    name: str
    redeemed: int
    issued: int | None  # coupons handed out so far (web campaigns)
    budget: int | None  # 0: no budget; None: not a web campaign


def campaigns(db: Database, days: Days, store: str | None = None) -> list[CampaignUse]:
    """Redemptions per campaign in the range, with each web campaign's budget used."""
    known = {str(c): (str(n), int(i), int(b)) for c, n, i, b in db.query(
        "SELECT campaign_id, name, issued, budget FROM web_campaign")}
    out = []
    for campaign_id, n in details(db, days, "campaign", store):
        name, issued, budget = known.get(campaign_id, ("", None, None))
        out.append(CampaignUse(campaign_id, name, n, issued, budget))
    return out


@dataclass(slots=True)
class StorePickups:
    """A store's pickup orders whose window ended in the range (or ends in it)."""

    store: str
    assigned: int = 0
    on_time: int = 0
    late: int = 0
    not_collected: int = 0
    waiting: int = 0  # the window has not ended yet
    cancelled: int = 0
    online_share: float | None = None  # collected pickups / all accepted scans (dash_day)


def pickups(db: Database, days: Days, store: str | None = None,
            now: float | None = None) -> list[StorePickups]:
    """Per store: orders assigned (pushed), collected on time or late, not collected.

    An order is counted in the range its pickup window ends in; collected is the first
    accepted scan of its pickup code (``hq_event``), late when after the window.
    """
    now = time.time() if now is None else now
    start, end = days.epoch()
    sql = ("SELECT o.store, o.window_end, o.body, (SELECT MIN(e.at) FROM hq_event e WHERE"
           " e.code_id='P:' || o.order_id AND e.store=o.store AND e.type=? AND e.accepted=1)"
           " FROM hq_order o WHERE o.window_end>=? AND o.window_end<?")
    params: tuple[object, ...] = (EventType.DECISION.value, int(start), int(end))
    if store is not None:
        sql += " AND o.store=?"
        params += (store,)
    out: dict[str, StorePickups] = {}
    for s, window_end, body, collected in db.query(sql, params):
        row = out.setdefault(str(s), StorePickups(str(s)))
        row.assigned += 1
        status = json.loads(body).get("status", "waiting")
        if collected is not None:
            if float(collected) <= float(window_end):
                row.on_time += 1
            else:
                row.late += 1
        elif status == "cancelled":
            row.cancelled += 1
        elif float(window_end) < now:
            row.not_collected += 1
        else:
            row.waiting += 1
    for t in by_store(db, days, store):
        if t.key in out:
            scans = t.get("redeemed") + t.get("pickups")
            out[t.key].online_share = t.get("pickups") / scans if scans else None
    return [out[s] for s in sorted(out)]


@dataclass(slots=True)
class Box:
    """One box's state on the boxes page, with how much trouble it is in."""

    store: str
    status: DeviceStatus
    clock_trusted: bool | None
    open_gaps: int = 0  # seqs missing
    conflicts: int = 0  # coupons over their limit involving the store
    problems: list[str] = field(default_factory=list)

    @property
    def trouble(self) -> int:
        """How many things are wrong (the page lists the most first)."""
        return len(self.problems)


def boxes(db: Database, store: str | None = None, now: float | None = None,
          stale_s: float = 600.0) -> list[Box]:
    """Every box (of ``store``), the ones in trouble first.

    Trouble: offline or unheard for ``stale_s``, a backlog, the outbox alarm, an untrusted
    clock, HQ's latest config not applied, missing sequence numbers, coupon conflicts.
    """
    now = time.time() if now is None else now
    gaps = {str(d): int(m) for d, m in db.query(
        "SELECT device, SUM(missing) FROM hq_gap WHERE missing>0 GROUP BY device")}
    conflicts: dict[str, int] = {}
    for (stores,) in db.query("SELECT stores FROM hq_conflict"):
        for s in str(stores).split(","):
            conflicts[s] = conflicts.get(s, 0) + 1
    pushed = {str(s): int(v) for s, v in db.query(
        "SELECT store, version FROM hq_version WHERE kind=?", (DataKind.CONFIG.value,))}
    out: list[Box] = []
    for s, d in device_statuses(db):
        if store is not None and s != store:
            continue
        box = Box(s, d, d.clock_trusted, gaps.get(d.device, 0), conflicts.get(s, 0))
        if d.state != "online":
            box.problems.append("offline")
        elif d.last_seen is None or now - d.last_seen > stale_s:
            box.problems.append("silent")
        if d.backlog:
            box.problems.append("backlog")
        if d.alarm:
            box.problems.append("alarm")
        if box.clock_trusted is False:
            box.problems.append("clock")
        given = pushed.get(s, 0)
        if given and (d.reported_version or 0) < given:
            box.problems.append("config")  # HQ's latest config is not applied yet
        if box.open_gaps:
            box.problems.append("gaps")
        if box.conflicts:
            box.problems.append("conflicts")
        out.append(box)
    out.sort(key=lambda b: (-b.trouble, b.store, b.status.device))
    return out
