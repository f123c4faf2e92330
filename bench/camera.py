"""Camera path cost per frame against plain decoder calls, and idle CPU at 15 fps.

Run: ``PYTHONPATH=. .venv/bin/python bench/camera.py`` (about a minute; ``--quick`` for less).

Frames are synthetic (``drivers.synthetic``): a coupon-sized QR (194 characters, version 8-M)
or an EAN-13 at a random place and tilt (+-15 degrees) on a cluttered counter, blurred, with
sensor noise; the same field of view at 640x480 (4 px modules) and 1280x720 (6 px). Each
scene stays in view for two frames with fresh noise (a code is shown for far longer than
2/15 s; the camera path looks for upright and turned 1D codes on alternate frames), and a
scene counts as read when either frame read its code.
Each row gets the same BGR frames, as a camera delivers them; the time includes the grey
conversion a decoder needs. Each figure is the best of three passes (other processes share
this machine). The floors are plain calls on the full frame: pyzbar with all
symbologies, pyzbar restricted to QR, zxing-cpp restricted to QR (given BGR, and given grey).

The camera path rows are :class:`drivers.camera.FramePipeline` with the default config and
with one saving turned off at a time, fed a 15 fps timeline. Idle CPU is the real
:class:`drivers.camera.CameraScanner` playing an MJPG video of an empty scene at 15 fps:
process CPU time over wall time, video decoding included (a USB camera sends MJPG too).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import ctypes.util
import dataclasses
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import zxingcpp
from pyzbar import pyzbar
from pyzbar.pyzbar import ZBarSymbol

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.machine import describe
from drivers import synthetic
from drivers.camera import CameraConfig, CameraScanner, FramePipeline
from drivers.synthetic import Kind, Symbol
from edge.base41 import ALPHABET
from edge.qrfit import qr_version

rng = random.Random(20261125)
COUPON = "SEC1" + "".join(rng.choice(ALPHABET) for _ in range(190))
EAN = "5901234123457"
SIZES = [(640, 480, 4), (1280, 720, 6)]
HOLD = 2  # frames each scene stays in view: 2/15 s, shorter than any real showing


def machine() -> str:
    zbar = ctypes.util.find_library("zbar")
    zver = "?"
    if zbar:
        lib = ctypes.CDLL(zbar)
        # int zbar_version(unsigned *major, unsigned *minor, unsigned *patch) since 0.22
        major, minor, patch = ctypes.c_uint(), ctypes.c_uint(), ctypes.c_uint()
        if lib.zbar_version(ctypes.byref(major), ctypes.byref(minor), ctypes.byref(patch)) == 0:
            zver = f"{major.value}.{minor.value}.{patch.value}"
    import importlib.metadata as md

    return (f"{describe()}\n"
            f"opencv {cv2.__version__}, numpy {np.__version__}, "
            f"zxing-cpp {md.version('zxing-cpp')}, pyzbar {md.version('pyzbar')}, "
            f"libzbar {zver}")


def frames(width: int, height: int, module: int, what: str, n: int) -> list[Any]:
    """``n`` scenes, each held for HOLD frames (same place, fresh sensor noise)."""
    back = synthetic.background(width, height, seed=3)
    out = []
    for i in range(n):
        symbol = {"qr": Symbol(Kind.QR, COUPON, module),
                  "ean13": Symbol(Kind.EAN13, EAN, module - 1), "none": None}[what]
        center = (rng.uniform(0.35, 0.65), rng.uniform(0.35, 0.65))
        angle = rng.uniform(-15, 15)
        out += [synthetic.scene(back, symbol, center=center, angle=angle, seed=1000 + i * 7 + k)
                for k in range(HOLD)]
    return out


def grey(f: Any) -> Any:
    return cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)


F = zxingcpp.BarcodeFormat
FLOORS: dict[str, Callable[[Any], list[str]]] = {
    "pyzbar, all symbologies": lambda f: [s.data.decode() for s in pyzbar.decode(grey(f))],
    "pyzbar, QR only": lambda f: [s.data.decode() for s in pyzbar.decode(
        grey(f), symbols=[ZBarSymbol.QRCODE])],
    "zxing-cpp, QR only (BGR in)": lambda f: [b.text for b in zxingcpp.read_barcodes(
        f, formats=F.QRCode)],
    "zxing-cpp, QR only (grey in)": lambda f: [b.text for b in zxingcpp.read_barcodes(
        grey(f), formats=F.QRCode)],
}

PATHS: dict[str, dict[str, Any]] = {
    "camera path (default)": {},
    "  without still-frame skip": {"still_threshold": 0},
    "  without downscale": {"decode_width": 0},
    "  thorough every frame": {"thorough_every": 1},
    "  + centre ROI (50% x 50%)": {"roi": (0.25, 0.25, 0.5, 0.5)},
    "  zbar decoder": {"decoder": "zbar"},
}


def best_of(passes: int, run: Callable[[], int], n: int) -> tuple[float, int]:
    best, found = float("inf"), 0
    for _ in range(passes):
        t0 = time.perf_counter()
        found = run()
        best = min(best, (time.perf_counter() - t0) / n * 1000)
    return best, found


def scenes_read(hits: list[bool]) -> int:
    """Scenes whose code was read on at least one of their HOLD frames."""
    return sum(any(hits[i:i + HOLD]) for i in range(0, len(hits), HOLD))


def bench_floor(fn: Callable[[Any], list[str]], frs: list[Any], want: str) -> tuple[float, int]:
    return best_of(3, lambda: scenes_read([want in fn(f) for f in frs]), len(frs))


def bench_path(overrides: dict[str, Any], frs: list[Any], want: str) -> tuple[float, int]:
    def run() -> int:
        # A fresh pipeline per pass: a 15 fps timeline, nothing remembered between passes.
        pipe = FramePipeline(CameraConfig.from_toml(overrides))
        return scenes_read([want in pipe.process(f, i / 15) for i, f in enumerate(frs)])
    return best_of(3, run, len(frs))


async def idle_cpu(video: Path, seconds: float, **overrides: Any) -> tuple[float, int, int]:
    config = dataclasses.replace(CameraConfig(str(video), fps=15), **overrides)
    scanner = CameraScanner(config, lambda s: None, lambda s: None)
    task = asyncio.create_task(scanner.run())
    await asyncio.sleep(1.0)  # open the file, import OpenCV and the decoder
    f0, d0 = scanner.stats.frames, scanner.stats.decoded
    c0, w0 = time.process_time(), time.perf_counter()
    await asyncio.sleep(seconds)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    frames_seen = scanner.stats.frames - f0
    decoded = scanner.stats.decoded - d0
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return cpu / wall * 100, frames_seen, decoded


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer frames, shorter idle runs")
    args = ap.parse_args()
    n, idle_s = (5, 4.0) if args.quick else (15, 10.0)
    print(machine())
    print(f"QR text {len(COUPON)} chars (version {qr_version(COUPON)}-M), EAN-13 {EAN}; "
          f"{n} scenes per set, each held {HOLD} frames; ms per frame (best of 3 passes) "
          f"and scenes read\n")
    ratios = []
    for width, height, module in SIZES:
        sets = {what: frames(width, height, module, what, n) for what in ("qr", "ean13", "none")}
        print(f"{width}x{height} (module {module} px)                        "
              f"{'QR in view':>17} {'EAN-13 in view':>17} {'nothing in view':>17}")
        results: dict[str, dict[str, float]] = {}
        for name, fn in FLOORS.items():
            row = {w: bench_floor(fn, frs, COUPON if w == "qr" else EAN)
                   for w, frs in sets.items()}
            results[name] = {w: ms for w, (ms, _) in row.items()}
            print(f"  {name:44s}" + "".join(f"{ms:9.2f} {found:3d}/{n:<3d}"
                                            for ms, found in row.values()))
        for name, over in PATHS.items():
            row = {w: bench_path(over, frs, COUPON if w == "qr" else EAN)
                   for w, frs in sets.items()}
            results[name] = {w: ms for w, (ms, _) in row.items()}
            print(f"  {name:44s}" + "".join(f"{ms:9.2f} {found:3d}/{n:<3d}"
                                            for ms, found in row.values()))
        floor_qr = min(results[k]["qr"] for k in FLOORS)
        floor_none = min(results[k]["none"] for k in FLOORS)
        mine = results["camera path (default)"]
        ratios += [mine["qr"] / floor_qr, mine["none"] / floor_none]
        print(f"  camera path / fastest floor: QR in view {mine['qr'] / floor_qr:.2f}x "
              f"({mine['qr']:.2f} vs {floor_qr:.2f} ms), nothing in view "
              f"{mine['none'] / floor_none:.2f}x ({mine['none']:.2f} vs {floor_none:.2f} ms); "
              f"target <= 1.5x\n")

    with tempfile.TemporaryDirectory() as tmp:
        print(f"idle CPU, CameraScanner on an MJPG video of an empty scene at 15 fps, "
              f"{idle_s:.0f} s each (target < 10% of one core):")
        for width, height, _ in SIZES:
            back = synthetic.background(width, height, seed=5)
            video = Path(tmp) / f"empty{width}.avi"
            count = int((idle_s + 2) * 15)
            synthetic.write_video(video, (synthetic.scene(back, None, seed=i)
                                          for i in range(count)), fps=15)
            for label, over in (("default", {}), ("decode every frame",
                                                   {"still_threshold": 0.0})):
                pct, seen, decoded = asyncio.run(idle_cpu(video, idle_s, **over))
                print(f"  {width}x{height} {label:20s} {pct:5.1f}% of one core "
                      f"({seen} frames, {decoded} decoded)")


if __name__ == "__main__":
    main()
