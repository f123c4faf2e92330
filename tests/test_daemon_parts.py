"""The daemon's parts in isolation and together: config, supervision, notify, device loss."""

from __future__ import annotations

import asyncio
import os
import pty
import socket
import tty
from pathlib import Path
from typing import Any

import pytest

from edge.config import ConfigError, load
from edged import config as daemon_config
from edged import devices
from edged.localapi import Client
from edged.notify import Notifier
from edged.supervisor import PartState, PartStatus, backoff, supervise
from provisioning.dev import issue_coupons
from tests.daemon_fixtures import make_home, next_event, running


async def wait_part(client: Client, name: str, state: str) -> dict[str, Any]:
    """Poll status until part ``name`` is in ``state``; its status object."""
    async with asyncio.timeout(10):
        while (part := (await client.request("status"))[name])["state"] != state:
            await asyncio.sleep(0.02)
    assert isinstance(part, dict)
    return part


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return make_home(tmp_path)


@pytest.mark.parametrize(("section", "text", "named"), [
    ("scanner", 'baud = "fast"', "baud"),
    ("scanner", 'eol = "semicolon"', "eol"),
    ("scanner", 'baudrate = 9600', "baudrate"),
    ("camera", 'max_fps = 0', "max_fps"),
    ("printer", 'paper_mm = 57', "paper_mm"),
    ("printer", 'encoding = "latin1"', "encoding"),
    ("printer", 'url = "lpt:1"', "lpt"),
    ("printer", 'papr_mm = 58', "printer.papr_mm"),
    ("printer", 'redemption_slip = "yes"', "printer.redemption_slip"),
    ("api", 'sokcet = "x"', "api.sokcet"),
    ("daemon", 'till = 3', "daemon.till"),
])
def test_bad_daemon_config_names_the_key(home: Path, section: str, text: str,
                                         named: str) -> None:
    """GIVEN an edge.toml with one bad setting in a daemon or driver table
    WHEN the daemon config is loaded and the drivers check their tables
    THEN ConfigError names the key."""
    extra = 'port = "/dev/ttyACM0"\n' if section == "scanner" else ""
    extra += 'url = "simulate:"\n' if section == "printer" and "url" not in text else ""
    with (home / "edge.toml").open("a") as f:
        f.write(f"\n[{section}]\n{extra}{text}\n")
    with pytest.raises(ConfigError, match=named):
        devices.check(daemon_config.load(load(home)))


def test_flags_override_file_and_none_keeps_it(home: Path) -> None:
    """GIVEN [scanner] port and baud in the file, and a camera index given as a number
    WHEN flags give a baud and leave the port unset (None)
    THEN the flag's baud wins and the file's port stays; the camera is configured;
    simulate without a printer gives the simulated file printer."""
    with (home / "edge.toml").open("a") as f:
        f.write('\n[scanner]\nport = "/dev/ttyACM0"\nbaud = 9600\n[camera]\nsource = 0\n')
    cfg = daemon_config.load(load(home), {"scanner": {"port": None, "baud": 115200}},
                             simulate=True)
    dev = devices.check(cfg)
    assert dev.scanner is not None and (dev.scanner.port, dev.scanner.baud) == (
        "/dev/ttyACM0", 115200)
    assert dev.camera is not None and dev.camera.source == 0
    assert cfg.printer_url == "simulate:" and dev.profile is not None
    assert not daemon_config.load(load(home)).printer_url


def test_backoff_doubles_up_to_the_cap_with_jitter() -> None:
    """GIVEN restart attempts 1..12 WHEN backoff is drawn THEN each lies in the upper half of
    min(cap, first * 2**(n-1)), and draws differ (jitter)."""
    for n in range(1, 13):
        ceiling = min(30.0, 0.5 * 2 ** (n - 1))
        draws = {backoff(n) for _ in range(20)}
        assert all(ceiling / 2 <= d <= ceiling for d in draws)
        assert len(draws) > 1


