"""The broker killed with SIGKILL, the link faulty, and an outage of many hours on the box's
clock: HQ ends with every event once, in order, because the box keeps what HQ has not
confirmed and resends what HQ lacks (docs/proof.md says why a PUBACK is not enough).

mosquitto runs as the fixtures run it (persistence on, saved at a clean shutdown: the
default ``autosave_interval`` of 30 minutes never comes round in a test, so a SIGKILL loses
every message it had acknowledged and not yet delivered, and its sessions with them), and
with persistence off (every restart forgets everything, HQ ingest's session too).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
from pathlib import Path

import pytest

from edge.keys import SigningKey
from edged.localapi import Client
from hq.ingest.worker import IngestWorker
from provisioning.dev import issue_coupons
from provisioning.localbroker import Broker
from tests.daemon_fixtures import make_home
from tests.daemon_proc import DaemonProcess
from tests.hq_support import Hq, register, wait_until
from tests.system.fakeclock import FakeClock
from tests.system.faultproxy import FaultProxy, Mode
from tests.system.proof import record, scale
from tests.system.storm import FAST, box_and_hq, sync_to

pytestmark = pytest.mark.network

HOUR = 3600
FAULTS = ("kill", "kill_undelivered", "outage", "cut", "stall")


def acked(home: Path) -> set[int]:
    """The seqs the broker has acknowledged to the box (PUBACK), as the outbox records."""
    db = sqlite3.connect(home / "ledger.sqlite")
    try:
        return {s for first, last in db.execute("SELECT first, last FROM outbox_acked")
                for s in range(first, last + 1)}
    finally:
        db.close()


def mosquitto(workdir: Path, persistence: bool) -> Broker:
    """The fixtures' mosquitto, or the same with ``persistence false`` (a restart forgets
    every session, subscription and queued message, HQ ingest's among them)."""
    broker = Broker(workdir)
    if not persistence:
        conf = broker.conf.read_text(encoding="utf-8")
        assert "persistence true\n" in conf
        broker.conf.write_text(conf.replace("persistence true\n", "persistence false\n"),
                               encoding="utf-8")
    return broker


@pytest.mark.parametrize("persistence", [True, False], ids=["saved-at-shutdown", "no-persistence"])
async def test_broker_sigkill_and_long_outage_deliver_everything_once_in_order(
        tmp_path: Path, persistence: bool) -> None:
    """GIVEN the real daemon syncing through a fault proxy to a real mosquitto, HQ ingest
    on the broker, the box's wall clock under the test's control
    WHEN, round after round while codes are scanned, the broker is SIGKILLed (also right
    after it acknowledged events HQ had not received yet), stays down for an outage of
    many hours on the box's clock, or the link is cut mid-packet or stalls
    THEN the broker really lost acknowledged events, and yet once everything is up HQ holds
    every event of the box exactly once, in seq order, and has confirmed them all."""
    rounds = scale(5, 40)
    rng = random.Random(99)
    broker = mosquitto(tmp_path / "broker", persistence)
    broker.start()
    proxy = FaultProxy(broker.port).start()
    hq = Hq(broker, SigningKey.generate("hqcfg"), f"sqlite:///{tmp_path / 'hq.sqlite'}")
    home = make_home(tmp_path)
    register(hq, home)
    sync_to(home, proxy.port)
    coupons = iter(issue_coupons(home, 30 * rounds + 30, prefix="B"))
    clock = FakeClock(tmp_path / "faketime")
    worker: IngestWorker = hq.worker(timing=FAST)
    daemon = DaemonProcess(home, env=clock.env()).start()
    lost_acked = kills = 0
    done: list[str] = []
    try:
        client = Client(daemon.path, timeout=10)
        await client.connect()

        async def scan(n: int) -> None:
            for code in [next(coupons) for _ in range(n)]:
                v = await client.request("scan", code=code, till="BRK")
                assert v["accepted"], v  # every coupon is fresh: the box decides offline
                await asyncio.sleep(0.01)

        for r in range(rounds):
            # The first rounds take each fault once; then at random.
            fault = FAULTS[r] if r < len(FAULTS) else rng.choice(FAULTS)
            done.append(fault)
            if fault == "kill":
                task = asyncio.create_task(scan(20))
                await asyncio.sleep(rng.uniform(0.02, 0.2))
                broker.kill()
                kills += 1
                await task
                broker.start()
            elif fault == "kill_undelivered":
                # HQ away: the broker holds what it acknowledged, then dies with it.
                worker.stop()
                hq.workers.remove(worker)
                await scan(20)
                last = box_and_hq(home, hq)[0][-1][0]

                def acknowledged(last: int = last) -> bool:
                    return last in acked(home)

                wait_until(acknowledged, what="the broker acknowledging events")
                at_hq = {s for s, _ in box_and_hq(home, hq)[1]}
                broker.kill()
                kills += 1
                lost_acked += len(acked(home) - at_hq)
                broker.start()
                worker = hq.worker(timing=FAST)
            elif fault == "outage":
                broker.kill()
                kills += 1
                clock.set(clock.offset_s + rng.randrange(6, 48) * HOUR)  # hours pass offline
                await scan(30)
                broker.start()
            elif fault == "cut":
                task = asyncio.create_task(scan(20))
                await asyncio.sleep(rng.uniform(0.02, 0.2))
                proxy.cut()
                await task
            else:
                proxy.set(Mode.STALL)
                await scan(20)
                proxy.set(Mode.PASS)

        def settled() -> bool:
            box, held, unconfirmed = box_and_hq(home, hq)
            return box == held and unconfirmed == 0

        wait_until(settled, timeout_s=90, what="HQ holding and confirming every event")
        assert daemon.proc is not None and daemon.proc.poll() is None
        await client.close()
        box, held, unconfirmed = box_and_hq(home, hq)
    finally:
        daemon.stop()
        with contextlib.suppress(Exception):
            proxy.stop()
        hq.close()
        broker.stop()
    record("network: broker SIGKILL, outage of hours, cut, stall"
           + ("" if persistence else " (no persistence)"), runs=rounds,
           faults=kills + proxy.counts.cuts + proxy.counts.stalls + clock.jumps,
           verdicts=len(box), lost=len({e for _, e in box} - {e for _, e in held}),
           doubled=len(held) - len({s for s, _ in held}),
           gaps=len(box) - len(held) if len(held) < len(box) else 0)
    assert set(done) == set(FAULTS)
    assert lost_acked > 0, "the broker never lost an acknowledged event: the test proves less"
    assert held == box and unconfirmed == 0  # every event once, in seq order, confirmed
    assert box[0][0] == 1 and [s for s, _ in box] == list(range(1, len(box) + 1))
