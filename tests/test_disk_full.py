"""A full disk: redemptions are refused with a clear message, nothing recorded is lost,
the daemon keeps running, and recording resumes once space returns. On a real tmpfs."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from edge.ledger import Ledger, LedgerFull
from edged.localapi import ApiError, Client, ErrorCode
from edged.storage import RESERVE_NAME
from provisioning.dev import ensure_demo_home, issue_coupons
from tests.daemon_fixtures import ROOT, wait_socket
from tests.factory import Clock, Hq, make_box
from tests.uihelp import WatchedApp, connected, headline, panel_text, plain, type_code, until
from ui.status_bar import StatusBar

if TYPE_CHECKING:
    from tests.smalldisk import SmallDisk

pytest_plugins = ["tests.smalldisk"]

MOST = 2000  # scans tried before the disk must have refused one


def ledger_rows(path: Path) -> tuple[dict[int, str], list[int]]:
    """Decisions (id -> code id) and outbox seqs, after PRAGMA quick_check says ok."""
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        decisions = dict(conn.execute("SELECT id, code_id FROM decision").fetchall())
        seqs = [r[0] for r in conn.execute("SELECT seq FROM outbox ORDER BY seq")]
    finally:
        conn.close()
    return decisions, seqs


def test_counter_refuses_on_full_disk_and_resumes(small_disk: SmallDisk) -> None:
    """GIVEN a box whose ledger is on a 4 MiB tmpfs, with 5 redemptions recorded
    WHEN the filesystem is filled and coupons keep being redeemed
    THEN a redemption raises LedgerFull naming the disk, leaves no decision or event behind
    and does not use the coupon up; once space is freed the same coupon is accepted and
    recorded, quick_check is ok and every earlier decision is still there."""
    hq, clock = Hq(), Clock()
    box = make_box(small_disk.path / "box", hq, clock)
    try:
        before = [box.counter.redeem(hq.coupon(coupon_id=f"OK-{i}")).decision_id
                  for i in range(5)]
        small_disk.fill()
        recorded: list[int | None] = []
        refused = None
        for i in range(MOST):
            code = hq.coupon(coupon_id=f"F-{i}")
            try:
                recorded.append(box.counter.redeem(code).decision_id)
            except LedgerFull as exc:
                refused = (code, exc)
                break
        assert refused is not None, f"{MOST} redemptions fitted on a full disk"
        code, exc = refused
        assert "disk full" in str(exc) and exc.path == box.ledger.path
        count = box.ledger.conn.execute("SELECT COUNT(*) FROM decision").fetchone()[0]
        assert count == 5 + len(recorded)
        with pytest.raises(LedgerFull):  # still full: refused again, the connection is sane
            box.counter.redeem(code)
        small_disk.release()
        verdict = box.counter.redeem(code)
        assert verdict.accepted and verdict.decision_id is not None
        assert not box.counter.redeem(code).accepted  # now it is used
    finally:
        box.close()
    decisions, seqs = ledger_rows(small_disk.path / "box" / "ledger.sqlite")
    assert all(d in decisions for d in before + recorded)
    assert decisions[verdict.decision_id] == "C:F-" + str(len(recorded))
    assert seqs == list(range(1, len(seqs) + 1))  # the outbox stayed gapless


def start_daemon(home: Path, log: Path) -> subprocess.Popen[str]:
    """``edge run --simulate`` on ``home``, logging to ``log`` (off the small disk: a pipe
    nobody reads would stall it, a log on the full disk would fail with it)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT),
           "ESCPOS_CAPABILITIES_PICKLE_DIR": str(log.parent / "escpos")}
    with log.open("w") as out:
        return subprocess.Popen([sys.executable, "-m", "cli.edge", "--home", str(home), "run",
                                 "--simulate"], env=env, stdout=out, stderr=subprocess.STDOUT,
                                text=True)


def stop_daemon(proc: subprocess.Popen[str], log: Path) -> str:
    """SIGTERM, wait, and the log; the exit status must be 0."""
    proc.send_signal(signal.SIGTERM)
    proc.wait(20)
    out = log.read_text()
    assert proc.returncode == 0, out
    return out


async def scan_until_full(client: Client, coupons: list[str]) -> tuple[list[int], str]:
    """Scan ``coupons`` in turn until one is refused for a full disk."""
    acked = []
    for code in coupons:
        try:
            acked.append((await client.request("scan", code=code))["decision_id"])
        except ApiError as exc:
            assert exc.code == ErrorCode.STORAGE_FULL, exc
            return acked, code
    raise AssertionError(f"{len(coupons)} scans fitted on a full disk")


async def wait_status(client: Client, full: bool, timeout: float = 20) -> dict[str, object]:
    async with asyncio.timeout(timeout):
        while (st := await client.request("status"))["storage"]["full"] is not full:
            await asyncio.sleep(0.1)
    return st


