"""Nearest-store assignment at chain scale, against a brute-force floor in the same run.

N orders (default 100,000) over S stores (default 2,000, scattered over eastern China's
cities, some closed one weekday, small pickup slots so that many orders go past their
nearest store) are assigned by ``hq.orders.assign.assign``. The floor is the brute force
the issue names: every order against every store, vectorised with numpy (one distance row,
one open mask, one capacity mask, one argmin per order), orders taken in the same sequence.
Both must give the same assignment for every order (the script exits 1 otherwise), and the
ratio floor/assign says how much faster the product code is (target: at least 1).

Run: .venv/bin/python bench/assign_orders.py [--stores 2000] [--orders 100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from bench.machine import describe
from hq.orders.assign import (
    Assignment,
    OrderRequest,
    Outcome,
    Site,
    Stores,
    WeekHours,
    assign,
    distances_m,
)

# City centres the stores cluster around (lat, lon): Hangzhou, Shanghai, Suzhou, Nanjing,
# Ningbo, Hefei, Wuxi, Shaoxing.
CITIES = ((30.27, 120.16), (31.23, 121.47), (31.30, 120.58), (32.06, 118.80),
          (29.87, 121.55), (31.82, 117.23), (31.49, 120.31), (30.00, 120.58))
MON_10 = 1_796_608_800  # Monday 2026-12-07 10:00 in Asia/Shanghai


def make_stores(n: int, rng: random.Random) -> list[Site]:
    out = []
    for i in range(n):
        lat, lon = rng.choice(CITIES)
        closed = [i % 7] if i % 5 == 0 else []
        hours = WeekHours.daily(rng.choice((7, 8)) * 60, rng.choice((20, 21, 22)) * 60, closed)
        out.append(Site(f"S{i:05d}", lat + rng.gauss(0, 0.08), lon + rng.gauss(0, 0.08),
                        hours, rng.choice((2, 3, 4))))
    return out


def make_orders(n: int, rng: random.Random) -> list[OrderRequest]:
    out = []
    for i in range(n):
        lat, lon = rng.choice(CITIES)
        start = MON_10 + rng.randrange(0, 7) * 86400 + rng.randrange(-3, 11) * 3600
        out.append(OrderRequest(f"O{i}", lat + rng.gauss(0, 0.1), lon + rng.gauss(0, 0.1),
                                start, start + rng.choice((1800, 3600, 7200))))
    return out


def floor(stores: Stores, orders: list[OrderRequest], max_d: float) -> list[Assignment]:
    """Brute force, vectorised: every order against every store."""
    n = len(stores)
    opens = np.full((7, n), np.inf)
    closes = np.full((7, n), -np.inf)
    for i, s in enumerate(stores.sites):
        for wd, day in enumerate(s.hours.days):
            if day is not None:
                opens[wd, i], closes[wd, i] = day[0] * 60, day[1] * 60
    cap = np.array([s.slot_capacity for s in stores.sites])
    used: dict[int, np.ndarray] = {}
    out = []
    for o in orders:
        d = distances_m(o.lat, o.lon, stores.lat_r, stores.lon_r, stores.cos)
        in_range = d <= max_d
        when = stores.window(o)
        if when is None:
            is_open = np.zeros(n, dtype=bool)
            free = is_open
        else:
            wd, start, end, slot = when
            is_open = in_range & (opens[wd] <= start) & (end <= closes[wd])
            counts = used.setdefault(slot, np.zeros(n, dtype=np.int64))
            free = is_open & (counts < cap)
        if free.any():
            i = int(np.argmin(np.where(free, d, np.inf)))  # first minimum: lowest store id
            used[when[3]][i] += 1  # type: ignore[index]
            out.append(Assignment(o.order_id, Outcome.ASSIGNED, stores.sites[i].store_id,
                                  float(d[i]), when[3]))  # type: ignore[index]
        else:
            out.append(Assignment(o.order_id, Outcome.NO_STORE_IN_RANGE if not in_range.any()
                                  else Outcome.ALL_FULL if is_open.any() else Outcome.NONE_OPEN))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stores", type=int, default=2000)
    ap.add_argument("--orders", type=int, default=100_000)
    ap.add_argument("--max-km", type=float, default=15.0)
    ap.add_argument("--repeat", type=int, default=3, help="alternate runs; best of each")
    args = ap.parse_args()
    print(f"machine: {describe()}; numpy {np.__version__}")
    rng = random.Random(11)
    stores = Stores(make_stores(args.stores, rng))
    orders = make_orders(args.orders, rng)
    max_d = args.max_km * 1000
    ours, floors = [], []
    for _ in range(args.repeat):  # alternate, so both see the same machine load
        t = time.perf_counter()
        got = assign(stores, orders, max_d)
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        want = floor(stores, orders, max_d)
        floors.append(time.perf_counter() - t)
        if got != want:
            bad = next(i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b)
            sys.exit(f"MISMATCH at order {bad}: assign {got[bad]} != floor {want[bad]}")
    outcomes = {o: sum(a.outcome is o for a in got) for o in Outcome}
    best, best_floor = min(ours), min(floors)
    print(f"{args.orders:,} orders over {args.stores:,} stores, {args.max_km:g} km range: "
          + ", ".join(f"{o.value} {c:,}" for o, c in outcomes.items()))
    print(f"assign (numpy blocks + nearest-first walk): {best:.2f} s "
          f"({args.orders / best:,.0f} orders/s; best of {', '.join(f'{x:.2f}' for x in ours)})")
    print(f"floor (brute force, every order x every store, vectorised): {best_floor:.2f} s "
          f"(best of {', '.join(f'{x:.2f}' for x in floors)})")
    print(f"same assignment for every order: yes; floor/assign = {best_floor / best:.2f} "
          "(target >= 1)")


if __name__ == "__main__":
    main()
