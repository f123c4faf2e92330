"""Nearest-store assignment for orders that reach HQ without a store.

An order goes to the nearest store that is open for its whole pickup window and has a
place left in that pickup slot.

Distances are great-circle (haversine on a sphere of radius :data:`EARTH_RADIUS_M`), computed
with numpy for a block of orders against every store at once; each order then walks its
stores nearest first. Orders are taken in the sequence given, and each assignment uses up
one place of its store's slot, so an earlier order can fill a slot a later one wanted.

Ties: at equal distance the store whose id sorts first wins, so the result never depends on
the order stores were listed in.

A grid of cells as wide as the range keeps each order's distance block to the stores that
can be in range (a city's, not the chain's): at 2,000 stores in eight cities that is
several times fewer distances than every store, measured against a brute-force floor by
``bench/assign_orders.py``; the walk rarely goes past the first few stores.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from hq.geo import EARTH_RADIUS_M

DEFAULT_MAX_DISTANCE_M: Final = 15_000.0
DEFAULT_SLOT_S: Final = 3600
DEFAULT_TZ: Final = "Asia/Shanghai"
BLOCK: Final = 1024  # orders per distance block: 1024 x 2,000 stores x 8 bytes = 16 MB
NEAREST: Final = 8  # stores looked at from the partial sort before a full sort is needed

Floats = npt.NDArray[np.float64]


class AssignError(ValueError):
    """A store or order record is malformed; the message names it and the field."""


class Outcome(enum.StrEnum):
    """What happened to one order."""

    ASSIGNED = "assigned"
    NO_STORE_IN_RANGE = "no_store_in_range"  # no store within the maximum distance
    NONE_OPEN = "none_open"  # stores in range, none open for the whole pickup window
    ALL_FULL = "all_full"  # stores in range open, every one's slot already full


@dataclass(frozen=True, slots=True)
class WeekHours:
    """Opening hours, Monday first: (open, close) in minutes after local midnight, or None.

    None is closed that day. A pickup window must lie within one day's opening.
    """

    days: tuple[tuple[int, int] | None, ...]

    def __post_init__(self) -> None:
        """Check there are 7 days of sane intervals."""
        if len(self.days) != 7:
            raise AssignError(f"opening hours need 7 days (Monday first), got {len(self.days)}")
        for d in self.days:
            if d is not None and not 0 <= d[0] < d[1] <= 24 * 60:
                raise AssignError(f"opening interval {d} is not within a day (minutes 0-1440)")

    @classmethod
    def daily(cls, open_min: int, close_min: int, closed: Iterable[int] = ()) -> WeekHours:
        """The same hours every day, except the weekdays in ``closed`` (0 = Monday)."""
        shut = set(closed)
        return cls(tuple(None if d in shut else (open_min, close_min) for d in range(7)))


@dataclass(frozen=True, slots=True)
class Site:
    """A store as assignment sees it: where, when open, and pickups per slot."""

    store_id: str
    lat: float
    lon: float
    hours: WeekHours
    slot_capacity: int

    def __post_init__(self) -> None:
        """Check coordinates and capacity."""
        if not (-90.0 <= self.lat <= 90.0 and -180.0 <= self.lon <= 180.0):
            raise AssignError(f"store {self.store_id}: coordinates ({self.lat}, {self.lon}) "
                              "are not latitude/longitude in degrees")
        if self.slot_capacity < 0:
            raise AssignError(f"store {self.store_id}: slot capacity {self.slot_capacity} < 0")


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """An order without a store: the customer's position and the pickup window (epoch s)."""

    order_id: str
    lat: float
    lon: float
    window_start: int
    window_end: int

    def __post_init__(self) -> None:
        """Check coordinates and the window."""
        if not (-90.0 <= self.lat <= 90.0 and -180.0 <= self.lon <= 180.0):
            raise AssignError(f"order {self.order_id}: coordinates ({self.lat}, {self.lon}) "
                              "are not latitude/longitude in degrees")
        if self.window_end <= self.window_start:
            raise AssignError(f"order {self.order_id}: pickup window ends before it starts")


@dataclass(frozen=True, slots=True)
class Assignment:
    """Where one order went, and why not when it went nowhere."""

    order_id: str
    outcome: Outcome
    store_id: str | None = None
    distance_m: float | None = None
    slot: int | None = None  # the slot's start (epoch s) whose place the order took


SlotKey = tuple[str, int]  # (store id, slot start epoch s)


