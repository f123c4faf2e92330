"""The benchmark scripts still run (at a toy scale): a figure nobody can reproduce is no figure.

Only that they run and print their machine and figures is checked here; the figures
themselves are read by people, never asserted (the machines are noisy). ``bench/camera.py``
is left out: its shortest run takes about 40 s, and its decoders are exercised by
``tests/test_camera.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SCRIPTS = {
    "redeem_latency": (["--coupons", "2000", "--orders", "200", "--n", "50"], "p99/floor"),
    "sync_drain": (["--count", "3000", "--per-message", "200", "--repeat", "1"],
                   "drain, backlog prepared offline"),
    "hq_ingest": (["--events", "2000", "--rounds", "2", "--repeat", "1"], "ingest/floor"),
    "daemon": (["--n", "50", "--starts", "1", "--no-camera"], "time from exec to READY"),
    "printer": (["--n", "5", "--runs", "1"], "escpos's own cost"),
    "ui": (["--n", "20"], "first paint"),
    "signing": ([], "ratio cryptography/PyNaCl"),
    "wire_decode": (["--n", "50"], "bounded/floor"),
    "assign_orders": (["--stores", "200", "--orders", "2000", "--repeat", "1"],
                      "same assignment for every order: yes"),
    "web_claims": (["--n", "100", "--concurrency", "8", "--repeat", "1"], "claims/floor"),
    "dashboard": (["--events", "20000", "--stores", "20", "--days", "60", "--n", "8"],
                  "chain page p99"),
    "stores_load": (["--stores", "10", "--workers", "1", "--seconds", "3", "--period", "1"],
                    "kept up"),
}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_bench_script_runs_and_prints_its_machine_and_figures(name: str) -> None:
    """GIVEN a benchmark script WHEN run at a toy scale THEN it exits 0 and prints the
    machine it ran on and its figures."""
    args, expect = SCRIPTS[name]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, str(ROOT / "bench" / f"{name}.py"), *args],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=100,
                         stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "machine:" in out.stdout
    assert expect in out.stdout, out.stdout[-2000:]
