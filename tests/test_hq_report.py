"""``edge-hq report``: the figures match the events HQ ingested."""

from __future__ import annotations

import json
import time

import pytest

from cli.hq import main
from sync.contract import Presence, PresenceState
from tests.hq_support import TOPICS, Hq, RawBox, event, hq_fixture, wait_until  # noqa: F401

pytestmark = pytest.mark.network


def _decision(accepted: bool, kind: str | None, code: str | None = None,
              campaign: str | None = None, reason: str | None = None) -> dict[str, object]:
    return {"accepted": accepted, "reason": reason, "kind": kind, "code_id": code,
            "campaign_id": campaign, "till": "", "source": "", "facts": {"max_uses": 1}}


def test_report_counts_match_the_events(hq: Hq, capsys: pytest.CaptureFixture[str]) -> None:
    """GIVEN store S1 sent 3 cards, 3 coupon redemptions in two campaigns, 1 pickup,
    3 rejections, a presence with backlog 7 and a gap; S2 redeemed one of S1's coupons
    again; and 2 events of last year
    WHEN edge-hq report --json --since runs
    THEN each figure is exactly what was sent, the old events are left out, the gap and
    the conflict are listed, and a malformed message shows under ingest rejects."""
    w = hq.worker(fanout=False)
    s1, s2 = RawBox(hq.broker, "S1", "D1"), RawBox(hq.broker, "S2", "D2")
    old = time.time() - 365 * 86400
    bodies = [("card_issued", {"serial": 1}), ("card_issued", {"serial": 2}),
              ("card_issued", {"serial": 3}),
              ("decision", _decision(True, "coupon", "C:1", "c1")),
              ("decision", _decision(True, "coupon", "C:2", "c1")),
              ("decision", _decision(True, "coupon", "C:3", "c2")),
              ("decision", _decision(True, "pickup", "P:O1")),
              ("decision", _decision(False, "coupon", "C:1", "c1", "already_used_here")),
              ("decision", _decision(False, "coupon", "C:9", "c1", "expired")),
              ("decision", _decision(False, None, None, None, "bad_format"))]
    s1.send([event("S1", "D1", i + 1, t, b) for i, (t, b) in enumerate(bodies)])
    s1.send([event("S1", "D1", 11, "card_issued", {"serial": 4}, at=old),
             event("S1", "D1", 12, "decision", _decision(True, "coupon", "C:8", "c1"), at=old)])
    s1.send([event("S1", "D1", 15, "clock", {})])  # 13-14 never arrive
    s1.raw(TOPICS.status("S1", "D1"), Presence(PresenceState.ONLINE, "0.1.0", 3, 7).encode())
    s2.send([event("S2", "D2", 1, "decision", _decision(True, "coupon", "C:2", "c1"))])
    s2.raw(TOPICS.events("S2", "D2"), b"garbage")
    wait_until(lambda: w.counters.messages == 6, what="6 messages")
    db = hq.db_url
    capsys.readouterr()
    since = str(int(time.time() - 86400))
    assert main(["report", "--db", db, "--since", since, "--json"]) == 0
    by_store = {r["store"]: r for r in json.loads(capsys.readouterr().out)}
    r1, r2 = by_store["S1"], by_store["S2"]
    assert r1["cards_printed"] == 3
    assert r1["redemptions_by_campaign"] == {"c1": 2, "c2": 1}
    assert r1["pickups_collected"] == 1
    assert r1["rejects_by_reason"] == {"already_used_here": 1, "bad_format": 1, "expired": 1}
    assert r1["events"] == 11
    (dev,) = r1["devices"]
    assert (dev["state"], dev["backlog"], dev["max_seq"]) == ("online", 7, 15)
    assert dev["last_seen"] is not None
    assert [(g["seq_from"], g["seq_to"], g["missing"]) for g in r1["open_gaps"]] == [(13, 14, 2)]
    assert r1["conflicts"] == r2["conflicts"]
    assert [(c["code_id"], c["stores"], c["uses"]) for c in r2["conflicts"]] == [
        ("C:2", ["S1", "S2"], 2)]
    assert r2["redemptions_by_campaign"] == {"c1": 1}
    assert r2["ingest_rejects"] == {"bad_batch": 1}
    assert main(["report", "--db", db]) == 0
    text = capsys.readouterr().out
    assert "store S1: 13 events, 4 cards printed" in text
    assert "GAP D1 seq 13-14: 2 missing" in text and "CONFLICT coupon C:2" in text
    for b in (s1, s2):
        b.close()
