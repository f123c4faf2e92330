"""HQ's store registry: one record per store, read by the customer pages and the assigner.

Each store has a name, an address, coordinates, its group's join link, opening hours per
weekday and pickup places per one-hour slot, kept in ``hq_store_registry`` (``hq/db.py``).
Loaded from a file (``edge-hq store import``: :func:`stores_from_body`, format in
``docs/hq.md``, "Store registry") or one store at a time (``edge-hq store set``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from edge.config import check_id
from hq.db import Cursor, Database
from hq.orders.assign import AssignError, Site, WeekHours

DAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
CLOSED: Final = "closed"
FIELDS: Final = frozenset({"id", "name", "address", "lat", "lon", "join_url", "hours",
                           "pickup_per_slot"})
_SPAN: Final = re.compile(r"(\d\d):(\d\d)-(\d\d):(\d\d)")
_COLUMNS: Final = "store, name, address, lat, lon, join_url, hours, pickup_per_slot"


class StoreFileError(ValueError):
    """A store record or registry file is wrong; the message names the store and field."""


@dataclass(frozen=True, slots=True)
class Store:
    """One store as HQ knows it.

    ``hours`` None: the store takes no assigned pickups (its hours are not known).
    """

    store: str
    name: str
    address: str = ""
    lat: float | None = None
    lon: float | None = None
    join_url: str = ""
    hours: WeekHours | None = None
    pickup_per_slot: int = 0

    def join_link(self) -> str:
        """The group join link with ``state`` = the store id.

        WeCom channel codes (渠道活码) hand ``state`` back with each join, so the join is
        counted for this store; other links ignore a parameter they do not know.
        """
        if not self.join_url:
            return ""
        parts = urlsplit(self.join_url)
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                 if k != "state"]
        query.append(("state", self.store))
        return urlunsplit(parts._replace(query=urlencode(query)))

    def to_json(self) -> dict[str, Any]:
        """The record in the registry file's form (``store list --json``)."""
        return {"id": self.store, "name": self.name, "address": self.address,
                "lat": self.lat, "lon": self.lon, "join_url": self.join_url,
                "hours": format_hours(self.hours), "pickup_per_slot": self.pickup_per_slot}


def check_place(lat: float | None, lon: float | None) -> None:
    """Raise ``ValueError`` unless both coordinates are given and in range, or neither."""
    if (lat is None) != (lon is None):
        raise ValueError("give both --lat and --lon, or neither")
    if lat is not None and lon is not None and not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise ValueError(f"coordinates {lat},{lon} are out of range")


def _minutes(hh: str, mm: str) -> int:
    return int(hh) * 60 + int(mm)


def parse_day(text: str) -> tuple[int, int] | None:
    """``07:00-21:00`` as minutes after midnight, or None for ``closed``.

    Raises:
        ValueError: neither form, or a time past 24:00 or a span that ends before it starts.
    """
    text = text.strip()
    if text == CLOSED:
        return None
    m = _SPAN.fullmatch(text)
    if not m or int(m[2]) > 59 or int(m[4]) > 59:
        raise ValueError(f"opening hours {text!r}: use HH:MM-HH:MM (e.g. 07:00-21:00) or "
                         f"{CLOSED}")
    span = (_minutes(m[1], m[2]), _minutes(m[3], m[4]))
    if not 0 <= span[0] < span[1] <= 24 * 60:
        raise ValueError(f"opening hours {text!r}: must open before it closes, within a day")
    return span


def parse_hours(value: object) -> WeekHours:
    """Opening hours from a registry file or the command line.

    ``"07:00-21:00"`` every day; seven comma-separated days, Monday first
    (``"closed,08:00-20:00,..."``, as :func:`format_hours` writes them); or a table of all
    seven days, ``{"mon": "closed", "tue": "08:00-20:00", ...}``.

    Raises:
        ValueError: another shape, a missing or unknown day, or a bad span.
    """
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(DAYS))
        missing = [d for d in DAYS if d not in value]
        if unknown or missing:
            raise ValueError(f"opening hours need exactly the days {', '.join(DAYS)} "
                             f"(unknown: {unknown}, missing: {missing})")
        texts = [value[d] for d in DAYS]
    elif isinstance(value, str):
        texts = value.split(",")
        if len(texts) == 1:
            texts *= 7
    else:
        raise ValueError(f"opening hours must be text or a table of days, not {value!r}")
    if len(texts) != 7 or not all(isinstance(t, str) for t in texts):
        raise ValueError(f"opening hours {value!r}: one span for every day, or seven "
                         "(Monday first)")
    try:
        return WeekHours(tuple(parse_day(t) for t in texts))
    except AssignError as exc:
        raise ValueError(str(exc)) from None


def format_hours(hours: WeekHours | None) -> str:
    """The stored form: one span if every day is the same, else seven; '' for none."""
    if hours is None:
        return ""
    texts = [CLOSED if d is None else f"{d[0] // 60:02d}:{d[0] % 60:02d}-"
             f"{d[1] // 60:02d}:{d[1] % 60:02d}" for d in hours.days]
    return texts[0] if len(set(texts)) == 1 else ",".join(texts)


