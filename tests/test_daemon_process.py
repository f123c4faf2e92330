"""The daemon as systemd runs it: a child process, signals, kill -9, sd_notify."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from edge.verdict import Reason
from edged.localapi import socket_path
from provisioning.dev import issue_coupons, samples
from tests.daemon_fixtures import (
    ROOT,
    make_home,
    start_process,
    wait_scanner,
    wait_socket,
    write_scanner,
)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return make_home(tmp_path)


def ledger_decisions(home: Path) -> dict[int, tuple[int, str | None, str]]:
    conn = sqlite3.connect(home / "ledger.sqlite")
    try:
        rows = conn.execute("SELECT id, accepted, reason, code_id FROM decision").fetchall()
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


async def test_sigterm_exits_cleanly_with_every_decision(home: Path) -> None:
    """GIVEN a daemon process that acknowledged 20 scans over the API
    WHEN it gets SIGTERM
    THEN it exits 0, removes its socket and scanner link, logs 'stopped', and the ledger
    passes integrity_check with all 20 acknowledged decisions."""
    coupons = issue_coupons(home, 20, prefix="T")
    proc = start_process(home)
    client = await wait_socket(home, proc)
    acked = [(await client.request("scan", code=c))["decision_id"] for c in coupons]
    await client.close()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0, out
    assert "stopped after 20 scans" in out
    assert not socket_path(home).exists() and not (home / "run" / "scanner").exists()
    decisions = ledger_decisions(home)
    assert all(decisions[d][0] == 1 for d in acked)


async def test_kill_9_mid_stream_loses_no_seen_verdict(home: Path) -> None:
    """GIVEN a daemon fed single-use coupons on its pty scanner, with a subscriber
    WHEN it is killed with SIGKILL while scans are still arriving, then restarted
    THEN every verdict the subscriber saw is in the ledger as it was shown, and a coupon
    accepted before the kill is rejected as already used after the restart."""
    coupons = issue_coupons(home, 300, prefix="K")
    proc = start_process(home)
    client = await wait_socket(home, proc)
    await wait_scanner(client)
    await client.subscribe()
    seen: list[dict[str, object]] = []

    async def feed() -> None:
        for c in coupons:
            try:
                write_scanner(home, c.encode() + b"\n")
            except OSError:
                return  # the pty went away with the daemon
            await asyncio.sleep(0.002)

    feeder = asyncio.create_task(feed())
    while len(seen) < 40:
        ev = await asyncio.wait_for(client.events.get(), 10)
        assert ev is not None
        if ev["event"] == "verdict":
            seen.append(ev["data"])
    proc.kill()
    proc.wait(timeout=10)
    # Drain what was already sent before the kill: those verdicts were shown too.
    while (ev := await asyncio.wait_for(client.events.get(), 10)) is not None:
        if ev["event"] == "verdict":
            seen.append(ev["data"])
    await feeder
    await client.close()
    assert proc.returncode == -signal.SIGKILL

    decisions = ledger_decisions(home)
    for v in seen:
        assert decisions[int(str(v["decision_id"]))][:2] == (1, None), v
    first = next(v for v in seen if v["accepted"])
    code = coupons[int(str(first["code_id"]).split("-")[-1])]

    proc = start_process(home)
    try:
        client = await wait_socket(home, proc)
        again = await client.request("scan", code=code)
        await client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=15)
    assert again["accepted"] is False and again["reason"] == Reason.ALREADY_USED_HERE


async def test_sd_notify_ready_watchdog_stopping(home: Path, tmp_path: Path) -> None:
    """GIVEN NOTIFY_SOCKET pointing at a test datagram socket and WATCHDOG_USEC=200000
    WHEN the daemon starts, runs a moment and is stopped
    THEN the socket receives READY=1 (with a STATUS), at least two WATCHDOG=1, and
    STOPPING=1, in that order."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(10)
    proc = start_process(home, env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "200000"})
    messages: list[str] = []
    try:
        while sum("WATCHDOG=1" in m for m in messages) < 2:
            messages.append(sock.recv(4096).decode())
        proc.send_signal(signal.SIGTERM)
        while not any("STOPPING=1" in m for m in messages):
            messages.append(sock.recv(4096).decode())
    finally:
        proc.communicate(timeout=15)
        sock.close()
    ready = next(i for i, m in enumerate(messages) if "READY=1" in m)
    assert "STATUS=BJ001/BJ001-T1" in messages[ready]
    watchdogs = [i for i, m in enumerate(messages) if m == "WATCHDOG=1"]
    stopping = next(i for i, m in enumerate(messages) if "STOPPING=1" in m)
    assert len(watchdogs) >= 2 and stopping > ready
    assert proc.returncode == 0


