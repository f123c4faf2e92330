"""Server time of HQ's dashboard pages at chain scale, against bare SQL over the same data.

Seeds ``--stores`` stores x ``--days`` days ending today with ``--events`` events by bulk
SQL (a generated series straight into ``hq_event``, then the aggregates ``dash_day``,
``dash_detail``, ``dash_month`` and ``dash_chain_day`` grouped from it in SQL, as ingest
and ``edge-hq dashboard rebuild`` would count them),
then measures, in the same run and on the same database:

- the chain page (``/hq/chain``: funnel, days or months, every store) and a store page
  (``/hq/stores/ID``), each for the default range (30 days) and for the whole year:
  server time of the real app (from the ASGI call to its last byte, a signed-in admin;
  the session check, the queries, the rendering; Starlette's in-process client drives it);
- the floor: the same figures from bare SQL (the statements those pages run, on the same
  connection, rows fetched, nothing rendered).

Targets: each page at most 2x its floor; the chain page under 300 ms at p99.

Run: ``PYTHONPATH=. .venv/bin/python bench/dashboard.py [--events 10000000] [--stores 2000]
[--days 365] [--n 40] [--db URL | --postgres]`` (SQLite in a temporary folder by default;
seeding 10 million events takes many minutes: ``--events 200000`` for a quick run).
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import describe
from edge.keys import Purpose
from hq.db import Database
from hq.issuing import keystore
from hq.reports import dashboard as figures
from hq.reports.aggregates import COLUMNS, SHARDS
from hq.reports.dashboard import Days
from hq.web.dashboard import MAX_DAY_ROWS
from hq.web.operators import Role, add_operator

RATIO_TARGET = 2.0
CHAIN_P99_MS = 300.0
PASSWORD = "bench password 1"
# Event kinds by i % 10: the bodies the dashboard's counting reads, as a box sends them.
_KINDS = (
    ("card_issued", None, None, None, None, '{"serial":1}'),
    ("card_issued", None, None, None, None, '{"serial":1}'),
    ("card_issued", None, None, None, None, '{"serial":1}'),
    ("decision", "coupon", "WELCOME", 1, None,
     '{"accepted":true,"kind":"coupon","campaign_id":"WELCOME","facts":{"channel":"welcome"}}'),
    ("decision", "coupon", "LIVE1", 1, None,
     '{"accepted":true,"kind":"coupon","campaign_id":"LIVE1","facts":{"channel":"livestream"}}'),
    ("decision", "coupon", "GROUP1", 1, None,
     '{"accepted":true,"kind":"coupon","campaign_id":"GROUP1","facts":{"channel":"community"}}'),
    ("decision", "coupon", "LIVE1", 0, "already_used_here",
     '{"accepted":false,"kind":"coupon","reason":"already_used_here"}'),
    ("decision", "pickup", None, 1, None, '{"accepted":true,"kind":"pickup"}'),
    ("decision", "coupon", "LIVE1", 0, "forged", '{"accepted":false,"reason":"forged"}'),
    ("clock", None, None, None, None, '{}'),
)


def _case(column: int, quote: bool) -> str:
    arms = []
    for k, kind in enumerate(_KINDS):
        v = kind[column]
        text = "NULL" if v is None else (f"'{v}'" if quote else str(v))
        arms.append(f"WHEN {k} THEN {text}")
    return f"CASE i % 10 {' '.join(arms)} END"


def seed(db: Database, stores: int, days: int, events: int) -> float:
    """Bulk-insert the events and their aggregates; returns the seconds it took."""
    t0 = time.perf_counter()
    per_store = max(events // stores, 1)
    span = days * 86400.0
    today = dt.date.today()
    start = dt.datetime(today.year, today.month, today.day).timestamp() - (days - 1) * 86400
    if db.dialect == "sqlite":
        series = ("WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i+1 FROM n WHERE i<?)"
                  " ")
        store = "printf('S%04d', i % ?)"
        day = "CAST(strftime('%Y%m%d', at, 'unixepoch', 'localtime') AS INTEGER)"
        source = "n"
        div = "i / ?"
    else:
        series = ""
        store = "'S' || lpad((i % ?)::text, 4, '0')"
        day = "to_char(to_timestamp(at), 'YYYYMMDD')::int"
        source = "generate_series(0, ?) AS n(i)"
        div = "i / ?"
    at = f"{start} + ({div}) * {span / per_store}"
    sql = (f"{series}INSERT INTO hq_event(device, store, seq, event_id, type, at,"
           " clock_trusted, body, received_at, kind, code_id, campaign_id, accepted, reason)"
           f" SELECT 'D' || {store}, {store}, {div} + 1, 'e' || i, {_case(0, True)}, {at}, 1,"
           f" {_case(5, True)}, 0, {_case(1, True)}, NULL, {_case(2, True)},"
           f" {_case(3, False)}, {_case(4, True)} FROM {source}")
    params = (stores,) * 4

    def lit(q: str) -> str:  # psycopg reads a lone % as a placeholder
        return q if db.dialect == "sqlite" else q.replace("%", "%%")

    with db.tx() as cur:
        cur.execute(lit(sql), (events - 1, *params) if series else (*params, events - 1))
    sums = {
        "printed": "type='card_issued'",
        "claimed": "type='card_issued' AND i_mod < 1",  # a third of cards are claimed
        "welcome": "campaign_id='WELCOME' AND accepted=1",
        "came_back": "campaign_id='LIVE1' AND accepted=1 AND i_mod < 1",
        "redeemed": "type='decision' AND kind='coupon' AND accepted=1",
        "rejected": "type='decision' AND accepted=0",
        "voided": "type='void'",
        "pickups": "type='decision' AND kind='pickup' AND accepted=1",
    }
    assert tuple(sums) == COLUMNS
    cols = ", ".join(f"SUM(CASE WHEN {w.replace('i_mod', 'seq % 3')} THEN 1 ELSE 0 END)"
                     for w in sums.values())
    with db.tx() as cur:
        cur.execute(lit(f"INSERT INTO dash_day(store, day, {', '.join(COLUMNS)})"
                        f" SELECT store, {day}, {cols} FROM hq_event GROUP BY store, {day}"))
        cur.execute(lit("INSERT INTO dash_detail(store, day, metric, dim, n)"
                        f" SELECT store, {day}, 'campaign', campaign_id, COUNT(*) FROM hq_event"
                        " WHERE type='decision' AND kind='coupon' AND accepted=1"
                        f" GROUP BY store, {day}, campaign_id"))
        cur.execute(lit("INSERT INTO dash_detail(store, day, metric, dim, n)"
                        f" SELECT store, {day}, 'reason', reason, COUNT(*) FROM hq_event"
                        f" WHERE type='decision' AND accepted=0 GROUP BY store, {day}, reason"))
    month_cols = ", ".join(f"SUM({c})" for c in COLUMNS)
    last_char = ("unicode(substr(store, -1))" if db.dialect == "sqlite"
                 else "ascii(right(store, 1))")
    with db.tx() as cur:
        cur.execute(f"INSERT INTO dash_month(store, month, {', '.join(COLUMNS)})"
                    f" SELECT store, day / 100, {month_cols} FROM dash_day"
                    " GROUP BY store, day / 100")
        # hq.reports.aggregates.shard, in SQL
        cur.execute(lit(f"INSERT INTO dash_chain_day(day, shard, {', '.join(COLUMNS)})"
                        f" SELECT day, {last_char} % {SHARDS}, {month_cols} FROM dash_day"
                        f" GROUP BY day, {last_char} % {SHARDS}"))
    if db.dialect == "sqlite":
        db.query("ANALYZE")
    else:  # outside a transaction; the visibility map lets the covering indexes answer alone
        import psycopg

        with psycopg.connect(db.url.target, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
    return time.perf_counter() - t0


class ServerTime:
    """ASGI wrapper: how long the app took over the last request (no client, no socket).

    From the call to the moment the app hands over its last body bytes: Starlette's
    TestClient then makes ``send`` wait until its own thread has taken them (~0.25 ms on
    a loaded machine), a wait a server writing to a socket buffer does not have.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.last = 0.0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        t0 = time.perf_counter()

        async def timed_send(message: Any) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.last = time.perf_counter() - t0
            await send(message)

        await self.app(scope, receive, timed_send)


