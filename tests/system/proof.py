"""Scale and report for the fault suite.

``PROOF_SCALE=long`` (set by ``make proof``) runs every scenario at its long size; each
scenario appends one JSON line of figures to ``$PROOF_REPORT`` when that is set, and
``scripts/proof.py`` prints them as a table.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

FIGURES = ("runs", "faults", "verdicts", "lost", "doubled", "gaps", "crashes")


def scale(short: int, long: int) -> int:
    """``long`` under ``make proof``, else ``short``."""
    return long if os.environ.get("PROOF_SCALE") == "long" else short


def record(scenario: str, **figures: int) -> None:
    """Append this scenario's figures to the proof report, if one is being written."""
    path = os.environ.get("PROOF_REPORT")
    if not path:
        return
    unknown = set(figures) - set(FIGURES)
    if unknown:
        raise ValueError(f"unknown figures {sorted(unknown)}")
    with Path(path).open("a", encoding="utf-8") as f:
        f.write(json.dumps({"scenario": scenario, **{k: figures.get(k, 0) for k in FIGURES}})
                + "\n")
