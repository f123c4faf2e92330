"""Nearest-store assignment (hq/orders/assign.py) on twenty real Hangzhou stores."""

from __future__ import annotations

import dataclasses
import random
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from hq.orders.assign import (
    NEAREST,
    AssignError,
    Assignment,
    OrderRequest,
    Outcome,
    Site,
    Stores,
    WeekHours,
    assign,
    distances_m,
)
from tests.stores_hangzhou import sites

TZ = ZoneInfo("Asia/Shanghai")
# Monday 2026-12-07, 10:00-11:00 local time.
MON_10 = int(datetime(2026, 12, 7, 10, 0, tzinfo=TZ).timestamp())
WEST_LAKE = (30.2586, 120.1493)  # a few hundred metres from HZ01-XIHU


def order(oid: str, lat: float, lon: float, start: int = MON_10, hours: float = 1.0
          ) -> OrderRequest:
    return OrderRequest(oid, lat, lon, start, start + int(hours * 3600))


def only(result: list[Assignment]) -> Assignment:
    assert len(result) == 1
    return result[0]


def test_an_order_goes_to_the_nearest_open_store() -> None:
    """GIVEN twenty stores open all day WHEN an order at West Lake comes in
    THEN it goes to the West Lake store, about 60 m away, in the 10:00 slot."""
    a = only(assign(Stores(sites()), [order("O1", *WEST_LAKE)]))
    assert (a.outcome, a.store_id) == (Outcome.ASSIGNED, "HZ01-XIHU")
    assert a.distance_m is not None and 30 < a.distance_m < 100
    assert a.slot == MON_10


def test_great_circle_distance_matches_a_known_figure() -> None:
    """GIVEN Hangzhou East station and West Lake WHEN their distance is computed
    THEN it is the great-circle figure (about 6.9 km), symmetric."""
    s = Stores(sites())
    east = s.sites.index(next(x for x in s.sites if x.store_id == "HZ03-EASTSTN"))
    lake = s.sites.index(next(x for x in s.sites if x.store_id == "HZ01-XIHU"))
    d = distances_m(s.sites[east].lat, s.sites[east].lon, s.lat_r, s.lon_r, s.cos)
    assert 6_700 < d[lake] < 7_100
    back = distances_m(s.sites[lake].lat, s.sites[lake].lon, s.lat_r, s.lon_r, s.cos)
    assert back[east] == pytest.approx(d[lake], rel=1e-12)


def test_a_tie_goes_to_the_store_id_that_sorts_first_whatever_the_listing() -> None:
    """GIVEN two stores at the very same place WHEN an order is nearest to both
    THEN the store whose id sorts first gets it, in either listing order."""
    twins = [Site("B-TWIN", 30.26, 120.15, WeekHours.daily(0, 1440), 5),
             Site("A-TWIN", 30.26, 120.15, WeekHours.daily(0, 1440), 5)]
    for listing in (twins, twins[::-1]):
        assert only(assign(Stores(listing), [order("O", 30.27, 120.16)])).store_id == "A-TWIN"


def test_a_closed_store_is_passed_over_for_the_next_nearest() -> None:
    """GIVEN the West Lake store closed on Mondays WHEN a Monday order comes in there
    THEN it goes to the next nearest open store, and on Tuesday to West Lake again."""
    stores = [dataclasses.replace(s, hours=WeekHours.daily(7 * 60, 21 * 60, closed=[0]))
              if s.store_id == "HZ01-XIHU" else s for s in sites()]
    st = Stores(stores)
    monday = only(assign(st, [order("O1", *WEST_LAKE)]))
    assert monday.outcome is Outcome.ASSIGNED and monday.store_id == "HZ15-HUBIN"
    tuesday = only(assign(st, [order("O2", *WEST_LAKE, start=MON_10 + 86400)]))
    assert tuesday.store_id == "HZ01-XIHU"


def test_a_window_outside_opening_hours_is_not_open() -> None:
    """GIVEN stores open 07:00-21:00 WHEN a pickup window runs 20:30-21:30, or 06:30-07:30
    THEN no store is open for it; 20:00-21:00 fits."""
    st = Stores(sites())
    late = MON_10 + int(10.5 * 3600)
    assert only(assign(st, [order("O1", *WEST_LAKE, start=late)])).outcome is Outcome.NONE_OPEN
    early = MON_10 - int(3.5 * 3600)
    assert only(assign(st, [order("O2", *WEST_LAKE, start=early)])).outcome is Outcome.NONE_OPEN
    fits = only(assign(st, [order("O3", *WEST_LAKE, start=MON_10 + 10 * 3600)]))
    assert fits.store_id == "HZ01-XIHU"


def test_a_window_across_midnight_is_not_open_anywhere() -> None:
    """GIVEN stores open around the clock WHEN a window runs 23:30-00:30
    THEN it is refused as none open (no store is open across a day's end)."""
    st = Stores(sites(hours=WeekHours.daily(0, 1440)))
    start = MON_10 + int(13.5 * 3600)
    assert only(assign(st, [order("O", *WEST_LAKE, start=start)])).outcome is Outcome.NONE_OPEN


def test_a_full_slot_sends_the_next_order_further_and_the_next_slot_is_free() -> None:
    """GIVEN one pickup per slot per store WHEN three orders at West Lake want 10:00 and a
    fourth wants 11:00 THEN they fill West Lake, then Hubin, then the next nearest, and the
    11:00 one is at West Lake again."""
    st = Stores(sites(capacity=1))
    got = assign(st, [order(f"O{i}", *WEST_LAKE) for i in range(3)]
                 + [order("O-11", *WEST_LAKE, start=MON_10 + 3600)])
    assert [a.store_id for a in got] == ["HZ01-XIHU", "HZ15-HUBIN", "HZ16-HUANGLONG",
                                         "HZ01-XIHU"]
    assert len({a.slot for a in got[:3]}) == 1 and got[3].slot == MON_10 + 3600


