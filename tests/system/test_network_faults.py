"""The box's sync through a link that stalls, crawls and dies mid-packet: HQ ends with every
event once, in order, and the cashier's verdicts never wait for the network."""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import time
from pathlib import Path

import pytest

from edge.keys import SigningKey
from edged.localapi import Client
from provisioning.dev import issue_coupons
from provisioning.localbroker import Broker
from tests.daemon_fixtures import make_home
from tests.daemon_proc import DaemonProcess
from tests.hq_support import Hq, register
from tests.system.faultproxy import FaultProxy, Mode
from tests.system.proof import record, scale

pytestmark = pytest.mark.network


async def until(cond: object, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_a_faulty_link_delivers_every_event_once_in_order(tmp_path: Path) -> None:
    """GIVEN a daemon whose broker link goes through a fault proxy, and HQ ingesting from the
    broker directly
    WHEN codes are scanned through the local API while the link stalls, crawls (256 bytes
    per 50 ms) and is cut mid-packet, over and over
    THEN every scan gets its verdict at once, and once the link heals HQ holds every event
    of the box's outbox exactly once (seq 1..last, the same event ids), in order."""
    scans = scale(200, 3_000)
    broker = Broker(tmp_path / "broker")
    broker.start()
    proxy = FaultProxy(broker.port).start()
    home = make_home(tmp_path)
    with (home / "edge.toml").open("a") as f:
        f.write(f'\n[mqtt]\nhost = "127.0.0.1"\nport = {proxy.port}\nkeepalive_s = 1\n'
                "backoff_min_s = 0.05\nbackoff_max_s = 0.5\nconnect_timeout_s = 1.0\n")
    hq = Hq(broker, SigningKey.generate("hqcfg"), f"sqlite:///{tmp_path / 'hq.sqlite'}")
    # Paired both ways, as the other system tests: HQ believes only this registered box,
    # and the box trusts HQ's confirmations (else it refuses each as from an unknown key and
    # writes a summary of those refusals when sync stops: an event after the last one read).
    register(hq, home)
    hq.worker()
    codes = issue_coupons(home, scans // 2, prefix="N")
    rng = random.Random(5)
    daemon = DaemonProcess(home).start()
    faults = 0
    try:
        client = Client(daemon.path, timeout=10)
        await client.connect()
        stop = asyncio.Event()

        async def weather() -> None:
            """Faults in turn, each held a while (a cut is at once), until scanning ends."""
            nonlocal faults
            while not stop.is_set():
                fault = rng.choice(("stall", "throttle", "cut", "pass"))
                faults += fault != "pass"
                if fault == "cut":
                    proxy.cut()
                else:
                    proxy.set(Mode(fault))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), rng.uniform(0.3, 1.5))

        storm = asyncio.create_task(weather())
        try:
            for i in range(scans):
                code = codes[i // 2] if i % 2 == 0 else codes[rng.randrange(len(codes))]
                v = await client.request("scan", code=code, till="NET")
                assert v["decision_id"] is not None
                await asyncio.sleep(0.02)  # a busy counter, not a flood: the faults outlast scans
        finally:
            stop.set()
            await storm
        proxy.set(Mode.PASS)
        # Until HQ holds the box's last event and no newer one has come (one may: an outbox
        # alarm cleared as the backlog drains), read beside the running daemon (WAL
        # readers never block it).
        last = 0
        while (newest := _newest_seq(home)) != last:
            last = newest
            await until(lambda n=last: hq.count() >= n, f"HQ to hold the box's {last} events",
                        60)
            await asyncio.sleep(0.5)
        await client.close()
    finally:
        daemon.stop()
    db = sqlite3.connect(home / "ledger.sqlite")
    try:
        box = db.execute("SELECT seq, event_id FROM outbox ORDER BY seq").fetchall()
    finally:
        db.close()
    held = hq.dbs[0].query("SELECT seq, event_id FROM hq_event ORDER BY seq")
    doubled = len(held) - len({s for s, _ in held})
    lost = len({e for _, e in box} - {e for _, e in held})
    record("network: stall / throttle / cut mid-packet", runs=1,
           faults=proxy.counts.cuts + proxy.counts.stalls + proxy.counts.throttles,
           verdicts=scans, lost=lost, doubled=doubled,
           gaps=len(box) - len(held) if len(held) < len(box) else 0)
    hq.close()
    proxy.stop()
    broker.stop()
    assert faults > 0 and proxy.counts.connections > 1  # the link really broke
    assert [tuple(r) for r in held] == [tuple(r) for r in box]
    assert box and box[0][0] == 1 and box[-1][0] == len(box)


def _newest_seq(home: Path) -> int:
    """The box's newest outbox seq, read beside the running daemon."""
    db = sqlite3.connect(home / "ledger.sqlite")
    try:
        return int(db.execute("SELECT MAX(seq) FROM outbox").fetchone()[0])
    finally:
        db.close()