def check_store(store: Store) -> None:
    """Raise ``ValueError`` naming what is wrong with ``store``'s record."""
    check_id("store id", store.store)
    if not store.name.strip():
        raise ValueError(f"store {store.store}: a name is needed")
    check_place(store.lat, store.lon)
    if store.join_url and urlsplit(store.join_url).scheme not in ("http", "https"):
        raise ValueError(f"join link {store.join_url!r} must be an http(s) URL")
    if store.pickup_per_slot < 0:
        raise ValueError(f"store {store.store}: pickup places per slot must be 0 or more")


def _upsert(cur: Cursor, store: Store, now: float) -> None:
    cur.execute(
        f"INSERT INTO hq_store_registry({_COLUMNS}, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (store) DO UPDATE SET"
        " name=excluded.name, address=excluded.address, lat=excluded.lat,"
        " lon=excluded.lon, join_url=excluded.join_url, hours=excluded.hours,"
        " pickup_per_slot=excluded.pickup_per_slot, updated_at=excluded.updated_at",
        (store.store, store.name, store.address, store.lat, store.lon, store.join_url,
         format_hours(store.hours), store.pickup_per_slot, now))


def put_store(db: Database, store: Store) -> None:
    """Add or replace a store's record.

    Raises:
        ValueError: a bad store id, name, coordinates, capacity, or a join link that is not
            http(s).
    """
    import_stores(db, [store])


def import_stores(db: Database, stores: Iterable[Store]) -> int:
    """Add or replace every store given, in one transaction (all or none); how many.

    Stores not given are left as they are.

    Raises:
        ValueError: a record is bad (checked for all before anything is written).
    """
    given = list(stores)
    for s in given:
        check_store(s)
    now = time.time()
    with db.tx() as cur:
        for s in given:
            _upsert(cur, s, now)
    return len(given)


def remove_store(db: Database, store_id: str) -> bool:
    """Remove a store's record; whether there was one."""
    with db.tx() as cur:
        cur.execute("DELETE FROM hq_store_registry WHERE store=?", (store_id,))
        return cur.rowcount > 0


def _row(r: tuple[Any, ...]) -> Store:
    store, name, address, lat, lon, join_url, hours, places = r
    return Store(str(store), str(name), str(address), lat, lon, str(join_url),
                 parse_hours(hours) if hours else None, int(places))


def list_stores(db: Database) -> list[Store]:
    """Every registered store, by id."""
    return [_row(r) for r in db.query(f"SELECT {_COLUMNS} FROM hq_store_registry"
                                      " ORDER BY store")]


def get_store(db: Database, store_id: str) -> Store | None:
    """One store's record, or None."""
    rows = db.query(f"SELECT {_COLUMNS} FROM hq_store_registry WHERE store=?", (store_id,))
    return _row(rows[0]) if rows else None


def sites(stores: Iterable[Store]) -> list[Site]:
    """The stores that take assigned pickups (placed, with opening hours), for the assigner."""
    return [Site(s.store, s.lat, s.lon, s.hours, s.pickup_per_slot) for s in stores
            if s.lat is not None and s.lon is not None and s.hours is not None]


def stores_from_body(data: dict[str, Any], where: str = "stores file") -> list[Store]:
    """The stores of a registry file's object (``hq.publishing.push.read_body`` reads it).

    Raises:
        StoreFileError: no ``stores`` list, a store id twice, or a bad record (named by its
            place in the list and its id, with the field).
    """
    items = data.get("stores")
    if not isinstance(items, list) or not items:
        raise StoreFileError(f"{where}: needs a non-empty 'stores' list")
    out = [_record(item, f"stores[{i}]") for i, item in enumerate(items)]
    ids = [s.store for s in out]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise StoreFileError(f"{where}: store id(s) {twice} listed twice")
    return out


def _record(item: object, where: str) -> Store:
    """One store of a registry file."""
    if not isinstance(item, dict):
        raise StoreFileError(f"{where}: a store is a table of fields, not {item!r}")
    sid = item.get("id")
    if isinstance(sid, str):
        where = f"{where} ({sid})"
    unknown = sorted(set(item) - FIELDS)
    if unknown:
        raise StoreFileError(f"{where}: unknown field(s) {unknown}; known: {sorted(FIELDS)}")
    try:
        for k in ("id", "name", "address", "join_url"):
            if not isinstance(item.get(k, ""), str):
                raise ValueError(f"{k} must be text")
        if "id" not in item or "name" not in item:
            raise ValueError("id and name are needed")
        place = [item.get(k) for k in ("lat", "lon")]
        if any(v is not None and (isinstance(v, bool) or not isinstance(v, int | float))
               for v in place):
            raise ValueError("lat and lon must be numbers (degrees)")
        places = item.get("pickup_per_slot", 0)
        if isinstance(places, bool) or not isinstance(places, int):
            raise ValueError("pickup_per_slot must be a whole number")
        hours = parse_hours(item["hours"]) if "hours" in item else None
        store = Store(item["id"], item["name"], item.get("address", ""),
                      None if place[0] is None else float(place[0]),
                      None if place[1] is None else float(place[1]),
                      item.get("join_url", ""), hours, places)
        check_store(store)
    except ValueError as exc:
        raise StoreFileError(f"{where}: {exc}") from None
    return store
