from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge.box import Box, init_home
from edge.ledger import Ledger, LedgerError
from edge.verdict import Reason
from tests.factory import STORE, Hq

ROOT = Path(__file__).resolve().parent.parent


def _worker(home: Path, start: Path, codes: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tests.redeem_worker", str(home), str(start),
                             *codes], cwd=ROOT, stdout=subprocess.PIPE, text=True)


def _home(tmp_path: Path, hq: Hq) -> Path:
    # Real wall clock here: the workers are separate processes.
    home = tmp_path / "box"
    init_home(home, STORE, "BJ001-T1", [hq.trusted])
    return home


def _live_coupon(hq: Hq, coupon_id: str, max_uses: int = 1) -> str:
    now = int(time.time())
    return hq.coupon(coupon_id=coupon_id, valid_from=now - 60, valid_until=now + 3600,
                     max_uses=max_uses)


@pytest.mark.parametrize("workers", [2, 4])
def test_single_use_under_concurrent_processes(tmp_path: Path, hq: Hq, workers: int) -> None:
    """GIVEN several processes holding the same single-use coupon and a 3-use coupon
    WHEN they all redeem at the same instant THEN exactly one (resp. three) accept."""
    home = _home(tmp_path, hq)
    single, triple = _live_coupon(hq, "RACE-1"), _live_coupon(hq, "RACE-3", max_uses=3)
    start = tmp_path / "go"
    procs = [_worker(home, start, [single, triple]) for _ in range(workers)]
    time.sleep(0.5)  # let every worker open the ledger and wait on the start file
    start.touch()
    outputs = [json.loads(line) for p in procs
               for line in p.communicate(timeout=60)[0].splitlines()]
    assert all(p.returncode == 0 for p in procs)
    by_code: dict[str, list[dict[str, object]]] = {}
    for o in outputs:
        by_code.setdefault(str(o["code_id"]), []).append(o)
    assert sum(o["accepted"] for o in by_code["C:RACE-1"]) == 1
    assert sum(o["accepted"] for o in by_code["C:RACE-3"]) == min(3, workers)
    assert all(o["reason"] in (None, Reason.ALREADY_USED_HERE) for o in outputs)


def test_kill_9_loses_no_acknowledged_decision(tmp_path: Path, hq: Hq) -> None:
    """GIVEN a process redeeming a stream of single-use coupons WHEN it is killed -9 mid-stream
    THEN every verdict it printed (after commit) is in the ledger with its outbox event, the
    outbox sequence has no gap, and every coupon it accepted is rejected when shown again."""
    home = _home(tmp_path, hq)
    codes = [_live_coupon(hq, f"K-{i}") for i in range(400)]
    start = tmp_path / "go"
    start.touch()
    proc = _worker(home, start, codes)
    assert proc.stdout is not None
    seen = [json.loads(proc.stdout.readline()) for _ in range(60)]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    box = Box.open(home)
    try:
        conn = box.ledger.conn
        recorded = {r[0] for r in conn.execute("SELECT id FROM decision WHERE accepted=1")}
        assert {s["id"] for s in seen} <= recorded
        seqs = [r[0] for r in conn.execute("SELECT seq FROM outbox ORDER BY seq")]
        assert seqs == list(range(1, len(seqs) + 1))
        assert len(seqs) == len(recorded)
        for s in seen[:10]:
            code = codes[int(str(s["code_id"]).split("-")[1])]
            assert box.counter.redeem(code).reason is Reason.ALREADY_USED_HERE
    finally:
        box.close()


def test_outbox_sequence_stays_gapless_across_rollback(tmp_path: Path) -> None:
    """GIVEN an outbox WHEN a transaction that appended an event rolls back THEN the next event
    takes the rolled-back number: no gap for HQ to chase."""
    from edge.events import EventType

    ledger = Ledger(tmp_path / "l.sqlite")
    with ledger.immediate() as conn:
        ledger.append_event(conn, EventType.CLOCK, 1.0, True, {})
    with pytest.raises(RuntimeError), ledger.immediate() as conn:
        ledger.append_event(conn, EventType.CLOCK, 2.0, True, {})
        raise RuntimeError("power cut")
    with ledger.immediate() as conn:
        seq, _ = ledger.append_event(conn, EventType.CLOCK, 3.0, True, {})
    assert seq == 2
    assert [e.seq for e in ledger.pending_events()] == [1, 2]
    ledger.mark_sent([(1, 1)])
    assert [e.seq for e in ledger.pending_events()] == [2] and ledger.backlog() == 1


def test_ledger_from_newer_software_is_refused(tmp_path: Path) -> None:
    """GIVEN a ledger written by a newer schema WHEN opened THEN a clear error, data untouched."""
    path = tmp_path / "l.sqlite"
    Ledger(path).close()
    import sqlite3

    with sqlite3.connect(path) as c:
        c.execute("PRAGMA user_version = 99")
    with pytest.raises(LedgerError, match="newer"):
        Ledger(path)


def test_ledger_is_wal_with_full_sync(tmp_path: Path) -> None:
    """GIVEN a ledger THEN it runs in WAL mode with synchronous=FULL (2) and a busy timeout."""
    ledger = Ledger(tmp_path / "l.sqlite")
    conn = ledger.conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
