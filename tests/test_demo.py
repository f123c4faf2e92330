"""The README's main command, scripted: broker, HQ ingest, daemon, HQ report, end to end."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.network


def test_scripted_demo_runs_the_store_and_hq_sees_it(tmp_path: Path) -> None:
    """GIVEN no terminal WHEN the demo runs THEN the daemon decides the scripted scans (an
    accept, a duplicate, a typed pickup number pushed by HQ), prints a card rendered to PNG
    whose URL opens HQ's customer page (started by the demo),
    and HQ's report counts the store's events, config applied and the card; everything
    it started has stopped (the command returns)."""
    out = subprocess.run([sys.executable, "-m", "provisioning.demo", "--root", str(tmp_path),
                          "--scripted"], cwd=ROOT, capture_output=True, text=True, timeout=150,
                         stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert any("通过  免费咖啡一杯" in line for line in lines)
    pushed = json.loads((tmp_path / "store" / "hq" / "demo-orders.json").read_text())
    number = pushed[0]["number"]
    assert len(number) == 6 and number.isdigit()
    assert any(f"取货 {number}号" in line for line in lines)  # an order HQ pushed over MQTT
    assert any("已于" in line and "使用" in line for line in lines)  # the duplicate
    report = out.stdout[out.stdout.index("HQ's report"):]
    assert "store BJ001: 8 events, 1 cards printed, 2 pickups collected" in report
    assert "config applied 1" in report
    assert (tmp_path / "paper.png").stat().st_size > 1000
    # the card leads to HQ's customer pages, which the demo started on loopback
    assert re.search(r"The card's page .*: HTTP://127\.0\.0\.1:\d+/SEK1", out.stdout)
    assert "HQ's page answers 200: 望京店, welcome gift offered" in out.stdout
