"""Cost of bounded decoding (edge/wire.py) against the unbounded floor, same batches, same run.

HQ decodes every event batch: ``EventBatch.decode`` checks the size, inflates with a
``max_length`` and walks the JSON's nesting. Floor: ``zlib.decompress`` + ``json.loads`` +
the event shape check, as decode did before the bounds. Also the box side: one signed
config envelope (``Envelope.decode``) against a bare ``json.loads``.

Run: .venv/bin/python bench/wire_decode.py [--events 100] [--n 2000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import timeit
import uuid
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.machine import describe
from edge.keys import SigningKey
from hq.events import read_batch
from sync.contract import DataKind, Envelope, EventBatch, HqData, seal
from sync.contract import _is_event as is_event


def _batch(events: int) -> tuple[bytes, str]:
    now = time.time()
    return EventBatch("S1", "S1-T1", [
        {"v": 1, "id": uuid.uuid4().hex, "seq": i, "store": "S1", "device": "S1-T1",
         "type": "decision", "at": now, "clock_trusted": True,
         "body": {"accepted": True, "reason": None, "kind": "coupon", "code_id": f"C:L-{i}",
                  "campaign_id": "LIVE1125", "till": "T1", "source": "serial",
                  "facts": {"benefit": {"kind": "free_item", "value": 1, "item": "咖啡一杯"},
                            "stores": [], "max_uses": 1, "uses_left": 0}}}
        for i in range(1, events + 1)]).encode()


def best_us(fn: object, n: int) -> float:
    """The best of 5 runs of ``n`` calls, in microseconds per call."""
    assert callable(fn)
    return min(timeit.repeat(fn, number=n, repeat=5)) / n * 1e6


def main() -> None:
    """Print the machine, both costs and their ratios."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=100, help="events per batch")
    ap.add_argument("--n", type=int, default=2000, help="decodes per timing")
    args = ap.parse_args()
    print(f"machine: {describe()}")
    payload, ctype = _batch(args.events)

    def floor() -> object:
        obj = json.loads(zlib.decompress(payload))
        return all(is_event(e) for e in obj["events"])

    bounded = best_us(lambda: EventBatch.decode(payload, ctype), args.n)
    unbounded = best_us(floor, args.n)
    print(f"event batch ({args.events} events, {len(payload)} B {ctype}): bounded decode "
          f"{bounded:.0f} us, unbounded floor {unbounded:.0f} us; bounded/floor = "
          f"{bounded / unbounded:.2f}")
    typed = best_us(lambda: read_batch(payload, ctype), args.n)
    print(f"  HQ's typed reader (hq.events.read_batch: the same bounds, bodies kept as text): "
          f"{typed:.0f} us; typed/floor = {typed / unbounded:.2f}")
    key = SigningKey.generate("HQ1")
    env = seal(key, HqData(DataKind.CONFIG, "S1", 2, time.time(), {
        "campaigns": [{"id": f"C{i}", "state": "active"} for i in range(50)]})).encode()
    bounded = best_us(lambda: Envelope.decode(env), args.n)
    unbounded = best_us(lambda: json.loads(env), args.n)
    print(f"config envelope ({len(env)} B): bounded decode {bounded:.1f} us, bare json.loads "
          f"{unbounded:.1f} us; bounded/floor = {bounded / unbounded:.2f}")


if __name__ == "__main__":
    main()
