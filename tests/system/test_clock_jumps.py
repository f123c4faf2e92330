"""The daemon's wall clock jumped back and forward by hours (and days) during a storm of scans.

A box with no RTC gets its time from NTP or HQ; either can be wrong for a while. The
verdicts must not care: validity windows are judged at a time never earlier than the last
trusted one, and use counts do not depend on time at all.
"""

from __future__ import annotations

import random
import sqlite3
import time
from pathlib import Path

from edge.ledger import Ledger
from edged.localapi import Client
from tests.daemon_fixtures import make_home
from tests.daemon_proc import DaemonProcess
from tests.system.fakeclock import FakeClock
from tests.system.proof import record, scale
from tests.system.storm import audit, code_mix, scan_order

HOUR = 3600
# Jumps the clock takes in turn: hours either way, and ten days back (where, without the
# trusted-time floor, a coupon that expired a week ago would be valid again).
OFFSETS = (-3 * HOUR, 5 * HOUR, -8 * HOUR, 0, 11 * HOUR, -10 * 86400, 2 * HOUR, -1 * HOUR)


async def test_clock_jumps_keep_every_verdict_right(tmp_path: Path) -> None:
    """GIVEN the real daemon with a trusted time (as an HQ-signed time sets it), its wall
    clock under the test's control (libfaketime)
    WHEN codes of every kind are scanned through the local API while the clock jumps back
    and forward by hours, and once ten days back
    THEN each verdict is the one a right clock gives (first use of a valid coupon or pickup
    accepted, a multi-use coupon three times, forged and expired never, repeats refused);
    a verdict made while the clock read behind the trusted time says the clock was unsure
    and is dated no earlier than the trusted time; no gap in the outbox; nothing lost."""
    scans = scale(240, 4_000)
    rng = random.Random(23)
    home = make_home(tmp_path)
    trusted = time.time()
    ledger = Ledger(home / "ledger.sqlite")
    try:
        with ledger.immediate() as conn:
            ledger.advance_trusted_time(conn, trusted, "hq")
    finally:
        ledger.close()
    codes = code_mix(home, scans // 2 + 1, rng, prefix="J")
    order = scan_order(codes, scans, rng)
    clock = FakeClock(tmp_path / "faketime")
    daemon = DaemonProcess(home, env=clock.env()).start()
    uses: dict[str, int] = {}
    seen: list[tuple[int, bool]] = []
    wrong: list[str] = []
    behind_trusted = 0
    try:
        client = Client(daemon.path, timeout=10)
        await client.connect()
        for i, code in enumerate(order):
            if i % 20 == 0:  # a jump every twenty scans, in turn
                clock.set(OFFSETS[(i // 20) % len(OFFSETS)] + rng.randrange(-60, 60))
            v = await client.request("scan", code=code.text, till="CLK")
            seen.append((int(v["decision_id"]), bool(v["accepted"])))
            right = uses.get(code.code_id, 0) < code.allowed
            if bool(v["accepted"]) != right:
                wrong.append(f"{code.kind} {code.code_id} at offset {clock.offset_s}: {v}")
            if v["accepted"]:
                uses[code.code_id] = uses.get(code.code_id, 0) + 1
            if clock.offset_s < -300:  # behind the trusted time by more than the skew
                behind_trusted += 1
                if v["clock_trusted"] or float(v["decided_at"]) < trusted:
                    wrong.append(f"trusted a clock {clock.offset_s} s behind: {v}")
        assert daemon.proc is not None and daemon.proc.poll() is None
        await client.close()
    finally:
        daemon.stop()
    result = audit(home / "ledger.sqlite", seen, codes)
    db = sqlite3.connect(home / "ledger.sqlite")
    try:
        latest = float(db.execute("SELECT MAX(at) FROM decision").fetchone()[0])
    finally:
        db.close()
    record("clock jumps (hours, days) during scans", runs=1, faults=clock.jumps,
           verdicts=len(seen), lost=len(result.lost), doubled=sum(result.doubled.values()),
           gaps=result.gaps)
    assert clock.jumps >= len(OFFSETS) and behind_trusted > 0
    assert latest > trusted + 10 * HOUR  # the daemon's clock really moved
    assert not wrong, wrong[:5]
    assert not result.lost and not result.doubled
    assert result.gaps == 0 and result.first_seq == 1 and result.quick_check == "ok"