def distances_m(lat: Floats | float, lon: Floats | float, site_lat_r: Floats,
                site_lon_r: Floats, site_cos: Floats) -> Floats:
    """Great-circle distances in metres from points (degrees) to sites (radians).

    ``site_cos`` holds the cosines of the sites' latitudes, computed once. Broadcasts: a
    column of points against a row of sites gives a matrix; one point gives a row.
    """
    lat_r = np.radians(lat)
    lon_r = np.radians(lon)
    dlat = np.subtract(site_lat_r, lat_r)
    dlon = np.subtract(site_lon_r, lon_r)
    h = np.sin(dlat * 0.5) ** 2 + np.cos(lat_r) * site_cos * np.sin(dlon * 0.5) ** 2
    out: Floats = (2.0 * EARTH_RADIUS_M) * np.arcsin(np.sqrt(np.minimum(h, 1.0)))
    return out


class Stores:
    """The store set prepared once for many assignments (sorted by id: ties go to the first)."""

    def __init__(self, sites: Iterable[Site], tz: str = DEFAULT_TZ,
                 slot_s: int = DEFAULT_SLOT_S) -> None:
        """Prepare ``sites``; windows are read in ``tz``, slots are ``slot_s`` long."""
        self.sites = sorted(sites, key=lambda s: s.store_id)
        ids = [s.store_id for s in self.sites]
        if len(set(ids)) != len(ids):
            raise AssignError("a store id is listed twice")
        if slot_s <= 0 or 86400 % slot_s:
            raise AssignError(f"slot length {slot_s} s must divide a day")
        self.tz = ZoneInfo(tz)
        self.slot_s = slot_s
        self.lat_r: Floats = np.radians(np.array([s.lat for s in self.sites], dtype=np.float64))
        self.lon_r: Floats = np.radians(np.array([s.lon for s in self.sites], dtype=np.float64))
        self.cos: Floats = np.cos(self.lat_r)
        # Plain lists for the per-order walk (indexing a list is ~10x cheaper than numpy).
        self.ids = [s.store_id for s in self.sites]
        self.capacity = [s.slot_capacity for s in self.sites]
        self.opening = [[(d[0] * 60, d[1] * 60) if (d := s.hours.days[wd]) else None
                         for s in self.sites] for wd in range(7)]
        self._windows: dict[tuple[int, int], tuple[int, int, int, int] | None] = {}

    def __len__(self) -> int:
        """How many stores."""
        return len(self.sites)

    def window(self, o: OrderRequest) -> tuple[int, int, int, int] | None:
        """The order's window in local time, or None when it runs past the day's end.

        (weekday, start and end in seconds after local midnight, slot start epoch s); no
        store is open across midnight.
        """
        key = (o.window_start, o.window_end)
        if key in self._windows:  # orders share a handful of windows: read each once
            return self._windows[key]
        midnight = datetime.fromtimestamp(o.window_start, self.tz).replace(
            hour=0, minute=0, second=0, microsecond=0)
        start_s = o.window_start - int(midnight.timestamp())
        end_s = start_s + (o.window_end - o.window_start)
        found = None if end_s > 86400 else (midnight.weekday(), start_s, end_s,
                                             o.window_start - start_s % self.slot_s)
        self._windows[key] = found
        return found

    def is_open(self, i: int, weekday: int, start_s: int, end_s: int) -> bool:
        """Whether store ``i`` is open for the whole window (seconds after local midnight)."""
        day = self.opening[weekday][i]
        return day is not None and day[0] <= start_s and end_s <= day[1]


def assign(stores: Stores, orders: Sequence[OrderRequest],
           max_distance_m: float = DEFAULT_MAX_DISTANCE_M,
           load: Mapping[SlotKey, int] | None = None) -> list[Assignment]:
    """Assign ``orders`` in sequence, each to its nearest open store with a place left.

    ``load``: places already taken per (store, slot), e.g. orders assigned earlier; not
    changed (the returned assignments say what was taken now).
    """
    taken: dict[SlotKey, int] = dict(load or {})
    lat = np.array([o.lat for o in orders], dtype=np.float64)
    lon = np.array([o.lon for o in orders], dtype=np.float64)
    heads = _nearest(stores, lat, lon, max_distance_m)
    out: list[Assignment] = []
    for n, o in enumerate(orders):
        head, pool = heads[n]
        seen = _Seen()
        found, settled = _walk(stores, o, head, max_distance_m, taken, seen)
        if not settled and len(head) < len(pool):
            # Past the partial sort: every store of the pool, nearest first.
            seen = _Seen()
            d = distances_m(o.lat, o.lon, stores.lat_r[pool], stores.lon_r[pool],
                            stores.cos[pool])
            found, _ = _walk(stores, o, sorted(zip(d.tolist(), pool.tolist(), strict=True)),
                             max_distance_m, taken, seen)
        out.append(found or _unassigned(o, seen))
    return out


Pool = npt.NDArray[np.intp]


