"""A storm: the daemon and the broker killed at random while scanning, ingest restarted.

The short form runs in the normal suite (six rounds, about ten seconds); whatever
the kills lost between box and HQ must come back through HQ's confirmations and requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from edge.ledger import Ledger
from hq.db import Database
from provisioning.dev import issue_coupons
from tests.daemon_fixtures import (
    ROOT,
    make_home,
    start_process,
    wait_scanner,
    wait_socket,
    write_scanner,
)
from tests.hq_support import Hq, hq_fixture, register, wait_until  # noqa: F401
from tests.sync_fixtures import DEVICE
from tests.test_delivery import FAST

pytestmark = [pytest.mark.network, pytest.mark.slow]
# The long form: STORM_ROUNDS=100 STORM_SEED=7 pytest tests/test_delivery_storm.py
ROUNDS = int(os.environ.get("STORM_ROUNDS", "6"))
SEED = int(os.environ.get("STORM_SEED", "10"))


def _hq_events(hq: Hq) -> list[tuple[int, str]]:
    db = Database(hq.db_url)
    try:
        return [(int(r[0]), str(r[1])) for r in db.query(
            "SELECT seq, event_id FROM hq_event WHERE device=? ORDER BY seq", (DEVICE,))]
    finally:
        db.close()


def _box_events(home: Path) -> tuple[list[tuple[int, str]], int, int]:
    ledger = Ledger(home / "ledger.sqlite")
    try:
        rows = [(int(r[0]), str(r[1])) for r in ledger.conn.execute(
            "SELECT seq, event_id FROM outbox ORDER BY seq")]
        return rows, ledger.backlog(), ledger.unconfirmed()
    finally:
        ledger.close()


async def test_storm_ends_with_every_event_at_hq_once_and_nothing_unconfirmed(
        tmp_path: Path, hq: Hq) -> None:
    """GIVEN a daemon syncing to a real mosquitto and HQ ingest WHEN, for several rounds,
    coupons are scanned while at random the daemon is SIGKILLed, mosquitto is SIGKILLed
    and started again, or ingest is stopped and started again THEN, once all are up, HQ
    holds every event of the box's outbox exactly once (same seq, same event id, no
    other), and the box has nothing unsent or unconfirmed (as `edge status` says)."""
    rng = random.Random(SEED)
    home = make_home(tmp_path)
    register(hq, home)  # HQ believes the box; the box trusts HQ's data key (confirmations)
    with (home / "edge.toml").open("a", encoding="utf-8") as f:
        f.write(f'\n[mqtt]\nhost = "127.0.0.1"\nport = {hq.broker.port}\nkeepalive_s = 5\n'
                "backoff_min_s = 0.1\nbackoff_max_s = 0.5\nconnect_timeout_s = 2.0\n"
                "resend_after_s = 2\n")
    coupons = issue_coupons(home, 40 * ROUNDS, prefix="S")
    worker = hq.worker(timing=FAST)
    proc = start_process(home)
    try:
        for r in range(ROUNDS):
            client = await wait_socket(home, proc)
            await wait_scanner(client)
            await client.close()
            for c in coupons[r * 40:(r + 1) * 40]:
                write_scanner(home, c.encode() + b"\n")
                await asyncio.sleep(rng.uniform(0.001, 0.01))
            await asyncio.sleep(rng.uniform(0.0, 0.2))
            blow = rng.choice(("daemon", "broker", "ingest", "daemon+broker"))
            if "broker" in blow:
                hq.broker.kill()  # what it acknowledged and did not deliver is gone
                hq.broker.start()
            if blow == "ingest":
                worker.stop()
                hq.workers.remove(worker)
                await asyncio.sleep(0.2)
                worker = hq.worker(timing=FAST)
            if "daemon" in blow:
                proc.kill()
                proc.wait(10)
                proc = start_process(home)
        await wait_socket(home, proc)

        def settled() -> bool:
            rows, unsent, unconfirmed = _box_events(home)
            return unsent == 0 and unconfirmed == 0 and _hq_events(hq) == rows

        wait_until(settled, timeout_s=60, what="HQ holding every box event, all confirmed")

        def status() -> str:
            return subprocess.run([sys.executable, "-m", "cli.edge", "--home", str(home),
                                   "status"], capture_output=True, text=True, timeout=30,
                                  env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout

        # The daemon's sync state follows the ledger within its half-second throttle.
        wait_until(lambda: "0 events to sync, 0 sent awaiting HQ's confirmation" in status(),
                   timeout_s=20, what="edge status saying nothing waits")
    finally:
        if proc.poll() is None:
            proc.terminate()
            with contextlib.suppress(Exception):
                proc.wait(10)
    rows, _, _ = _box_events(home)
    assert len(rows) >= 40  # scans were decided and recorded
    assert rows[0][0] == 1 and [s for s, _ in rows] == list(range(1, len(rows) + 1))
    assert hq.count("SELECT COUNT(*) FROM hq_event") == len(rows)  # exactly once