async def test_supervise_restarts_a_failing_part_and_contains_it() -> None:
    """GIVEN a part that raises twice and then runs
    WHEN it is supervised
    THEN it is restarted twice (state failed with the error, then running), and the
    exceptions never reach the caller."""
    calls = 0
    states: list[tuple[PartState, str]] = []
    running_now = asyncio.Event()

    async def part() -> None:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise OSError(f"unplugged #{calls}")
        running_now.set()
        await asyncio.sleep(3600)

    status = PartStatus("scanner")
    task = asyncio.create_task(supervise(
        status, part, lambda s: states.append((s.state, s.detail)), first=0.01, cap=0.02))
    await asyncio.wait_for(running_now.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    failed = [d for s, d in states if s is PartState.FAILED]
    assert calls == 3 and status.restarts == 2
    assert "unplugged #1" in failed[0] and "unplugged #2" in failed[1]
    assert states[-1][0] is PartState.STOPPED


def test_notifier_abstract_socket_and_absent() -> None:
    """GIVEN an abstract NOTIFY_SOCKET (@name) and a watchdog of 3 s
    WHEN ready/status are sent THEN they arrive, and the interval is 1.5 s; with no
    NOTIFY_SOCKET every call is a no-op returning False."""
    name = f"edge-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    n = Notifier({"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "3000000"})
    try:
        assert n.ready("up") and n.status("busy")
        assert sock.recv(100) == b"READY=1\nSTATUS=up"
        assert sock.recv(100) == b"STATUS=busy"
    finally:
        n.close()
        sock.close()
    assert n.watchdog_interval == 1.5
    off = Notifier({})
    assert not off.enabled and not off.ready() and off.watchdog_interval is None


async def test_scanner_unplugged_and_replugged_loses_no_scan(
        home: Path, tmp_path: Path) -> None:
    """GIVEN a serial scanner configured at a symlink to a pty (as udev links /dev/scanner)
    WHEN a scan is read, the pty is closed (unplugged), a new one linked (replugged) and
    another scan written to it
    THEN the scanner part goes failed then running again, both scans get verdicts, and the
    API answered throughout."""
    a, b = issue_coupons(home, 2, prefix="U")
    link = tmp_path / "scanner-link"

    def plug() -> int:
        master, slave = pty.openpty()
        tty.setraw(slave)
        if link.is_symlink():
            link.unlink()
        link.symlink_to(os.ttyname(slave))
        os.close(slave)
        return master

    master = plug()
    over = {"scanner": {"port": str(link), "retry_first_s": 0.05, "retry_max_s": 0.1}}
    async with running(home, simulate=False, overrides=over) as r:
        await r.client.subscribe()
        await wait_part(r.client, "scanner", "running")
        os.write(master, a.encode() + b"\n")
        first = await next_event(r.client, "verdict")
        os.close(master)  # unplugged: the reader sees EIO
        link.unlink()  # and the device node goes, so a reused /dev/pts/N is never opened
        failed = await wait_part(r.client, "scanner", "failed")
        master = plug()
        await wait_part(r.client, "scanner", "running")
        os.write(master, b"\r\n" + b.encode() + b"\r\n")
        second = await next_event(r.client, "verdict")
        os.close(master)
    assert failed["device_state"] in ("absent", "failed") and failed["detail"]
    assert first["accepted"] and first["facts"]["coupon_id"] == "U-00000"
    assert second["accepted"] and second["facts"]["coupon_id"] == "U-00001"


def test_notifier_never_blocks_when_the_manager_stops_reading(tmp_path: Path) -> None:
    """GIVEN a NOTIFY_SOCKET whose reader never reads (its datagram queue fills)
    WHEN 5000 distinct STATUS lines are sent
    THEN every call returns (the loop would otherwise freeze in sendto), the later ones
    report not sent, and a repeated STATUS is not sent twice."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    n = Notifier({"NOTIFY_SOCKET": str(path)})
    try:
        sent = [n.status(f"scan {i}") for i in range(5000)]
        assert not n.status("scan 4999")  # unchanged: not sent again
    finally:
        n.close()
        sock.close()
    assert sent[0] is True and sent[-1] is False