def test_places_already_taken_count() -> None:
    """GIVEN West Lake's 10:00 slot already full from earlier assignments
    WHEN an order wants it THEN it goes to the next nearest."""
    a = only(assign(Stores(sites(capacity=2)), [order("O", *WEST_LAKE)],
                    load={("HZ01-XIHU", MON_10): 2}))
    assert a.store_id == "HZ15-HUBIN"


def test_every_store_in_range_full_is_all_full() -> None:
    """GIVEN no pickup places at all WHEN an order comes in THEN it is all_full."""
    assert only(assign(Stores(sites(capacity=0)), [order("O", *WEST_LAKE)])).outcome \
        is Outcome.ALL_FULL


def test_no_store_in_range() -> None:
    """GIVEN the Hangzhou stores and a 15 km range WHEN an order comes from Shanghai
    THEN it is no_store_in_range; with no stores at all, likewise."""
    shanghai = order("O", 31.2304, 121.4737)
    assert only(assign(Stores(sites()), [shanghai])).outcome is Outcome.NO_STORE_IN_RANGE
    assert only(assign(Stores([]), [shanghai])).outcome is Outcome.NO_STORE_IN_RANGE


@pytest.mark.parametrize(("make", "message"), [
    (lambda: Site("S", 120.1, 30.2, WeekHours.daily(0, 60), 1), "latitude/longitude"),
    (lambda: Site("S", 30.2, 120.1, WeekHours.daily(0, 60), -1), "capacity"),
    (lambda: WeekHours(((0, 60),) * 6), "7 days"),
    (lambda: WeekHours.daily(600, 500), "within a day"),
    (lambda: OrderRequest("O", 30.2, 120.1, 100, 100), "ends before it starts"),
    (lambda: Stores([Site("S", 30.2, 120.1, WeekHours.daily(0, 60), 1)] * 2), "twice"),
])
def test_bad_records_are_refused_by_name(make: object, message: str) -> None:
    """GIVEN a malformed store or order WHEN it is built THEN AssignError names the problem."""
    with pytest.raises(AssignError, match=message):
        make()  # type: ignore[operator]


def reference(stores: Stores, orders: list[OrderRequest], max_d: float) -> list[Assignment]:
    """The rule written plainly: every store, sorted by (distance, id), first that fits."""
    taken: dict[tuple[str, int], int] = {}
    out = []
    for o in orders:
        d = distances_m(o.lat, o.lon, stores.lat_r, stores.lon_r, stores.cos)
        when = stores.window(o)
        seen_in = seen_open = False
        got: Assignment | None = None
        for i in sorted(range(len(stores)), key=lambda i: (float(d[i]), i)):
            if d[i] > max_d:
                break
            seen_in = True
            if when is None or not stores.is_open(i, when[0], when[1], when[2]):
                continue
            seen_open = True
            site = stores.sites[i]
            if taken.get((site.store_id, when[3]), 0) >= site.slot_capacity:
                continue
            taken[(site.store_id, when[3])] = taken.get((site.store_id, when[3]), 0) + 1
            got = Assignment(o.order_id, Outcome.ASSIGNED, site.store_id, float(d[i]), when[3])
            break
        out.append(got or Assignment(o.order_id, Outcome.NO_STORE_IN_RANGE if not seen_in
                                     else Outcome.ALL_FULL if seen_open else Outcome.NONE_OPEN))
    return out


def test_many_orders_match_the_plain_rule_including_ties_past_the_partial_sort() -> None:
    """GIVEN the twenty stores plus a ring of twelve stores at one spot (more ties than the
    partial sort holds), small slots and some closed days
    WHEN 3,000 random orders across the city are assigned in one go
    THEN every assignment equals the plain rule's, and all four outcomes occur."""
    rng = random.Random(7)
    base = sites(capacity=3)
    base = [dataclasses.replace(s, hours=WeekHours.daily(8 * 60, 20 * 60, closed=[i % 7]))
            if i % 3 == 0 else s for i, s in enumerate(base)]
    ring = [Site(f"RING-{k:02d}", 30.2800, 120.1700, WeekHours.daily(7 * 60, 21 * 60), 1)
            for k in range(NEAREST + 4)]
    st = Stores(base + ring)
    orders = []
    for i in range(3000):
        lat, lon = 30.28 + rng.uniform(-0.25, 0.25), 120.17 + rng.uniform(-0.35, 0.35)
        if i % 10 == 0:
            lat, lon = 30.2800, 120.1700  # at the ring: a tie of twelve
        start = MON_10 + rng.randrange(-4, 12) * 3600 + rng.choice((0, 1800))
        orders.append(order(f"O{i}", lat, lon, start=start, hours=rng.choice((0.5, 1, 2))))
    got = assign(st, orders, max_distance_m=12_000)
    want = reference(st, orders, 12_000)
    assert got == want
    assert {a.outcome for a in got} == set(Outcome)
    by_slot: dict[int | None, list[str]] = {}
    for a in got:
        if a.store_id and a.store_id.startswith("RING"):
            by_slot.setdefault(a.slot, []).append(a.store_id)
    for filled in by_slot.values():  # the tie is filled in id order, slot by slot
        assert filled == [f"RING-{k:02d}" for k in range(len(filled))]
    assert max(len(f) for f in by_slot.values()) > NEAREST  # walked past the partial sort
    assert np.isfinite([a.distance_m for a in got if a.distance_m is not None]).all()
