"""Many stores on one machine: N simulated boxes against one mosquitto and `edge-hq ingest`.

    PYTHONPATH=. .venv/bin/python bench/stores_load.py [--stores 2000,1000,500,200]
        [--workers 1,2,4] [--seconds 30] [--period 10] [--procs 2] [--budget 600]

Each twin is a box without its daemon (provisioning/loadgen.py): the real outbox on
SQLite, the real Counter and SyncService, its own registered device key and client id. It
makes one decision every --period seconds (its own store's coupon) and publishes presence
as a box does; fan-out probes redeem a single-use coupon for stores A and B at A and time
until B holds the use. For each worker count the store counts are tried largest first
until HQ keeps up: nothing lost or doubled, HQ's own part (broker -> commit, split off by a
passive subscriber) under 5 s at p99, and every decision at HQ within 10 s of the load's
end. A run whose twins could not make 90% of the decisions asked (the machine running
them was too busy) says nothing of HQ ("n/a"); the next smaller count is tried. No run
starts after --budget seconds (the whole stays bounded).

Figures per run: decision events/s stored at HQ, redemption -> HQ commit p50/p99 (HQ's
received_at minus the event's time, same machine clock), fan-out A -> B p50/p99, RSS per
twin (a twin process's growth to all online, per twin) and per ingest worker.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.machine import describe
from provisioning.loadgen import LoadSpec, Report, run


def _row(r: Report) -> str:
    return (f"{r.stores:>6} {r.workers:>3} {r.decisions:>8} {r.events_per_s:>7.1f} "
            f"{r.latency_p50 * 1000:>7.0f} {r.latency_p99 * 1000:>7.0f} "
            f"{r.box_p99 * 1000:>7.0f} {r.hq_p50 * 1000:>6.0f} {r.hq_p99 * 1000:>6.0f} "
            f"{r.fanout_p50 * 1000:>7.0f} {r.fanout_p99 * 1000:>7.0f} {r.probes_seen:>3}/"
            f"{r.probes:<3} {r.rss_per_twin_kib:>6.0f} "
            f"{'/'.join(f'{x:.0f}' for x in r.rss_per_worker_mib):>11} "
            f"{r.missing:>4} {r.duplicates:>4} {r.settled_s:>6.1f} "
            f"{'yes' if r.kept_up else 'NO' if r.generated else 'n/a'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stores", default="2000,1000,500,200",
                    help="store counts to try in order (largest first), comma-separated")
    ap.add_argument("--workers", default="1,2,4", help="ingest worker counts")
    ap.add_argument("--seconds", type=float, default=30.0, help="load per run")
    ap.add_argument("--budget", type=float, default=600.0,
                    help="start no run after this many seconds")
    ap.add_argument("--period", type=float, default=10.0, help="seconds between a store's "
                    "decisions")
    ap.add_argument("--procs", type=int, default=2, help="twin processes")
    ap.add_argument("--probe-every", type=float, default=1.0, help="fan-out probe interval")
    args = ap.parse_args()
    # A stopped run still stops its broker, workers and twins (run's finally).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(f"machine: {describe()}")
    print(f"load: one decision per store every {args.period:g} s, {args.seconds:g} s per run, "
          f"{args.procs} twin processes; HQ on SQLite; noisy: a shared machine")
    print(f"{'stores':>6} {'wrk':>3} {'decided':>8} {'ev/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'box p99':>7} {'hq p50':>6} {'hq p99':>6} "
          f"{'fo p50':>7} {'fo p99':>7} {'probes':>7} {'kB/tw':>6} {'MiB/worker':>11} "
          f"{'lost':>4} {'dup':>4} {'settle':>6} kept up")
    began = time.monotonic()
    for workers in (int(w) for w in args.workers.split(",")):
        for stores in (int(s) for s in args.stores.split(",")):
            t = time.monotonic()
            if t - began > args.budget:
                print(f"{stores:>6} {workers:>3} not run: past --budget {args.budget:g} s")
                break
            r = run(LoadSpec(stores=stores, workers=workers, seconds=args.seconds,
                             period_s=args.period, procs=args.procs,
                             probe_every_s=args.probe_every))
            print(_row(r) + f"  ({time.monotonic() - t:.0f} s)", flush=True)
            for note in r.notes:
                print(f"       note: {note}")
            for i, c in enumerate(r.worker_counters, 1):
                print(f"       worker {i}: {c.get('messages', 0)} messages (events, presence,"
                      f" reports), {c.get('new_events', 0)} events, {c.get('fanout_sent', 0)}"
                      f" fan-out, {c.get('confirmations', 0)} confirmations,"
                      f" {c.get('duplicates', 0)} duplicates")
            if r.kept_up:
                break


if __name__ == "__main__":
    main()
