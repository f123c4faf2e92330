"""HQ's store registry as the customer pages show it: name, address, place, group join link."""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from edge.config import check_id
from hq.db import Database
from hq.geo import great_circle_m


@dataclass(frozen=True, slots=True)
class Store:
    """One store's public face."""

    store: str
    name: str
    address: str = ""
    lat: float | None = None
    lon: float | None = None
    join_url: str = ""

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


def check_place(lat: float | None, lon: float | None) -> None:
    """Raise ``ValueError`` unless both coordinates are given and in range, or neither."""
    if (lat is None) != (lon is None):
        raise ValueError("give both --lat and --lon, or neither")
    if lat is not None and lon is not None and not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise ValueError(f"coordinates {lat},{lon} are out of range")


def put_store(db: Database, store: Store) -> None:
    """Add or replace a store's record.

    Raises:
        ValueError: a bad store id or coordinates, or a join link that is not http(s).
    """
    check_id("store id", store.store)
    check_place(store.lat, store.lon)
    if store.join_url and urlsplit(store.join_url).scheme not in ("http", "https"):
        raise ValueError(f"join link {store.join_url!r} must be an http(s) URL")
    with db.tx() as cur:
        cur.execute(
            "INSERT INTO web_store(store, name, address, lat, lon, join_url, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (store) DO UPDATE SET"
            " name=excluded.name, address=excluded.address, lat=excluded.lat,"
            " lon=excluded.lon, join_url=excluded.join_url, updated_at=excluded.updated_at",
            (store.store, store.name, store.address, store.lat, store.lon, store.join_url,
             time.time()))


def remove_store(db: Database, store_id: str) -> bool:
    """Remove a store's record; whether there was one."""
    with db.tx() as cur:
        cur.execute("DELETE FROM web_store WHERE store=?", (store_id,))
        return cur.rowcount > 0


def list_stores(db: Database) -> list[Store]:
    """Every registered store, by id."""
    rows = db.query("SELECT store, name, address, lat, lon, join_url FROM web_store"
                    " ORDER BY store")
    return [Store(*r) for r in rows]


def get_store(db: Database, store_id: str) -> Store | None:
    """One store's record, or None."""
    rows = db.query("SELECT store, name, address, lat, lon, join_url FROM web_store"
                    " WHERE store=?", (store_id,))
    return Store(*rows[0]) if rows else None


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in kilometres (``hq.geo``)."""
    return great_circle_m(lat1, lon1, lat2, lon2) / 1000


def nearest_first(stores: list[Store], lat: float | None,
                  lon: float | None) -> list[tuple[Store, float | None]]:
    """Stores with their distance from (lat, lon), nearest first; unplaced stores last.

    Without a position the order is kept and no distance given.
    """
    if lat is None or lon is None:
        return [(s, None) for s in stores]
    placed = [(s, distance_km(lat, lon, s.lat, s.lon)) for s in stores
              if s.lat is not None and s.lon is not None]
    unplaced: list[tuple[Store, float | None]] = [(s, None) for s in stores if s.lat is None
                                                  or s.lon is None]
    return [*sorted(placed, key=lambda sd: sd[1]), *unplaced]
