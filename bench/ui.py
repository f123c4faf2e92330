"""The cashier UI's speed and size: keystroke-Enter to verdict painted, RSS, first paint.

A box home is made with N signed coupons; a daemon serves it in its own process (the real
``edge run --simulate`` when this tree has ``edged/daemon.py``, else the local-API stand-in
in ``tests/standin.py``, which decides with the same ``Counter.redeem``). Then, in this
process:

* floor: the same scans sent straight through ``edged.localapi.Client`` (the daemon's
  round trip with no UI), interleaved with the UI scans so both see the same machine;
* UI: the code is already in the input (a wedge scanner's burst), Enter is posted to the
  app's driver, and the clock stops when the verdict panel has been repainted
  (``CashierApp.painted``, noted after the refresh that shows it); headless Textual, so
  the terminal's own drawing is not counted;
* first paint: a fresh process imports the app and runs it until Textual's Ready event
  (screen drawn), then until the first status from the daemon is on screen;
* RSS of the UI process after the scans.

Run: .venv/bin/python bench/ui.py [--n 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.machine import describe
from edge import tokens
from edge.box import init_home
from edge.keys import Purpose, SigningKey, TrustedKey
from edged.localapi import Client, Op, socket_path
from hq.issuing.codes import sign_token

ROOT = Path(__file__).resolve().parent.parent


def make_home(home: Path, n: int) -> list[str]:
    """A box home and ``2 n`` fresh single-use coupons."""
    hq = SigningKey("HQ1", bytes(range(32)))
    init_home(home, "BJ001", "BJ001-T1",
              [TrustedKey("HQ1", hq.public_key, frozenset({Purpose.COUPON}))], "望京店")
    now = int(time.time())
    return [sign_token(hq, tokens.Coupon(
        "HQ1", f"B-{i}", "BENCH", tokens.Channel.LIVESTREAM,
        tokens.Benefit(tokens.BenefitKind.FREE_ITEM, 1, "咖啡一杯"), now - 3600, now + 86400))
        for i in range(2 * n)]


def start_daemon(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if (ROOT / "edged" / "daemon.py").exists():
        cmd = [sys.executable, "-m", "cli.edge", "--home", str(home), "run", "--simulate"]
        which = "edge run --simulate"
    else:
        cmd = [sys.executable, "-m", "tests.standin", str(home)]
        which = "tests/standin.py (stand-in: no edged/daemon.py in this tree)"
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while not socket_path(home).exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise SystemExit(f"daemon did not come up: {cmd}")
        time.sleep(0.05)
    return proc, which


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def rss_mib(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def measure(sock: Path, codes: list[str]) -> dict[str, Any]:
    from textual import events

    from ui.app import CashierApp

    app = CashierApp(sock, status_poll_s=3600)
    floor: list[float] = []
    ui: list[float] = []
    client = Client(sock)
    await client.connect()
    async with app.run_test(size=(80, 24)) as pilot:
        while not (app.link_up and app.status is not None):
            await pilot.pause(0.01)
        code_input = app.query_one("#code")
        for i in range(0, len(codes), 2):
            t0 = time.perf_counter()
            await client.request(Op.SCAN, code=codes[i], source="bench")
            floor.append(time.perf_counter() - t0)
            code_input.value = codes[i + 1]  # type: ignore[attr-defined]
            seen = len(app.painted)
            assert app._driver is not None
            enter = events.Key("enter", "\r")
            enter.set_sender(app)
            t0 = time.perf_counter()
            app._driver.send_message(enter)
            while len(app.painted) == seen:
                await asyncio.sleep(0.0005)
            ui.append(app.painted[-1][0] - t0)
            # The Enter key still bubbles up to the app after the verdict is painted: let
            # it finish, or leaving run_test can tear the screens down under it ("No
            # screens on stack", seen once in a suite run).
            await pilot.pause()
        wrong = [v for _t, v in app.painted if not v.verdict.accepted]
    await client.close()
    return {"floor": floor, "ui": ui, "rejected": len(wrong), "rss": rss_mib()}


def first_paint(sock: Path) -> dict[str, float]:
    """Time a fresh process from its first line to Ready and to the first status shown."""
    child = f"""
import time; t0 = time.perf_counter()
import asyncio, json, sys
sys.path.insert(0, {str(ROOT)!r})
from ui.app import CashierApp
imported = time.perf_counter() - t0
marks = {{}}
def hook(msg):
    if type(msg).__name__ == "Ready" and "ready" not in marks:
        marks["ready"] = time.perf_counter() - t0
async def main():
    app = CashierApp({str(sock)!r})
    async with app.run_test(size=(80, 24), message_hook=hook) as pilot:
        while not (app.link_up and app.status is not None):
            await pilot.pause(0.005)
        await pilot.pause()
        marks["status"] = time.perf_counter() - t0
asyncio.run(main())
print(json.dumps({{"import": imported, **marks}}))
"""
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=300, help="scans through the UI (and the floor)")
    args = p.parse_args()
    print(f"machine: {describe()}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-ui-"))
    try:
        codes = make_home(tmp / "box", args.n)
        proc, which = start_daemon(tmp / "box")
        try:
            import textual

            print(f"daemon: {which}; textual {textual.__version__}; n={args.n}")
            sock = socket_path(tmp / "box")
            starts = [first_paint(sock) for _ in range(3)]
            r = asyncio.run(measure(sock, codes))
            daemon_rss = rss_mib(proc.pid)
        finally:
            proc.terminate()
            proc.wait(10)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    floor, ui = r["floor"], r["ui"]
    print(f"\n{'':<34}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}")
    for name, xs in (("floor: localapi scan round trip", floor),
                     ("UI: Enter -> verdict painted", ui)):
        print(f"{name:<34}{pct(xs, .5) * 1e3:>9.2f}{pct(xs, .99) * 1e3:>9.2f}"
              f"{statistics.mean(xs) * 1e3:>9.2f}")
    print(f"ratio UI/floor: p50 {pct(ui, .5) / pct(floor, .5):.2f}x, "
          f"p99 {pct(ui, .99) / pct(floor, .99):.2f}x  (UI cost = painting the verdict)")
    print(f"unexpected rejects: {r['rejected']} of {len(ui)}")
    print(f"UI process RSS after {len(ui)} scans: {r['rss']:.1f} MiB "
          f"(daemon process: {daemon_rss:.1f} MiB)")
    best = min(starts, key=lambda s: s["status"])
    print(f"first paint (fresh process, best of 3): imports {best['import'] * 1e3:.0f} ms, "
          f"screen drawn {best['ready'] * 1e3:.0f} ms, daemon status shown "
          f"{best['status'] * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