def _nearest(stores: Stores, lat: Floats, lon: Floats, max_distance_m: float
             ) -> list[tuple[list[tuple[float, int]], Pool]]:
    """For each order: its surely-nearest stores and the pool they were chosen from.

    The nearest come as sorted (distance, index) pairs; the pool holds every store that can
    be within range. Capacity plays no part here, so orders are grouped by grid cell and
    measured a block at a time; only the walk after this is sequential.
    """
    out: list[tuple[list[tuple[float, int]], Pool]] = [([], np.empty(0, np.intp))] * len(lat)
    for pool, members in _pools(stores, lat, lon, max_distance_m):
        k = min(NEAREST, len(pool))
        for b in range(0, len(members), BLOCK):
            rows = members[b:b + BLOCK]
            if k == 0:
                continue
            dist = distances_m(lat[rows, None], lon[rows, None], stores.lat_r[pool],
                               stores.lon_r[pool], stores.cos[pool])
            near = (np.argpartition(dist, k - 1, axis=1)[:, :k] if k < len(pool)
                    else np.broadcast_to(np.arange(len(pool)), dist.shape))
            near_d = np.take_along_axis(dist, near, axis=1).tolist()
            near_i = pool[near].tolist()
            for r, row in enumerate(rows.tolist()):
                # Nearest first, ties to the lower index (= the store id that sorts first).
                head = sorted(zip(near_d[r], near_i[r], strict=True))
                if k < len(pool):
                    # Every store outside the partial sort is at least as far as the
                    # farthest in it: only those strictly nearer are surely first.
                    head = [p for p in head if p[0] < head[-1][0]]
                out[row] = (head, pool)
    return out


def _pools(stores: Stores, lat: Floats, lon: Floats, max_distance_m: float
           ) -> Iterable[tuple[Pool, Pool]]:
    """(store pool, order rows) groups over a grid of cells ``max_distance_m`` wide or more.

    An order's pool is the stores of its cell and the eight around it: every store within
    range. Where a grid cannot be trusted (near a pole or the antimeridian), one pool of
    every store.
    """
    n = len(stores)
    everything = np.arange(n)
    lat_all = np.concatenate([np.degrees(stores.lat_r), lat])
    lon_all = np.concatenate([np.degrees(stores.lon_r), lon])
    if n == 0 or len(lat) == 0 or np.abs(lat_all).max() > 80 or np.abs(lon_all).max() > 170:
        yield everything, np.arange(len(lat))
        return
    step = max_distance_m / (EARTH_RADIUS_M * np.pi / 180) * 1.001  # degrees of latitude
    step_lon = step / float(np.cos(np.radians(np.abs(lat_all).max())))
    s_cell = np.stack([np.floor(np.degrees(stores.lat_r) / step),
                       np.floor(np.degrees(stores.lon_r) / step_lon)], axis=1).astype(np.int64)
    o_cell = np.stack([np.floor(lat / step), np.floor(lon / step_lon)], axis=1).astype(np.int64)
    by_cell: dict[tuple[int, int], list[int]] = {}
    for i, (a, b) in enumerate(s_cell.tolist()):
        by_cell.setdefault((a, b), []).append(i)
    groups: dict[tuple[int, int], list[int]] = {}
    for row, (a, b) in enumerate(o_cell.tolist()):
        groups.setdefault((a, b), []).append(row)
    for (a, b), rows in groups.items():
        pool = sorted(i for da in (-1, 0, 1) for db in (-1, 0, 1)
                      for i in by_cell.get((a + da, b + db), ()))
        yield np.array(pool, dtype=np.intp), np.array(rows, dtype=np.intp)


@dataclass(slots=True)
class _Seen:
    in_range: bool = False
    open: bool = False


def _walk(stores: Stores, o: OrderRequest, candidates: Iterable[tuple[float, int]],
          max_distance_m: float, taken: dict[SlotKey, int], seen: _Seen
          ) -> tuple[Assignment | None, bool]:
    """Try ``(distance, store index)`` pairs in order; (the assignment or None, final?)."""
    when = stores.window(o)
    for d, i in candidates:
        if d > max_distance_m:
            return None, True
        seen.in_range = True
        if when is None:
            continue
        day = stores.opening[when[0]][i]
        if day is None or not (day[0] <= when[1] and when[2] <= day[1]):
            continue
        seen.open = True
        key = (stores.ids[i], when[3])
        used = taken.get(key, 0)
        if used >= stores.capacity[i]:
            continue
        taken[key] = used + 1
        return Assignment(o.order_id, Outcome.ASSIGNED, stores.ids[i], d, when[3]), True
    return None, False


def _unassigned(o: OrderRequest, seen: _Seen) -> Assignment:
    if not seen.in_range:
        return Assignment(o.order_id, Outcome.NO_STORE_IN_RANGE)
    return Assignment(o.order_id, Outcome.ALL_FULL if seen.open else Outcome.NONE_OPEN)
