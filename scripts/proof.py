"""``make proof``: the fault suite at its long size, then one table of what it proved.

Runs ``pytest tests/system tests/test_fuzz.py`` with ``PROOF_SCALE=long`` (every storm at
its long size, each fuzz target for ``FUZZ_SECONDS``), collects the figures each scenario
records, and prints: scenario, runs, faults injected, verdicts checked, lost, doubled,
gaps, crashes. Exit status: pytest's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = ("scenario", "runs", "faults", "verdicts", "lost", "doubled", "gaps", "crashes")


def main() -> int:
    """Run the long fault suite, print its table; pytest's exit status."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "proof.jsonl"
        env = {**os.environ, "PROOF_SCALE": os.environ.get("PROOF_SCALE", "long"),
               "PROOF_REPORT": str(report), "PYTHONPATH": str(ROOT),
               "FUZZ_SECONDS": os.environ.get("FUZZ_SECONDS", "120")}
        rc = subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                              "-o", "timeout=3600", "tests/system", "tests/test_fuzz.py"],
                             cwd=ROOT, env=env)
        rows = [json.loads(line) for line in report.read_text().splitlines()] \
            if report.exists() else []
    cells = [[str(r["scenario"]), *(f"{r[c]:,}" for c in COLUMNS[1:])] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(COLUMNS)]
    print()
    for row in [list(COLUMNS), *cells]:
        print("  ".join(v.ljust(w) if i == 0 else v.rjust(w)
                        for i, (v, w) in enumerate(zip(row, widths, strict=True))))
    return rc


if __name__ == "__main__":
    sys.exit(main())
