"""The whole daemon: scan-to-verdict latency, time to READY, and RSS.

* scan-to-verdict: bytes written on the simulated serial line (the pty behind
  ``<home>/run/scanner``) until the ``verdict`` event arrives on a local API subscriber,
  over N single-use coupons (all accepted, each committed with synchronous=FULL), against
  the floor measured in the same run and interleaved with it: one bare sqlite3 WAL
  transaction (synchronous=FULL) of 2 inserts plus one Ed25519 verify, as
  ``bench/redeem_latency.py`` measures it.
* time to READY: from exec of ``edge run --simulate`` until READY=1 arrives on a
  NOTIFY_SOCKET datagram socket (the median of several starts).
* RSS: VmRSS / VmHWM of the daemon from /proc after the scans, with every device on: the
  pty serial scanner, the simulated file printer printing a redemption slip per scan, and
  (unless ``--no-camera``) a camera reading a synthetic 640x480 MJPG video of an empty
  counter with sensor noise, so every frame is decoded at 15 fps.

Run: .venv/bin/python bench/daemon.py [--n 2000] [--starts 5] [--no-camera]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nacl.signing

from bench.machine import describe
from edge import tokens
from edged.localapi import Client, socket_path
from provisioning.dev import ensure_demo_home, hq_home, issue_coupons

ROOT = Path(__file__).resolve().parent.parent


def pct(samples: list[float], p: int) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[p - 1] * 1e3


def start(home: Path, notify: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NOTIFY_SOCKET": str(notify)}
    log = (home.parent / "daemon.log").open("ab")
    return subprocess.Popen([sys.executable, "-m", "cli.edge", "--home", str(home), "run",
                             "--simulate", "--log-level", "WARNING", *extra],
                            env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_ready(sock: socket.socket) -> None:
    while True:
        if b"READY=1" in sock.recv(4096):
            return


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=20)


def rss(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) // 1024
    return out


class Floor:
    """One bare WAL FULL transaction of 2 inserts plus one Ed25519 verify."""

    def __init__(self, path: Path, code: str, public_key: bytes) -> None:
        import sqlite3

        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("CREATE TABLE redemption(code_id TEXT NOT NULL UNIQUE, at REAL)")
        self.conn.execute("CREATE TABLE outbox(seq INTEGER PRIMARY KEY AUTOINCREMENT,"
                          " id TEXT NOT NULL UNIQUE, body TEXT NOT NULL)")
        parsed = tokens.parse(code)
        assert isinstance(parsed, tokens.Signed)
        self.signed = parsed
        self.vk = nacl.signing.VerifyKey(public_key)
        self.i = 0

    def once(self) -> float:
        self.i += 1
        t = time.perf_counter()
        self.vk.verify(self.signed.signed, self.signed.signature)
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.execute("INSERT INTO redemption VALUES (?, ?)", (f"N-{self.i}", time.time()))
        self.conn.execute("INSERT INTO outbox(id, body) VALUES (?, ?)",
                          (uuid.uuid4().hex, json.dumps({"code_id": self.i, "ok": True})))
        self.conn.execute("COMMIT")
        return time.perf_counter() - t


async def scan_latency(home: Path, coupons: list[str], floor: Floor
                       ) -> tuple[list[float], list[float]]:
    client = Client(socket_path(home), timeout=10)
    await client.connect()
    await client.subscribe()
    async with asyncio.timeout(15):  # bytes written before the port is open are not read
        while (await client.request("status"))["scanner"]["state"] != "running":
            await asyncio.sleep(0.02)
    fd = os.open(home / "run" / "scanner", os.O_WRONLY | os.O_NOCTTY)
    lat, flo = [], []
    try:
        for code in coupons:
            flo.append(floor.once())
            line = code.encode() + b"\r\n"
            t = time.perf_counter()
            os.write(fd, line)
            while True:
                try:
                    ev = await asyncio.wait_for(client.events.get(), 10)
                except TimeoutError:
                    print(f"no verdict 10 s after scan {len(lat)}", file=sys.stderr)
                    raise
                assert ev is not None, "daemon closed the connection"
                if ev["event"] == "verdict" and str(ev["data"]["source"]).startswith("serial"):
                    break
            lat.append(time.perf_counter() - t)
            assert ev["data"]["accepted"], ev
    finally:
        os.close(fd)
        await client.close()
    return lat, flo


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000, help="timed scans")
    ap.add_argument("--starts", type=int, default=5, help="timed starts to READY")
    ap.add_argument("--no-camera", action="store_true", help="leave the camera off")
    args = ap.parse_args()
    print(f"machine: {describe()}")
    with tempfile.TemporaryDirectory(dir=ROOT) as tmp:  # the real disk, as the ledger's
        home = Path(tmp) / "home"
        ensure_demo_home(home)
        coupons = issue_coupons(home, args.n + 50, prefix="B")
        key = json.loads(next((hq_home(home) / "keys").glob("*.json")).read_text())
        floor = Floor(Path(tmp) / "floor.sqlite", coupons[0], bytes.fromhex(key["public_key"]))
        notify = Path(tmp) / "notify.sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(notify))
        sock.settimeout(30)
        extra: tuple[str, ...] = ()
        if not args.no_camera:
            video = Path(tmp) / "counter.avi"
            write_counter_video(video)
            extra = ("--camera", str(video))
        with (home / "edge.toml").open("a") as f:
            f.write("\n[printer]\nredemption_slip = true\n")

        readies = []
        for _ in range(args.starts):
            t = time.perf_counter()
            proc = start(home, notify, *extra)
            wait_ready(sock)
            readies.append(time.perf_counter() - t)
            stop(proc)

        proc = start(home, notify, *extra)
        wait_ready(sock)
        idle = rss(proc.pid)
        try:
            asyncio.run(scan_latency(home, coupons[:50], floor))  # warm-up, not counted
        except TimeoutError:
            print((home.parent / "daemon.log").read_text()[-2000:], file=sys.stderr)
            raise
        lat, flo = asyncio.run(scan_latency(home, coupons[50:], floor))
        mem = rss(proc.pid)
        status = asyncio.run(_status(home))
        stop(proc)
        sock.close()

    parts = ", ".join(f"{p}={status[p]['state']}" for p in ("scanner", "camera", "printer"))
    parts += f"; {status['printer']['jobs_waiting']} slips waiting at the end"
    print(f"devices: {parts}")
    print(f"\nscan-to-verdict over {len(lat)} scans (pty write -> verdict event on the API)")
    print(f"{'':<22}{'p50 ms':>9}{'p99 ms':>9}")
    print(f"{'daemon':<22}{pct(lat, 50):>9.3f}{pct(lat, 99):>9.3f}")
    print(f"{'floor (sqlite+verify)':<22}{pct(flo, 50):>9.3f}{pct(flo, 99):>9.3f}")
    print(f"{'ratio':<22}{pct(lat, 50) / pct(flo, 50):>9.2f}{pct(lat, 99) / pct(flo, 99):>9.2f}")
    print(f"\ntime from exec to READY=1: median {statistics.median(readies) * 1e3:.0f} ms, "
          f"max {max(readies) * 1e3:.0f} ms over {len(readies)} starts (target < 1500 ms)")
    print(f"RSS: {idle['VmRSS']} MB at READY, {mem['VmRSS']} MB after the scans, "
          f"peak {mem['VmHWM']} MB (target < 80 MB)")


def write_counter_video(path: Path) -> None:
    """Two seconds of an empty counter at 640x480, each frame with fresh sensor noise."""
    from drivers.synthetic import background, scene, write_video

    back = background(640, 480)
    write_video(path, (scene(back, None, noise=6.0, seed=i) for i in range(30)))


async def _status(home: Path) -> dict[str, dict[str, str]]:
    client = Client(socket_path(home), timeout=10)
    await client.connect()
    try:
        return await client.request("status")
    finally:
        await client.close()


if __name__ == "__main__":
    main()