async def test_daemon_refuses_while_full_keeps_running_and_recovers(
        small_disk: SmallDisk, tmp_path: Path) -> None:
    """GIVEN the real daemon process with its home on a 4 MiB tmpfs, 3 scans acknowledged
    WHEN the disk is filled and scans keep coming over the local API
    THEN a scan is answered storage_full (not internal) saying the disk is full, the status
    says storage full, the daemon keeps serving; restarted on the full disk it spends its
    storage reserve to open the ledger, records until that is used up and refuses the
    same way again; once space is freed the status clears by
    itself, the refused coupon is then accepted and recorded, the daemon stops cleanly and
    the ledger passes quick_check with every acknowledged decision."""
    home = small_disk.path / "home"
    assert ensure_demo_home(home)
    coupons = issue_coupons(home, MOST, prefix="D")
    log = tmp_path / "daemon.log"
    proc = start_daemon(home, log)
    try:
        client = await wait_socket(home, proc)
        async with asyncio.timeout(20):  # the reserve a restart on a full disk will need
            while not (home / RESERVE_NAME).exists():
                await asyncio.sleep(0.05)
        acked = [(await client.request("scan", code=c))["decision_id"] for c in coupons[:3]]
        small_disk.fill()
        more, refused = await scan_until_full(client, coupons[3:])
        acked += more
        st = await client.request("status")
        assert st["storage"]["full"] is True and "disk full" in st["storage"]["detail"]
        with pytest.raises(ApiError) as again:
            await client.request("scan", code=refused)
        assert again.value.code == ErrorCode.STORAGE_FULL
        assert "disk full" in str(again.value)
        assert proc.poll() is None
        await client.close()
        stop_daemon(proc, log)  # a restart on the full disk (power cut, watchdog)
        small_disk.fill()
        proc = start_daemon(home, log)  # opens the ledger with the reserve's space
        client = await wait_socket(home, proc)
        assert not (home / RESERVE_NAME).exists()
        more, refused = await scan_until_full(client, [refused, *coupons[len(acked) + 1:]])
        acked += more
        assert "released the storage reserve" in log.read_text()
        small_disk.release()
        await wait_status(client, full=False)  # the daemon noticed the space by itself
        verdict = await client.request("scan", code=refused)
        assert verdict["accepted"] is True
        acked.append(verdict["decision_id"])
        await client.close()
    finally:
        out = stop_daemon(proc, log)
    assert "storage full" in out and "recording resumed" in out
    decisions, _seqs = ledger_rows(home / "ledger.sqlite")
    assert all(d in decisions for d in acked)


async def test_cashier_ui_says_disk_full_and_clears(small_disk: SmallDisk, tmp_path: Path) -> None:
    """GIVEN the cashier UI on the real daemon whose home is on a 4 MiB tmpfs, disk filled
    WHEN the cashier types codes until one cannot be recorded, then space is freed
    THEN the verdict panel says 未能判定 with the storage-full advice (give no benefit,
    the manager must free space), the status bar shows 存储已满, and it goes away once the
    daemon sees the space back."""
    home = small_disk.path / "home"
    assert ensure_demo_home(home)
    log = tmp_path / "daemon.log"
    proc = start_daemon(home, log)
    try:
        await (await wait_socket(home, proc)).close()  # serving
        app = WatchedApp(home / "run" / "edge.sock", clock=time.time, status_poll_s=0.5)
        async with app.run_test(size=(100, 24)) as pilot:
            await connected(pilot, app)
            small_disk.fill()
            for i in range(MOST):
                await type_code(pilot, f"NOT-A-CODE-{i}")  # rejections are recorded too
                await until(pilot, lambda n=i: len(app.scan_pane.history) > n
                            or "存储空间已满" in panel_text(app), "a verdict or a failure")
                if "存储空间已满" in panel_text(app):
                    break
            assert headline(app) == "未能判定" and "请勿给予优惠" in panel_text(app)
            await until(pilot, lambda: "存储已满" in plain(app.query_one(StatusBar)),
                        "the status bar says the disk is full")
            small_disk.release()
            await until(pilot, lambda: "存储已满" not in plain(app.query_one(StatusBar)),
                        "the alarm clears once space is back", limit_s=20)
    finally:
        stop_daemon(proc, log)


def test_opening_the_ledger_on_a_full_disk_says_disk_full(small_disk: SmallDisk) -> None:
    """GIVEN a closed ledger on a tmpfs that is then filled
    WHEN it is opened (WAL mode must create its -shm and -wal files)
    THEN LedgerFull says the disk is full (not a bare "disk I/O error"); once space is
    freed it opens with every decision and passes quick_check."""
    hq, clock = Hq(), Clock()
    box = make_box(small_disk.path / "box", hq, clock)
    decided = box.counter.redeem(hq.coupon()).decision_id
    box.close()
    small_disk.fill()
    with pytest.raises(LedgerFull, match="disk full"):
        Ledger(small_disk.path / "box" / "ledger.sqlite")
    small_disk.release()
    ledger = Ledger(small_disk.path / "box" / "ledger.sqlite")
    ledger.close()
    decisions, _seqs = ledger_rows(small_disk.path / "box" / "ledger.sqlite")
    assert decided in decisions
