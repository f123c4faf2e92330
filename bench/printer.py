"""Printer figures: render time per packaging card, and python-escpos's import cost.

1. ``render(card)`` per profile (58/80 mm; native ``GS ( k`` QR vs raster QR; GB18030 text vs
   image text), against a floor measured in the same run: building the same QR symbol with
   ``edge.qrfit.build_qr`` (native) or building and rasterising it with qrcode + PIL (image).
2. ``import escpos.printer`` in a fresh interpreter, with and without
   ``configure_escpos_cache`` (the pickle cache), against a bare interpreter start; and the
   temporary folders each way leaves behind.

Run: .venv/bin/python bench/printer.py [--n 100] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.machine import describe
from drivers.escpos_render import qr_image, raster, render
from drivers.printer_profile import PrinterProfile, TextEncoding
from edge import slips, tokens
from edge.qrfit import build_qr

ROOT = Path(__file__).resolve().parent.parent


def card_url() -> str:
    card = tokens.Card("BJ001", "BJ001-T1", 2**32, 2**32 - 1)
    return tokens.card_url("HTTPS://Q.EDGE.CN/", tokens.assemble(card, b"\xff" * tokens.SIG_LEN))


def per_call_ms(fn: Callable[[], object], n: int) -> float:
    """Median of 5 batches of ``n // 5`` calls, in ms per call."""
    batch = max(1, n // 5)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(batch):
            fn()
        times.append((time.perf_counter() - t0) / batch * 1000)
    return statistics.median(times)


def bench_render(n: int) -> None:
    url = card_url()
    doc = slips.card_slip("望京店", "扫码入群 领新人礼", "新人礼: 到店免费咖啡一杯", url, 42,
                          time.time(), "谢谢惠顾")
    print(f"render one packaging card (URL {len(url)} chars, QR version "
          f"{build_qr(url).version}), ms per card, median of 5 batches of {n // 5}:")
    print(f"  {'profile':<34} {'render':>8} {'floor':>8} {'ratio':>6} {'bytes':>7}")
    for paper in (58, 80):
        for enc in (TextEncoding.GB18030, TextEncoding.IMAGE):
            for native in (True, False):
                profile = PrinterProfile(paper, enc, native)
                floor_fn: Callable[[], object] = (
                    (lambda: build_qr(url)) if native
                    else (lambda p=profile: raster(qr_image(url, p))))  # type: ignore[misc]
                ms = per_call_ms(lambda p=profile: render(doc, p), n)  # type: ignore[misc]
                floor = per_call_ms(floor_fn, n)
                size = len(render(doc, profile))
                label = f"{paper} mm, {enc.value} text, {'native' if native else 'image'} QR"
                print(f"  {label:<34} {ms:8.2f} {floor:8.2f} {ms / floor:6.1f} {size:7d}")
    print("  floor: native = build_qr(url) alone; image = build_qr + the symbol's raster bytes")


def fresh_import_ms(code: str, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=ROOT)
    return (time.perf_counter() - t0) * 1000


def bench_import(runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home, tmpdir = Path(tmp) / "home", Path(tmp) / "tmp"
        tmpdir.mkdir()
        env = {**os.environ, "TMPDIR": str(tmpdir), "PYTHONPATH": str(ROOT)}
        env.pop("ESCPOS_CAPABILITIES_PICKLE_DIR", None)
        bare = "pass"
        plain = "import escpos.printer"
        cached = ("from pathlib import Path; from drivers.printer import configure_escpos_cache;"
                  f" configure_escpos_cache(Path({str(home)!r}), import_now=True);"
                  " import escpos.printer")
        baseline = "import drivers.printer"  # what the cached run imports besides escpos
        fresh_import_ms(cached, env)  # warm-up: writes the pickle
        figures = {}
        for name, code in (("bare interpreter", bare), ("drivers.printer only", baseline),
                           ("escpos, no cache", plain), ("escpos, cache set", cached)):
            before = len(list(tmpdir.iterdir()))
            figures[name] = statistics.median(fresh_import_ms(code, env) for _ in range(runs))
            left = len(list(tmpdir.iterdir())) - before
            figures[name + " left"] = left
        floor = figures["bare interpreter"]
        print(f"fresh-process import of escpos.printer, median of {runs} runs (ms wall):")
        for name in ("bare interpreter", "drivers.printer only", "escpos, no cache",
                     "escpos, cache set"):
            extra = figures[name] - floor
            print(f"  {name:<22} {figures[name]:8.1f}  (+{extra:6.1f} over bare)  "
                  f"temp folders left: {figures[name + ' left']}")
        no_cache = figures["escpos, no cache"] - floor
        with_cache = figures["escpos, cache set"] - figures["drivers.printer only"]
        print(f"  escpos's own cost: {no_cache:.1f} ms without the cache, {with_cache:.1f} ms "
              f"with it ({no_cache / max(with_cache, 0.1):.1f}x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=100, help="renders per profile")
    ap.add_argument("--runs", type=int, default=5, help="fresh processes per import figure")
    args = ap.parse_args()
    print(f"machine: {describe()}")
    bench_render(args.n)
    bench_import(args.runs)


if __name__ == "__main__":
    main()