def test_scan_command_falls_back_to_ledger_and_says_so(home: Path) -> None:
    """GIVEN no daemon running
    WHEN `edge scan CODE` is run twice with a sample coupon
    THEN it says it decides on the ledger directly, accepts (exit 0) then rejects (exit 1)."""
    coupon = samples(home)["coupons"][3]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "cli.edge", "--home", str(home), "--lang", "en", "scan", coupon]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30)
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30)
    assert "daemon not running" in first.stderr and "directly" in first.stderr
    assert first.returncode == 0 and first.stdout.startswith("ACCEPTED")
    assert second.returncode == 1 and "Already used" in second.stdout


async def test_cli_commands_use_running_daemon(home: Path) -> None:
    """GIVEN a running daemon
    WHEN `edge scan` of a sample pickup number and `edge status --json` run
    THEN the scan is decided by the daemon (its log shows source=cli) and status reports the
    scanner running; `edge print-card` queues a card on the simulated printer (exit 0)."""
    number = samples(home)["pickups"][0]["number"]
    proc = start_process(home)
    client = await wait_socket(home, proc)
    await client.close()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    base = [sys.executable, "-m", "cli.edge", "--home", str(home), "--lang", "en"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*base, *args], env=env, capture_output=True, text=True,
                              timeout=30)

    try:
        scan = await asyncio.to_thread(run, "scan", number)
        status = await asyncio.to_thread(run, "status", "--json")
        card = await asyncio.to_thread(run, "print-card")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    assert scan.returncode == 0 and f"Pickup #{number}" in scan.stdout and not scan.stderr
    assert "source=cli" in out
    assert '"scanner":{"name":"scanner","state":"running"' in status.stdout
    assert card.returncode == 0 and "queued as job" in card.stdout, card.stderr


def test_bad_config_is_one_line_naming_the_key(home: Path) -> None:
    """GIVEN an edge.toml with [scanner] baud = "fast"
    WHEN `edge run` starts
    THEN it exits 2 with one stderr line naming [scanner] baud, and serves nothing."""
    with (home / "edge.toml").open("a") as f:
        f.write('\n[scanner]\nbaud = "fast"\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-m", "cli.edge", "--home", str(home), "run"],
                         env=env, capture_output=True, text=True, timeout=30)
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "[scanner] baud" in res.stderr
    assert not socket_path(home).exists()


async def test_second_daemon_and_unknown_group_are_refused(home: Path) -> None:
    """GIVEN a daemon serving a home
    WHEN a second `edge run` starts on the same home, and one with an unknown api group
    THEN the second exits 1 saying another daemon serves the socket (the first keeps
    answering), and the unknown group exits 2 naming api.group."""
    proc = start_process(home)
    client = await wait_socket(home, proc)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    base = [sys.executable, "-m", "cli.edge", "--home", str(home), "run"]
    try:
        second = await asyncio.to_thread(subprocess.run, base, env=env, capture_output=True,
                                         text=True, timeout=30)
        group = await asyncio.to_thread(subprocess.run, [*base, "--group", "no-such-grp-x"],
                                        env=env, capture_output=True, text=True, timeout=30)
        status = await client.request("status")
        await client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=15)
    assert second.returncode == 1 and "another daemon is serving" in second.stderr
    assert group.returncode == 2 and "api.group" in group.stderr
    assert status["store_id"] == "BJ001"
