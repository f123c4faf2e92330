"""A crash storm: the real daemon killed with SIGKILL at random moments while a counter scans.

Codes of every kind (valid, repeated, forged, expired, multi-use, pickup) go in through the
local API and the serial line (the daemon's pty) at once; a killer SIGKILLs the daemon
after a random stretch of each life and it is started again, as systemd would. Afterwards:
every verdict a client saw is in the ledger as shown, no code is accepted more often than
it may be, the outbox has no gap, and HQ (its ingest worker over a real mosquitto) holds
every event of the box exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.keys import SigningKey
from edged.localapi import ApiError, Client
from provisioning.localbroker import Broker
from tests.daemon_fixtures import make_home, start_process, wait_scanner, write_scanner
from tests.daemon_proc import DaemonProcess
from tests.hq_support import Hq, register, wait_until
from tests.system.proof import record, scale
from tests.system.storm import FAST, Code, audit, box_and_hq, code_mix, scan_order, sync_to

pytestmark = pytest.mark.network

DEAD = (ConnectionError, OSError, EOFError, TimeoutError, ApiError)


async def kill_later(proc: subprocess.Popen[bytes], alive: asyncio.Event, after: float) -> None:
    """SIGKILL ``proc`` ``after`` seconds from now (unless it already died)."""
    await asyncio.sleep(after)
    alive.clear()
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)


class Till:
    """One life of the daemon seen from the counter: scans in, verdicts out."""

    def __init__(self, daemon: DaemonProcess, seen: dict[int, bool],
                 sources: Counter[str]) -> None:
        self.daemon, self.seen, self.sources = daemon, seen, sources
        self.api = Client(daemon.path, timeout=10)
        self.watch = Client(daemon.path, timeout=10)
        self._reader: asyncio.Task[None] | None = None

    async def open(self) -> None:
        await self.api.connect()
        await wait_scanner(self.api)
        await self.watch.connect()
        await self.watch.subscribe()
        self._reader = asyncio.create_task(self._verdicts())

    async def _verdicts(self) -> None:
        """Every verdict the daemon published (the serial scans' screen) until it dies."""
        while (ev := await self.watch.events.get()) is not None:
            if ev["event"] == "verdict":
                self.seen[int(ev["data"]["decision_id"])] = bool(ev["data"]["accepted"])
                self.sources[str(ev["data"]["source"]).partition(":")[0]] += 1  # serial:PORT

    async def scan(self, codes: Iterator[Code], alive: asyncio.Event, most: int) -> int:
        """Scan up to ``most`` of ``codes``, alternately by API and serial line, until the
        daemon dies; how many went in."""
        done = 0
        for i, code in zip(range(most), codes, strict=False):
            if not alive.is_set():
                break
            try:
                if i % 2 == 0:
                    v = await self.api.request("scan", code=code.text, till="T1")
                    self.seen[int(v["decision_id"])] = bool(v["accepted"])
                else:
                    write_scanner(self.daemon.home, code.text.encode() + b"\n")
            except DEAD:
                break  # killed: this scan showed nothing
            done += 1
            await asyncio.sleep(0.005)
        return done

    async def close(self) -> None:
        """After the daemon died or was stopped: the verdicts it sent are all read."""
        if self._reader is not None:
            with contextlib.suppress(*DEAD):
                await asyncio.wait_for(self._reader, 15)
        for c in (self.api, self.watch):
            with contextlib.suppress(*DEAD):
                await c.close()


async def test_sigkill_storm_loses_no_verdict_doubles_no_use_and_hq_holds_all_once(
        tmp_path: Path) -> None:
    """GIVEN the real daemon (a child process) syncing to a real mosquitto, HQ ingesting
    WHEN codes of every kind are scanned through the local API and the serial line while
    the daemon is killed with SIGKILL at a random moment of each life and restarted (and,
    every third life, also killed once while still starting)
    THEN every verdict a client saw is in the ledger as shown; no single-use code or pickup
    is accepted twice, no multi-use coupon beyond its uses, no forged or expired code ever;
    the outbox runs 1..last with no gap and quick_check passes; HQ holds every event of
    the box exactly once and has confirmed them all."""
    kills = scale(6, 40)
    longest = scale(8, 25) / 10  # s: each life is killed at a random moment before this
    final = 40  # scans of the last life, which ends with a clean stop
    rng = random.Random(1717)
    broker = Broker(tmp_path / "broker")
    broker.start()
    hq = Hq(broker, SigningKey.generate("hqcfg"), f"sqlite:///{tmp_path / 'hq.sqlite'}")
    home = make_home(tmp_path)
    register(hq, home)
    sync_to(home, broker.port)
    # A scan takes a few ms: codes enough for every life scanning until its end.
    per_life = int(150 * longest)
    codes = code_mix(home, per_life * (kills + 1) // 2, rng)
    order = iter(scan_order(codes, per_life * (kills + 1), rng))
    hq.worker(timing=FAST)
    seen: dict[int, bool] = {}
    sources: Counter[str] = Counter()  # verdicts seen, by where the scan came from
    crashed = killed = killed_early = 0
    daemon: DaemonProcess | None = None
    try:
        for life in range(kills + 1):
            if life % 3 == 1:
                # Killed while starting (opening and checking the ledger, recovering the
                # WAL, connecting sync), before it serves anyone.
                early = start_process(home, "--log-level", "WARNING")
                await asyncio.sleep(rng.uniform(0.02, 0.5))
                early.kill()
                early.communicate(timeout=10)
                killed_early += early.returncode == -signal.SIGKILL
            daemon = DaemonProcess(home).start()
            proc = daemon.proc
            assert proc is not None
            counter = Till(daemon, seen, sources)
            await counter.open()
            alive = asyncio.Event()
            alive.set()
            if life < kills:
                killer = asyncio.create_task(kill_later(proc, alive,
                                                        rng.uniform(0.05, longest)))
                await counter.scan(order, alive, 10**9)
                await killer
                rc = proc.wait(10)
                killed += rc == -signal.SIGKILL
                crashed += rc != -signal.SIGKILL
                await counter.close()
                daemon.proc = None
            else:
                await counter.scan(order, alive, final)

                def settled() -> bool:
                    box, held, unconfirmed = box_and_hq(home, hq)
                    return box == held and unconfirmed == 0

                wait_until(settled, timeout_s=60, what="HQ holding and confirming every event")
                crashed += proc.poll() is not None
                daemon.stop()
                await counter.close()
        box, held, unconfirmed = box_and_hq(home, hq)
    finally:
        if daemon is not None and daemon.proc is not None and daemon.proc.poll() is None:
            daemon.stop()
        hq.close()
        broker.stop()
    result = audit(home / "ledger.sqlite", list(seen.items()), codes)
    at_hq_missing = len({e for _, e in box} - {e for _, e in held})
    at_hq_doubled = len(held) - len({s for s, _ in held})
    record("crash storm: daemon SIGKILL (API + serial, HQ)", runs=kills + 1,
           faults=killed + killed_early,
           verdicts=len(seen), lost=len(result.lost) + at_hq_missing,
           doubled=sum(result.doubled.values()) + at_hq_doubled, gaps=result.gaps,
           crashes=crashed)
    assert killed == kills and killed_early > 0 and crashed == 0
    assert sources["api"] > kills and sources["serial"] > kills  # verdicts came both ways
    assert not result.lost, f"verdicts shown, not in the ledger as shown: {result.lost[:5]}"
    assert not result.doubled, f"accepted more often than allowed: {result.doubled}"
    assert result.gaps == 0 and result.first_seq == 1 and result.quick_check == "ok"
    assert held == box and unconfirmed == 0
    assert at_hq_missing == 0 and at_hq_doubled == 0
