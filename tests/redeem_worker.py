"""A separate process that redeems codes on a box home (used by the concurrency and kill tests).

Usage: python -m tests.redeem_worker HOME START_FILE CODE...
Waits until START_FILE exists (so several workers start together), redeems each code, and
prints one JSON line per verdict *after* redeem() returned, i.e. after the commit.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from edge.box import Box


def main() -> None:
    home, start = Path(sys.argv[1]), Path(sys.argv[2])
    box = Box.open(home)
    deadline = time.monotonic() + 20
    while not start.exists() and time.monotonic() < deadline:
        time.sleep(0.001)
    for code in sys.argv[3:]:
        v = box.counter.redeem(code, till=f"P{os.getpid()}")
        print(json.dumps({"accepted": v.accepted, "reason": v.reason, "id": v.decision_id,
                          "code_id": v.code_id}), flush=True)
    box.close()


if __name__ == "__main__":
    main()
