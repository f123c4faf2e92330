"""The store registry as the customer pages show it: names, places, nearest first."""

from __future__ import annotations

from hq.geo import great_circle_m
from hq.storeregistry import (
    Store,
    check_place,
    get_store,
    list_stores,
    put_store,
    remove_store,
)

# The registry itself is HQ's (hq/storeregistry.py), shared with order assignment; the pages
# read it through these names.
__all__ = ["Store", "check_place", "distance_km", "get_store", "list_stores", "nearest_first",
           "put_store", "remove_store"]


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
