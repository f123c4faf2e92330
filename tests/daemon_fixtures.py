"""Shared helpers for the daemon tests: a demo home, an in-process daemon, a subprocess one."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from edge.box import Box
from edged import config as daemon_config
from edged.daemon import Daemon
from edged.localapi import Client, socket_path
from provisioning.dev import ensure_demo_home

ROOT = Path(__file__).resolve().parent.parent


def make_home(tmp_path: Path) -> Path:
    """A fresh demo home (HQ key, box BJ001, sample coupons and orders)."""
    h = tmp_path / "home"
    assert ensure_demo_home(h)
    return h


class Running:
    """An in-process daemon on the test's loop, and a connected client."""

    def __init__(self, daemon: Daemon, task: asyncio.Task[None], client: Client) -> None:
        self.daemon, self.task, self.client = daemon, task, client

    async def connect(self) -> Client:
        c = Client(self.daemon.cfg.socket_path, timeout=10)
        await c.connect()
        return c


@contextlib.asynccontextmanager
async def running(home: Path, simulate: bool = True,
                  overrides: dict[str, dict[str, Any]] | None = None) -> AsyncIterator[Running]:
    """Run the real daemon in this loop until the block ends."""
    box = Box.open(home)
    cfg = daemon_config.load(box.config, overrides, simulate)
    daemon = Daemon(cfg, box)
    ready = asyncio.Event()
    task = asyncio.create_task(daemon.run(lambda _d: ready.set()))
    try:
        await asyncio.wait_for(ready.wait(), 10)
        client = Client(cfg.socket_path, timeout=10)
        await client.connect()
        try:
            yield Running(daemon, task, client)
        finally:
            await client.close()
    finally:
        daemon.stop()
        await asyncio.wait_for(task, 10)
        box.close()


async def next_event(client: Client, topic: str, timeout: float = 10) -> dict[str, Any]:
    """The next event of ``topic`` on a subscribed client (others are skipped)."""
    async with asyncio.timeout(timeout):
        while True:
            ev = await client.events.get()
            assert ev is not None, "connection closed while waiting for an event"
            if ev["event"] == topic:
                data: dict[str, Any] = ev["data"]
                return data


def write_scanner(home: Path, data: bytes) -> None:
    """Write bytes to the simulated scanner, as `echo CODE > run/scanner` does."""
    fd = os.open(home / "run" / "scanner", os.O_WRONLY | os.O_NOCTTY)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def start_process(home: Path, *extra: str, env: dict[str, str] | None = None
                  ) -> subprocess.Popen[str]:
    """``python -m cli.edge run --simulate --home HOME`` as a child process."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "cli.edge", "--home", str(home), "run", "--simulate", *extra],
        env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


async def wait_socket(home: Path, proc: subprocess.Popen[str], timeout: float = 15) -> Client:
    """A client connected to the child's socket once it serves."""
    deadline = time.monotonic() + timeout
    path = socket_path(home)
    while True:
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"daemon exited early: {out}")
        if path.exists():
            client = Client(path, timeout=10)
            with contextlib.suppress(Exception):
                await client.connect()
                await client.request("status")
                return client
        assert time.monotonic() < deadline, "daemon did not serve its socket in time"
        await asyncio.sleep(0.05)


async def wait_scanner(client: Client, timeout: float = 15) -> None:
    """Wait until the serial scanner has its port open (bytes before that are not read)."""
    async with asyncio.timeout(timeout):
        while (await client.request("status"))["scanner"]["state"] != "running":
            await asyncio.sleep(0.02)
