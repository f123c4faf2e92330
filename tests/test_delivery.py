"""Nothing lost between box and HQ: HQ confirms what it committed, the box resends the rest.

Real mosquitto (which forgets shared subscriptions across a restart, so it acknowledges
and drops batches until ingest subscribes again), real ``edge sync`` processes, HQ's ingest
worker and its SQLite database.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge.box import Box, init_home
from edge.ledger import Ledger
from hq.db import Database, DbUrl
from hq.ingest.delivery import DeliveryTiming
from hq.reports import stores as report
from tests.hq_support import Hq, hq_fixture, register, wait_until  # noqa: F401
from tests.sync_fixtures import DEVICE, STORE, append_events

pytestmark = pytest.mark.network
ROOT = Path(__file__).resolve().parent.parent
FAST = DeliveryTiming(confirm_every_s=0.1, ask_after_s=0.3, ask_max_s=2.0)


def _home(tmp_path: Path, hq: Hq) -> Path:
    home = tmp_path / "box"
    init_home(home, STORE, DEVICE, hq.trusted)
    register(hq, home)
    with (home / "edge.toml").open("a", encoding="utf-8") as f:
        f.write(f'\n[mqtt]\nhost = "127.0.0.1"\nport = {hq.broker.port}\nkeepalive_s = 5\n'
                "backoff_max_s = 0.5\nresend_after_s = 3\n")
    return home


def _events(home: Path, n: int = 1) -> None:
    box = Box.open(home)
    try:
        for i in range(n):
            box.issue_card(f"R-{i}")
    finally:
        box.close()


def _edge(home: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "cli.edge", "--home", str(home), *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _sync(home: Path, *flags: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(_edge(home, "sync", *flags, "--timeout", str(timeout)),
                          capture_output=True, text=True, timeout=timeout + 30, env=_env())
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def _seqs(hq: Hq) -> list[int]:
    """The seqs of the device HQ's database holds (a connection of its own, closed)."""
    db = Database(hq.db_url)
    try:
        return [int(r[0]) for r in db.query(
            "SELECT seq FROM hq_event WHERE device=? ORDER BY seq", (DEVICE,))]
    finally:
        db.close()


def _stop_hq(hq: Hq) -> None:
    """Ingest stopped and every HQ connection closed (as for a restore)."""
    for w in hq.workers:
        w.stop()
    hq.workers.clear()
    for db in hq.dbs:
        db.close()
    hq.dbs.clear()


def _backup(hq: Hq, tmp_path: Path) -> str:
    """A copy of HQ's database as it is now (HQ stopped meanwhile); the copy's URL."""
    _stop_hq(hq)
    url = DbUrl.parse(hq.db_url)
    if url.dialect == "sqlite":
        copy = tmp_path / "hq-backup.sqlite"
        src, dst = sqlite3.connect(url.target), sqlite3.connect(copy)
        src.backup(dst)
        src.close()
        dst.close()
        return f"sqlite:///{copy}"
    import psycopg  # the PostgreSQL run: a database copied from the live one as template

    base, name = hq.db_url.rsplit("/", 1)
    copy_name = f"{name}_backup"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {copy_name} TEMPLATE {name}")
    return f"{base}/{copy_name}"


def _box(home: Path) -> tuple[int, int, int, int]:
    """``(newest seq, unsent, sent but unconfirmed, confirmed seq)`` of the box's ledger."""
    ledger = Ledger(home / "ledger.sqlite")
    try:
        return (ledger.newest_seq(), ledger.backlog(), ledger.unconfirmed(),
                ledger.confirmed()[0])
    finally:
        ledger.close()


@pytest.mark.broker_needs(
    "persistence", reason="the steps restart the broker with ingest's session kept")
