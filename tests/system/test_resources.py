"""Resources failing under the daemon: a corrupt ledger page, and memory held tight.

Disk full has its own tests (tests/test_disk_full.py, on a real size-limited tmpfs).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import resource
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

from edge.box import Box
from edged.localapi import MAX_LINE, Client, ErrorCode
from provisioning.dev import issue_coupons
from tests.daemon_fixtures import ROOT, make_home, wait_scanner, write_scanner
from tests.daemon_proc import DaemonProcess
from tests.smalldisk import mounted
from tests.system.proof import record, scale
from tests.system.storm import audit, code_mix, scan_order

MB = 1024 * 1024


def corrupt_a_page(ledger: Path) -> int:
    """Overwrite the middle of the ``decision`` table's root page with noise; its number."""
    db = sqlite3.connect(ledger)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every page in the main file
        page_size = int(db.execute("PRAGMA page_size").fetchone()[0])
        page = int(db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'decision'"
                              ).fetchone()[0])
    finally:
        db.close()
    with ledger.open("r+b") as f:
        f.seek((page - 1) * page_size)
        f.write(random.Random(page).randbytes(page_size // 2))
    return page


def edge_run(home: Path) -> subprocess.CompletedProcess[str]:
    """``edge run --simulate`` as systemd starts it, expected to refuse and exit."""
    return subprocess.run([sys.executable, "-m", "cli.edge", "--home", str(home), "run",
                           "--simulate"], capture_output=True, text=True, timeout=60,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


async def test_a_read_only_ledger_is_refused_at_start_and_the_daemon_recovers(
        tmp_path: Path) -> None:
    """GIVEN a box home whose ledger lives on its own filesystem (a tmpfs), with a coupon
    already accepted
    WHEN that filesystem is read-only (as the kernel remounts an SD card after I/O errors)
    and the daemon starts, then it is made writable again and the daemon starts again
    THEN the first start decides nothing: one line says the ledger is read-only and the
    daemon exits 1 (systemd starts it again), the file untouched; the second start serves,
    refuses the coupon already used and accepts a fresh one."""
    home = make_home(tmp_path)
    codes = issue_coupons(home, 2, prefix="RO")
    data = home / "data"
    (home / "edge.toml").open("a").write('\n[paths]\nledger = "data/ledger.sqlite"\n')
    with mounted(data, "16m"):
        shutil.move(home / "ledger.sqlite", data / "ledger.sqlite")  # closed cleanly: no -wal
        box = Box.open(home)
        try:
            assert box.counter.redeem(codes[0], till="RO").accepted
        finally:
            box.close()
        before = (data / "ledger.sqlite").read_bytes()
        remount(data, "ro")
        try:
            done = edge_run(home)
            assert (data / "ledger.sqlite").read_bytes() == before
        finally:
            remount(data, "rw")
        record("resources: read-only ledger at start", runs=2, faults=1,
               crashes=int(done.returncode not in (0, 1)))
        assert done.returncode == 1, done.stderr
        assert "is on a read-only filesystem" in done.stderr and "Traceback" not in done.stderr
        daemon = DaemonProcess(home).start()
        try:
            client = Client(daemon.path, timeout=10)
            await client.connect()
            again = await client.request("scan", code=codes[0], till="RO")
            fresh = await client.request("scan", code=codes[1], till="RO")
            await client.close()
        finally:
            daemon.stop()
    assert not again["accepted"] and again["reason"] == "already_used_here", again
    assert fresh["accepted"], fresh


def remount(path: Path, mode: str) -> None:
    """``mount -o remount,MODE`` the filesystem at ``path`` (root, as CI runs)."""
    done = subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, f"cannot remount {path} {mode}: {done.stderr.strip()}"


def test_a_corrupt_ledger_page_is_found_at_start_reported_and_never_used(
        tmp_path: Path) -> None:
    """GIVEN a box home whose ledger holds decisions
    WHEN one page of the real SQLite file is overwritten with noise, and the daemon starts
    THEN PRAGMA quick_check finds it: the daemon says the ledger is damaged (naming the page
    and the way out) and exits 2 (systemd does not restart it) without writing a byte to the
    file; with the good file restored it starts and serves again."""
    home = make_home(tmp_path)
    codes = code_mix(home, 10, random.Random(3), prefix="Q")
    box = Box.open(home)
    try:
        for c in codes:
            box.counter.redeem(c.text, till="Q")
    finally:
        box.close()
    ledger = home / "ledger.sqlite"
    good = ledger.read_bytes()
    page = corrupt_a_page(ledger)
    bad = ledger.read_bytes()
    assert bad != good
    done = edge_run(home)
    record("resources: corrupt ledger page at start", runs=1, faults=1,
           crashes=int(done.returncode not in (0, 2)))
    assert done.returncode == 2, done.stderr
    assert page > 1 and "is damaged (quick_check: " in done.stderr, done.stderr
    assert "edge restore" in done.stderr
    assert ledger.read_bytes() == bad  # looked at, never used
    ledger.write_bytes(good)
    daemon = DaemonProcess(home).start()  # the restored ledger passes and serves
    daemon.stop()


async def test_memory_held_tight_the_daemon_keeps_deciding_right(tmp_path: Path) -> None:
    """GIVEN the real daemon whose address space is capped (RLIMIT_AS, set on the running
    process with prlimit) 8 MB above what it has mapped once serving
    WHEN codes of every kind are scanned through the API, and oversized lines (64 KB to 1 MB)
    go in through the serial line and as raw frames to the local API in between
    THEN the daemon keeps running and answering; each verdict shown is in the ledger as
    shown; no code is accepted beyond its uses; no gap in the outbox."""
    scans = scale(150, 3_000)
    rng = random.Random(41)
    home = make_home(tmp_path)
    codes = code_mix(home, scans // 2 + 1, rng, prefix="M")
    daemon = DaemonProcess(home, env={"MALLOC_ARENA_MAX": "2"}).start()
    proc = daemon.proc
    assert proc is not None
    seen: list[tuple[int, bool]] = []
    big = refused = 0
    try:
        client = Client(daemon.path, timeout=30)
        await client.connect()
        await wait_scanner(client)
        mapped = vm_size(proc.pid)
        # Room for the daemon's own growth (its threads' stacks are mapped already), not
        # for a hostile input's full size: the caps on lines and frames must hold.
        cap = mapped + 8 * MB
        resource.prlimit(proc.pid, resource.RLIMIT_AS, (cap, cap))
        for i, code in enumerate(scan_order(codes, scans, rng)):
            if i % 25 == 0:
                size = rng.randrange(64, 1024) * 1024
                write_scanner(home, b"SE" + b"A" * size + b"\n")
                refused += await oversized_frame(daemon.path, size)
                big += 2
            v = await client.request("scan", code=code.text, till="MEM")
            seen.append((int(v["decision_id"]), bool(v["accepted"])))
        status = await client.request("status")
        assert status["scans"] >= len(seen)
        await client.close()
        alive = proc.poll() is None
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
    finally:
        daemon.stop()
    result = audit(home / "ledger.sqlite", seen, codes)
    record("resources: address space capped (RLIMIT_AS)", runs=1, faults=big,
           verdicts=len(seen), lost=len(result.lost), doubled=sum(result.doubled.values()),
           gaps=result.gaps, crashes=int(not alive))
    assert alive, "the daemon died under the memory cap"
    assert str(cap) in limits  # the cap really applied to the daemon
    assert big > 0 and refused == big // 2  # each oversized API frame got bad_request
    assert not result.lost and not result.doubled
    assert result.gaps == 0 and result.quick_check == "ok"


async def oversized_frame(path: Path, size: int) -> int:
    """Send one scan frame of ``size`` bytes on a raw connection; 1 if refused as too long."""
    reader, writer = await asyncio.open_unix_connection(str(path), limit=MAX_LINE * 2)
    try:
        writer.write(b'{"id":1,"op":"scan","args":{"code":"SE' + b"C" * size + b'"}}\n')
        await writer.drain()
        reply = json.loads(await asyncio.wait_for(reader.readline(), 30))
    finally:
        writer.close()
    return int(not reply["ok"] and reply["error"]["code"] == ErrorCode.BAD_REQUEST)


def vm_size(pid: int) -> int:
    """Bytes of address space ``pid`` has mapped (VmSize)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmSize for {pid}")
