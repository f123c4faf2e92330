"""Many stores at once, short form: simulated boxes through one broker to HQ's ingest workers."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioning.loadgen import LoadSpec, run

pytestmark = pytest.mark.network


def test_many_twins_through_two_ingest_workers_lose_and_duplicate_nothing(
        tmp_path: Path) -> None:
    """GIVEN 30 simulated stores (real outbox, Counter, SyncService and registered device
    keys, each its own client id) in two processes, one mosquitto and two `edge-hq ingest`
    workers on one shared subscription
    WHEN each store decides every second for 5 s, with fan-out probes (a single-use coupon
    for stores A and B redeemed at A) once a second
    THEN HQ holds every decision every twin's outbox holds, each once, rejects nothing, and
    every probe's use reached store B's ledger as a remote use."""
    r = run(LoadSpec(stores=30, workers=2, seconds=5, period_s=1.0, procs=2,
                     probe_every_s=1.0, folder=tmp_path))
    assert r.decisions >= 30 * 4, r  # every store decided (a first one at a random offset)
    assert (r.missing, r.duplicates, r.rejects) == (0, 0, 0), r
    assert r.at_hq == r.decisions, r
    assert r.probes >= 2 and r.probes_seen == r.probes, r
    assert r.notes == [], r.notes