def test_the_five_steps_of_issue_10_end_with_hq_holding_every_seq(tmp_path: Path,
                                                                  hq: Hq) -> None:
    """GIVEN broker and ingest up, a box home WHEN (1) an event is synced; (2) ingest stops
    (its session kept) and an event is synced; (3) mosquitto restarts cleanly (forgetting
    ingest's shared subscription), ingest still down, and an event is synced (the broker
    acknowledges and drops it); (4) ingest starts again; (5) an event is synced THEN HQ
    ends with every seq 1-4 exactly once, no open gap, and the box has nothing unsent or
    unconfirmed (`edge sync --until-confirmed` exits 0)."""
    home = _home(tmp_path, hq)
    hq.worker(timing=FAST)
    _events(home)
    _sync(home, "--until-drained")
    wait_until(lambda: _seqs(hq) == [1], what="seq 1 at HQ")
    hq.workers.pop().stop()
    _events(home)
    _sync(home, "--until-drained")
    hq.broker.restart()
    _events(home)
    done = _sync(home, "--until-drained")
    assert "backlog=0" in done.stdout
    assert _box(home)[2] >= 1  # acknowledged by the broker, and not confirmed by HQ
    hq.worker(timing=FAST)
    wait_until(lambda: _seqs(hq) == [1, 2], what="seq 2 delivered from ingest's session")
    _events(home)
    _sync(home, "--until-confirmed")
    assert _seqs(hq) == [1, 2, 3, 4]
    assert hq.count("SELECT COUNT(*) FROM hq_gap WHERE missing>0") == 0
    assert _box(home) == (4, 0, 0, 4)
    text = report.to_text(report.build(hq.dbs[-1]))
    assert "HQ holds 1-4" in text and "ASKING" not in text


def _backlog(home: Path, n: int, batch_size: int | None = None) -> None:
    ledger = Ledger(home / "ledger.sqlite")
    try:
        append_events(ledger, n)
        if batch_size is not None:  # one event a message: a drain slow enough to cut
            with ledger.immediate() as conn:
                ledger.put_setting(conn, "sync_policy", {"batch_size": batch_size,
                                                         "linger_ms": 0})
    finally:
        ledger.close()


@pytest.mark.parametrize("ingest_down", [False, True], ids=["ingest-up", "ingest-down"])
def test_mosquitto_killed_mid_drain_costs_a_resend_not_an_event(tmp_path: Path, hq: Hq,
                                                               ingest_down: bool) -> None:
    """GIVEN 3000 events draining one a message through `edge sync --until-confirmed` WHEN
    mosquitto is SIGKILLed mid-drain (some sent, some not; losing every message and session
    it held) and started again
    (with ingest down across the restart, in one variant) THEN the box exits 0 and HQ holds
    every seq exactly once, with nothing unsent or unconfirmed left on the box."""
    home = _home(tmp_path, hq)
    worker = hq.worker(timing=FAST)
    _backlog(home, 3000, batch_size=1)
    sync = subprocess.Popen(_edge(home, "sync", "--until-confirmed", "--timeout", "90"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env())
    try:
        if ingest_down:
            worker.stop()
            hq.workers.remove(worker)
        # Mid-drain: the box has sent part of its backlog, not all of it.
        wait_until(lambda: 0 < _box(home)[1] < 3000, what="the drain half way")
        hq.broker.kill()
        hq.broker.start()
        if ingest_down:
            time.sleep(0.5)  # the box reconnects and sends into a broker nobody reads
            hq.worker(timing=FAST)
        out, err = sync.communicate(timeout=120)
        assert sync.returncode == 0, out[-2000:] + err[-2000:]
    finally:
        if sync.poll() is None:
            sync.kill()
            sync.wait()
    assert _seqs(hq) == list(range(1, 3001))
    assert _box(home) == (3000, 0, 0, 3000)


def test_an_hq_database_rolled_back_to_a_backup_gets_every_event_again(tmp_path: Path,
                                                                      hq: Hq) -> None:
    """GIVEN HQ confirmed events 1-20, its database copied, then 21-50 confirmed too WHEN
    HQ's database is put back to the copy and ingest restarts THEN HQ, learning the box's
    newest seq from its retained presence, asks for 21-50; the box (which still holds them
    though they were confirmed) sends them again, and HQ ends with 1-50 once each."""
    home = _home(tmp_path, hq)
    hq.worker(timing=FAST)
    _backlog(home, 20)
    _sync(home, "--until-confirmed")
    backup = _backup(hq, tmp_path)
    hq.worker(timing=FAST)
    _backlog(home, 30)
    _sync(home, "--until-confirmed")
    assert _seqs(hq) == list(range(1, 51)) and _box(home) == (50, 0, 0, 50)
    _stop_hq(hq)
    hq.db_url = backup  # HQ restored from the copy
    assert _seqs(hq) == list(range(1, 21))
    hq.worker(timing=FAST)
    sync = subprocess.Popen(_edge(home, "sync"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=_env())
    try:
        wait_until(lambda: _seqs(hq) == list(range(1, 51)) and _box(home) == (50, 0, 0, 50),
                   timeout_s=60, what="HQ holding 1-50 again, confirmed")
    finally:
        sync.terminate()
        sync.wait(10)
    assert hq.count("SELECT COUNT(*) FROM hq_event") == 50