def timed_server(fn: Callable[[], object], clock: ServerTime, n: int) -> list[float]:
    """``n`` server times of the request ``fn`` makes, after two warm-ups."""
    for _ in range(2):
        fn()
    out = []
    for _ in range(n):
        fn()
        out.append(clock.last)
    return out


def pcts(samples: list[float]) -> tuple[float, float]:
    """p50 and p99 in milliseconds."""
    qs = statistics.quantiles(samples, n=100, method="inclusive")
    return qs[49] * 1000, qs[98] * 1000


def recorded(db: Database, fn: Callable[[], object]) -> list[tuple[str, Any]]:
    """The statements (SQL, parameters) ``db`` is asked to run while ``fn`` runs."""
    seen: list[tuple[str, Any]] = []
    query = db.query

    def spy(sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        seen.append((sql, params))
        return query(sql, params)

    db.query = spy  # type: ignore[method-assign]
    try:
        fn()
    finally:
        del db.query  # the class's own again
    return seen


def timed(fn: Callable[[], object], n: int) -> list[float]:
    """``n`` timings of ``fn`` after two warm-ups."""
    for _ in range(2):
        fn()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> int:
    """Seed, measure, print."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stores", type=int, default=2000)
    p.add_argument("--days", type=int, default=365)
    p.add_argument("--events", type=int, default=10_000_000)
    p.add_argument("--n", type=int, default=40, help="requests per page and range")
    p.add_argument("--db", help="a database URL (default: SQLite in a temporary folder)")
    p.add_argument("--postgres", action="store_true",
                   help="on a PostgreSQL server started for the run (Debian's, loopback)")
    args = p.parse_args()
    print("machine:", describe())
    if args.postgres:
        from provisioning.localpostgres import Postgres

        server = Postgres()
        server.start()
        try:
            args.db = server.fresh_database()
            return run(args)
        finally:
            server.stop()
    return run(args)


def run(args: argparse.Namespace) -> int:
    """Seed and measure on ``args.db`` (SQLite in a temporary folder when None)."""
    from starlette.testclient import TestClient

    from hq.web.app import WebSettings, build_app

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        keystore.create_key(home, "HQC", [Purpose.COUPON])
        url = args.db or f"sqlite:///{home / 'hq.sqlite'}"
        db = Database(url)
        took = seed(db, args.stores, args.days, args.events)
        (n_events,) = db.query("SELECT COUNT(*) FROM hq_event")[0]
        (n_days,) = db.query("SELECT COUNT(*) FROM dash_day")[0]
        print(f"seeded {db.dialect}: {n_events} events, {args.stores} stores x {args.days}"
              f" days, {n_days} dash_day rows in {took:.0f} s")
        add_operator(db, "bench", Role.ADMIN, None, PASSWORD)
        app = ServerTime(build_app(WebSettings(home, url), db))
        # one event loop for the whole run, as a server has: its worker threads stay warm
        # (a TestClient outside ``with`` starts a loop, and so a worker thread, per request)
        with TestClient(app, base_url="http://testserver", follow_redirects=False) as client:
            measure(args, db, app, client)
        db.close()
    return 0


def measure(args: argparse.Namespace, db: Database, app: ServerTime, client: Any) -> None:
    """Sign in, then time the pages and their floors on ``client``; prints the figures."""
    form = client.get("/hq/login").text
    csrf = form.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    assert client.post("/hq/login", data={"name": "bench", "password": PASSWORD,
                                          "csrf": csrf}).status_code == 303
    today = dt.date.today()
    worst_ratio, chain_p99 = 0.0, 0.0
    for label, first in (("30 days", today - dt.timedelta(days=29)),
                         (f"{args.days} days", today - dt.timedelta(days=args.days - 1))):
        a, b = first.isoformat(), today.isoformat()
        lo, hi = int(a.replace("-", "")), int(b.replace("-", ""))
        q = {"from": a, "to": b}

        def chain_page(q: dict[str, str] = q) -> None:
            r = client.get("/hq/chain", params=q)
            assert r.status_code == 200

        days = Days(lo, hi)

        def chain_sql(days: Days = days) -> None:
            # the page's own statements (hq.reports.dashboard), nothing rendered
            (figures.by_month if len(days) > MAX_DAY_ROWS else figures.by_day)(db, days)
            figures.by_store(db, days)

        def store_page(q: dict[str, str] = q) -> None:
            r = client.get("/hq/stores/S0007", params=q)
            assert r.status_code == 200

        # the statements the store page's figures run, recorded, then replayed bare
        store_figures = figures.by_month if len(days) > MAX_DAY_ROWS else figures.by_day
        statements = recorded(db, functools.partial(store_figures, db, days, "S0007"))

        def store_sql(statements: list[tuple[str, Any]] = statements) -> None:
            for sql, params in statements:
                db.query(sql, params)

        for name, page, floor in (("chain page", chain_page, chain_sql),
                                  ("store page", store_page, store_sql)):
            # interleaved rounds: the machine's noise falls on both alike
            page_t: list[float] = []
            floor_t: list[float] = []
            for _ in range(4):
                floor_t += timed(floor, max(args.n // 4, 2))
                page_t += timed_server(page, app, max(args.n // 4, 2))
            p50, p99 = pcts(page_t)
            f50, f99 = pcts(floor_t)
            ratio = p50 / f50 if f50 else float("inf")
            worst_ratio = max(worst_ratio, ratio)
            if name == "chain page":
                chain_p99 = max(chain_p99, p99)
            print(f"{name} ({label}): p50 {p50:.2f} ms p99 {p99:.2f} ms; bare SQL p50"
                  f" {f50:.2f} ms p99 {f99:.2f} ms; page/floor p50 {ratio:.2f}"
                  f" p99 {p99 / f99 if f99 else float('inf'):.2f}")
    print(f"worst page/floor (p50) {worst_ratio:.2f} (target <= {RATIO_TARGET});"
          f" chain page p99 {chain_p99:.1f} ms (target < {CHAIN_P99_MS:.0f} ms)")


if __name__ == "__main__":
    sys.exit(main())
