"""Scan-to-committed-verdict latency on a full ledger, against a bare-SQLite floor.

Fills a ledger with N redeemed coupons (default 1,000,000) and M pickup orders (100,000),
then times ``Counter.redeem`` for accepts, rejects (forged, expired) and duplicates,
interleaved with the floor measured in the same run on a table of the same size: one bare
sqlite3 WAL transaction at the same durability (synchronous=FULL; a redemption row with a
unique code id plus an outbox row) plus one Ed25519 verify.

Run: .venv/bin/python bench/redeem_latency.py [--coupons 1000000] [--orders 100000] [--n 2000]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nacl.signing

from bench.machine import describe
from edge import tokens
from edge.box import Box, init_home
from edge.keys import Purpose, SigningKey, TrustedKey
from edge.ledger import AUTOCHECKPOINT_PAGES
from hq.issuing.codes import sign_token


def coupon(key: SigningKey, cid: str, now: int, valid_until: int | None = None) -> str:
    return sign_token(key, tokens.Coupon(
        key.key_id, cid, "LIVE1125", tokens.Channel.LIVESTREAM,
        tokens.Benefit(tokens.BenefitKind.FREE_ITEM, 1, "咖啡一杯"), now - 3600,
        valid_until if valid_until is not None else now + 86400))


def fill(box: Box, coupons: int, orders: int, now: float) -> None:
    conn = box.ledger.conn
    conn.execute("PRAGMA synchronous=OFF")  # filling only; measured with FULL below
    batch = 50_000
    with box.ledger.immediate():
        for start in range(0, coupons, batch):
            ids = [f"C:FILL-{i}" for i in range(start, min(coupons, start + batch))]
            evs = [uuid.uuid4().hex for _ in ids]
            conn.executemany(
                "INSERT INTO outbox(event_id, type, at, clock_trusted, body)"
                " VALUES (?, 'decision', ?, 1, '{}')", [(e, now) for e in evs])
            conn.executemany(
                "INSERT INTO decision(at, kind, code_id, campaign_id, accepted, reason, till,"
                " source, clock_trusted, facts, event_id) VALUES (?, 'coupon', ?, 'LIVE1125', 1,"
                " NULL, 'T1', 'bench', 1, '{}', ?)",
                [(now, c, e) for c, e in zip(ids, evs, strict=True)])
            conn.executemany("INSERT INTO code_use(code_id, uses) VALUES (?, 1)",
                             [(c,) for c in ids])
        conn.executemany(
            "INSERT INTO pickup_order(order_id, store_id, number, window_start, window_end,"
            " items, customer, status) VALUES (?, 'BJ001', ?, ?, ?, 'x', 'y', 'waiting')",
            [(f"O-{i}", f"{i % 100000:05d}", now - 3600, now + 3600) for i in range(orders)])
        conn.execute("INSERT INTO outbox_acked(first, last)"  # a year of events, all sent
                     " SELECT (SELECT MIN(seq) FROM outbox), (SELECT MAX(seq) FROM outbox)")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # start the timed part with an empty WAL


def floor_db(path: Path, rows: int) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("CREATE TABLE redemption(code_id TEXT NOT NULL UNIQUE, at REAL NOT NULL)")
    conn.execute("CREATE TABLE outbox(seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL"
                 " UNIQUE, body TEXT NOT NULL)")
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO redemption VALUES (?, 0)", ((f"F-{i}",) for i in range(rows)))
    conn.executemany("INSERT INTO outbox(id, body) VALUES (?, '{}')",
                     ((uuid.uuid4().hex,) for _ in range(rows)))
    conn.execute("COMMIT")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return conn


def pct(samples: list[float], p: float) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[int(p) - 1] * 1e3


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--coupons", type=int, default=1_000_000)
    ap.add_argument("--orders", type=int, default=100_000)
    ap.add_argument("--n", type=int, default=2000, help="timed redemptions per kind")
    ap.add_argument("--sqlite-default-checkpoint", action="store_true",
                    help="ledger with SQLite's default auto-checkpoint (to show why not)")
    args = ap.parse_args()
    print(f"machine: {describe()}")
    hq = SigningKey.generate("HQ1")
    now = int(time.time())
    with tempfile.TemporaryDirectory(dir=Path(__file__).parent.parent) as tmp:
        home = Path(tmp) / "box"
        init_home(home, "BJ001", "BJ001-T1", [TrustedKey(
            "HQ1", hq.public_key, frozenset({Purpose.COUPON, Purpose.PICKUP}))])
        box = Box.open(home)
        with box.ledger.immediate() as conn:
            box.ledger.advance_trusted_time(conn, now - 60, "bench")
        t = time.perf_counter()
        fill(box, args.coupons, args.orders, now)
        fdb = floor_db(Path(tmp) / "floor.sqlite", args.coupons)
        print(f"filled {args.coupons:,} redeemed coupons + {args.orders:,} orders "
              f"in {time.perf_counter() - t:.1f} s")

        fresh = [coupon(hq, f"NEW-{i}", now) for i in range(args.n)]
        expired = [coupon(hq, f"OLD-{i}", now, valid_until=now - 10) for i in range(args.n)]
        rogue = SigningKey("HQ1", bytes(nacl.signing.SigningKey.generate()))
        forged = [coupon(rogue, f"NEW-{i}", now) for i in range(args.n)]
        vk = nacl.signing.VerifyKey(hq.public_key)
        signed = tokens.parse(fresh[0])
        assert isinstance(signed, tokens.Signed)

        def floor_op(i: int) -> None:
            vk.verify(signed.signed, signed.signature)
            fdb.execute("BEGIN IMMEDIATE")
            fdb.execute("INSERT INTO redemption VALUES (?, ?)", (f"N-{i}", time.time()))
            fdb.execute("INSERT INTO outbox(id, body) VALUES (?, ?)",
                        (uuid.uuid4().hex, json.dumps({"code_id": f"N-{i}", "ok": True})))
            fdb.execute("COMMIT")

        results: dict[str, list[float]] = {"floor": [], "accept": [], "duplicate": [],
                                           "reject forged": [], "reject expired": []}
        counter = box.counter
        if args.sqlite_default_checkpoint:
            box.ledger.conn.execute("PRAGMA wal_autocheckpoint=1000")
        else:  # the floor gets the same checkpoint policy as the ledger ships with
            fdb.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")
        for i in range(args.n):  # interleaved, so machine noise hits all kinds alike
            code, bad, old = fresh[i], forged[i], expired[i]
            results["floor"].append(timed(lambda i=i: floor_op(i)))
            results["accept"].append(timed(lambda c=code: counter.redeem(c, till="T1")))
            results["duplicate"].append(timed(lambda c=code: counter.redeem(c, till="T1")))
            results["reject forged"].append(timed(lambda c=bad: counter.redeem(c)))
            results["reject expired"].append(timed(lambda c=old: counter.redeem(c)))
        assert counter.redeem(fresh[0]).reason is not None  # sanity: duplicates really rejected
        floor99 = pct(results["floor"], 99)
        floor50 = pct(results["floor"], 50)
        print(f"\n{'kind':<16}{'p50 ms':>9}{'p99 ms':>9}{'p50/floor':>11}{'p99/floor':>11}")
        for kind, samples in results.items():
            p50, p99 = pct(samples, 50), pct(samples, 99)
            print(f"{kind:<16}{p50:>9.3f}{p99:>9.3f}{p50 / floor50:>11.2f}{p99 / floor99:>11.2f}")
        print(f"\ntarget: p99 within 2x of the floor's p99 ({2 * floor99:.3f} ms)")
        box.close()
        fdb.close()


if __name__ == "__main__":
    main()
