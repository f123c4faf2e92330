"""``edge backup`` / ``edge restore``: a consistent copy while the daemon writes, a private
file, tamper and overwrite refusals, and a replacement box that continues the device's
sequence numbers without reusing any, through a real broker into HQ's real ingest."""

from __future__ import annotations

import json
import sqlite3
import stat
import tarfile
from pathlib import Path

import pytest

from cli import hq as hq_cli
from cli.edge import main
from edge.box import Box
from provisioning.backup import BackupError, backup, read_manifest, restore
from provisioning.dev import ensure_demo_home, issue_coupons
from tests.daemon_fixtures import running
from tests.hq_support import Hq, hq_fixture, register, wait_until  # noqa: F401

DEVICE = "BJ001-T1"


def redeem(home: Path, codes: list[str]) -> None:
    box = Box.open(home)
    try:
        for c in codes:
            assert box.counter.redeem(c, source="cli").accepted
    finally:
        box.close()


def sync(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--home", str(home), "sync", "--until-drained", "--timeout", "30"]) == 0
    capsys.readouterr()


def hq_last_seq(hq: Hq, capsys: pytest.CaptureFixture[str]) -> int:
    """What an operator reads: ``edge-hq report --json``, devices[].max_seq."""
    capsys.readouterr()
    assert hq_cli.main(["report", "--db", hq.db_url, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    (seq,) = [d["max_seq"] for r in report for d in r["devices"] if d["device"] == DEVICE]
    return int(seq)


def test_restored_box_reuses_no_seq_and_hq_ends_with_every_event_once(
        tmp_path: Path, hq: Hq, capsys: pytest.CaptureFixture[str]) -> None:
    """GIVEN a box syncing to HQ (5 redemptions synced, 3 more made) that is backed up,
    then makes 4 more that reach HQ and 2 that never leave it before it is lost
    WHEN a replacement box restores the backup with HQ's last seq (from edge-hq report)
    and makes 3 redemptions and syncs
    THEN the new events are numbered after HQ's last seq (not after the backup's), HQ
    rejects nothing, stores each event once and holds seqs 1..last+3 with no gap: all the
    old box synced (the backup's unsent ones resent are no-ops) and the new box's. The 2
    that never left the old box are gone with it; HQ never saw their seqs."""
    old = tmp_path / "old"
    assert ensure_demo_home(old)
    register(hq, old)  # the restored box keeps this device key, so HQ believes both
    with (old / "edge.toml").open("a") as f:
        f.write(f'\n[mqtt]\nhost = "127.0.0.1"\nport = {hq.broker.port}\n'
                'backoff_min_s = 0.05\nbackoff_max_s = 0.5\n')
    codes = issue_coupons(old, 20, prefix="B")
    hq.worker()
    redeem(old, codes[:5])
    sync(old, capsys)
    redeem(old, codes[5:8])  # in the backup, not yet at HQ
    file = tmp_path / "box.backup"
    assert main(["--home", str(old), "backup", str(file)]) == 0
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    manifest = read_manifest(file)
    redeem(old, codes[8:12])
    sync(old, capsys)
    redeem(old, codes[12:14])  # lost with the box
    old_box = Box.open(old)
    old_top = old_box.ledger.last_seq()
    old_box.close()
    wait_until(lambda: hq.count() == old_top - 2, what="HQ has what the old box synced")
    last = hq_last_seq(hq, capsys)
    assert last == old_top - 2 > manifest.last_seq

    new = tmp_path / "new"
    assert main(["--home", str(new), "restore", str(file), "--hq-last-seq", str(last),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["next_seq"] == last + 1
    assert stat.S_IMODE((new / "device.key").stat().st_mode) == 0o600
    box = Box.open(new)
    assert box.ledger.backlog() == 3  # the backup's unsent events, to be sent again
    box.close()
    redeem(new, codes[14:17])
    box = Box.open(new)
    new_seqs = [e.seq for e in box.ledger.pending_events(100) if e.seq > last]
    box.close()
    assert new_seqs == [last + 1, last + 2, last + 3]
    sync(new, capsys)
    wait_until(lambda: hq.count() == last + 3, what="HQ has the new box's events")
    db = hq.dbs[0]
    rows = db.query("SELECT seq, event_id FROM hq_event WHERE device=? ORDER BY seq", (DEVICE,))
    seqs = [r[0] for r in rows]
    assert len({r[1] for r in rows}) == len(rows)  # every event once
    assert seqs == list(range(1, last + 4))
    assert hq.workers[0].counters.rejected == 0
    assert db.query("SELECT COUNT(*) FROM hq_reject")[0][0] == 0


async def test_backup_while_the_daemon_writes_is_consistent(tmp_path: Path) -> None:
    """GIVEN the daemon running and acknowledging scans
    WHEN edge backup runs between scans
    THEN the backup's ledger passes quick_check, holds every decision acknowledged before
    it and reports the newest seq it holds."""
    home = tmp_path / "home"
    assert ensure_demo_home(home)
    codes = issue_coupons(home, 30, prefix="L")
    async with running(home) as r:
        acked = [(await r.client.request("scan", code=c))["decision_id"] for c in codes[:20]]
        manifest = backup(home, tmp_path / "live.backup")
        for c in codes[20:]:
            await r.client.request("scan", code=c)
    with tarfile.open(tmp_path / "live.backup") as tar:
        tar.extract("ledger.sqlite", tmp_path / "x", filter="data")
    conn = sqlite3.connect(tmp_path / "x" / "ledger.sqlite")
    try:
        assert conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        ids = {r[0] for r in conn.execute("SELECT id FROM decision")}
        top = conn.execute("SELECT MAX(seq) FROM outbox").fetchone()[0]
    finally:
        conn.close()
    assert set(acked) <= ids and len(ids) == 20
    assert manifest.last_seq == top


def test_refusals(tmp_path: Path) -> None:
    """GIVEN a backup
    WHEN it is written over an existing file, restored into a home that holds a box,
    restored after a byte of its ledger was changed, or with a negative HQ seq
    THEN each is refused with a message saying why, and nothing is overwritten."""
    home = tmp_path / "home"
    assert ensure_demo_home(home)
    file = tmp_path / "b.backup"
    backup(home, file)
    with pytest.raises(BackupError, match="exists"):
        backup(home, file)
    with pytest.raises(BackupError, match="already holds a box"):
        restore(file, home, 0)
    with pytest.raises(BackupError, match="0 or more"):
        restore(file, tmp_path / "n1", -1)
    tampered = tmp_path / "t.backup"
    with tarfile.open(file) as src, tarfile.open(tampered, "w:gz") as dst:
        for info in src.getmembers():
            data = src.extractfile(info).read()  # type: ignore[union-attr]
            if info.name == "ledger.sqlite":
                data = data[:-1] + bytes([data[-1] ^ 1])
            import io
            dst.addfile(info, io.BytesIO(data))
    with pytest.raises(BackupError, match="checksum"):
        restore(tampered, tmp_path / "n2", 0)
    assert not (tmp_path / "n2" / "device.key").exists()
