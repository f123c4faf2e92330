"""Hostile input through the real daemon: the serial line and the local API at once."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import time
from pathlib import Path

from edge import tokens
from edged.localapi import ApiError, Client
from provisioning.dev import issue_coupons
from tests.daemon_fixtures import make_home, wait_scanner, write_scanner
from tests.daemon_proc import DaemonProcess
from tests.system.hostile import KINDS, generate
from tests.system.proof import record, scale

GENUINE = 24  # single-use coupons, each replayed many times among the hostile inputs
SERIAL_BATCH = 100  # serial lines between two looks at the daemon (its queue holds 1,000)


async def settle(client: Client, timeout: float = 30) -> int:
    """Wait until the daemon has decided every scan it was sent (its count stops moving)."""
    last, still = -1, 0
    deadline = time.monotonic() + timeout
    while still < 3:
        scans = int((await client.request("status"))["scans"])
        still = still + 1 if scans == last else 0
        last = scans
        assert time.monotonic() < deadline, "the daemon kept deciding for too long"
        await asyncio.sleep(0.05)
    return last


async def test_hostile_input_never_crashes_never_accepts_falsely_and_loses_nothing(
        tmp_path: Path) -> None:
    """GIVEN the daemon running on simulated devices with 24 genuine single-use coupons
    WHEN thousands of hostile inputs (random bytes, mutated codes, forged signatures, a
    rogue key under HQ's key id, replays, oversized lines, invalid UTF-8, serial noise) go in,
    alternately through the serial scanner line and the local API
    THEN the daemon keeps serving; every verdict the API gave is in the ledger as given; the
    only acceptances are genuine coupons, each once, and every genuine coupon shown through
    the API was accepted; the outbox has no gap; the ledger passes quick_check."""
    n = scale(2_000, 100_000)
    home = make_home(tmp_path)
    genuine = issue_coupons(home, GENUINE, prefix="G")
    first = tokens.parse(genuine[0])
    assert isinstance(first, tokens.Signed)
    inputs = list(generate(n, genuine, first.token.key_id, int(time.time())))
    assert {i.kind for i in inputs} == set(KINDS)
    daemon = DaemonProcess(home).start()  # its log goes to a file: a pipe nobody reads fills
    proc = daemon.proc
    assert proc is not None
    seen: list[tuple[int, bool]] = []
    api_genuine: set[str] = set()
    crashed = 0
    try:
        client = Client(daemon.path, timeout=30)
        await client.connect()
        await wait_scanner(client)
        serial = 0
        for i, inp in enumerate(inputs):
            try:
                text = inp.data.decode("utf-8") if i % 2 == 0 else None
            except UnicodeDecodeError:
                text = None  # not text: the API cannot carry it, the serial line can
            if text is not None:
                try:
                    v = await client.request("scan", code=text, till="API")
                except ApiError as exc:  # refused before deciding (too long a frame): no verdict
                    assert exc.code in ("bad_request",), exc
                    continue
                seen.append((int(v["decision_id"]), bool(v["accepted"])))
                if inp.genuine:
                    api_genuine.add(inp.genuine)
            else:
                write_scanner(home, inp.data + b"\n")
                serial += 1
                if serial % SERIAL_BATCH == 0:
                    await settle(client)
        await settle(client)
        status = await client.request("status")
        assert proc.poll() is None, "the daemon died"
        assert status["scans"] >= len(seen)
        await client.close()
    finally:
        if proc.poll() is not None:
            crashed = 1
        daemon.stop()
    assert crashed == 0

    db = sqlite3.connect(home / "ledger.sqlite")
    try:
        decided = dict(db.execute("SELECT id, accepted FROM decision").fetchall())
        lost = [d for d, acc in seen if decided.get(d) != int(acc)]
        accepted = [c for (c,) in db.execute(
            "SELECT code_id FROM decision WHERE accepted = 1 AND voided_at IS NULL")]
        seqs = [s for (s,) in db.execute("SELECT seq FROM outbox ORDER BY seq")]
        check = db.execute("PRAGMA quick_check").fetchall()
    finally:
        db.close()
    genuine_ids = {f"C:G-{i:05d}" for i in range(GENUINE)}
    doubled = len(accepted) - len(set(accepted))
    gaps = sum(b - a - 1 for a, b in itertools.pairwise(seqs) if b != a + 1)
    record("hostile input (serial + API)", runs=1, faults=n, verdicts=len(seen),
           lost=len(lost), doubled=doubled, gaps=gaps, crashes=crashed)
    assert not lost, f"verdicts shown but not recorded as shown: {lost[:5]}"
    assert set(accepted) <= genuine_ids, f"false accepts: {set(accepted) - genuine_ids}"
    assert doubled == 0
    assert set(accepted) >= {f"C:G-{i:05d}" for i in range(GENUINE)
                             if genuine[i] in api_genuine}
    assert gaps == 0 and seqs[0] == 1
    assert check == [("ok",)]
