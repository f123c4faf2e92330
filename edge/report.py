"""Today's figures and the latest decisions, read from the ledger for the counter.

Read-only queries over ``decision``, ``card`` and ``pickup_order``; the local API's
``report``, ``recent`` and ``print_report`` answer with these.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from edge.ledger import Ledger

MAX_RECENT = 200


def day_bounds(now: float) -> tuple[float, float]:
    """The local calendar day containing ``now``: ``[midnight, next midnight)``."""
    day = dt.datetime.fromtimestamp(now).date()
    start = dt.datetime.combine(day, dt.time())
    return start.timestamp(), (start + dt.timedelta(days=1)).timestamp()


def report(ledger: Ledger, start: float, end: float) -> dict[str, Any]:
    """Figures for ``[start, end)``.

    Voided redemptions are not counted as redemptions (they are counted apart), rejects
    are counted by reason, pickups by collection time.
    """
    c = ledger.conn
    cards = c.execute("SELECT COUNT(*) FROM card WHERE issued_at >= ? AND issued_at < ?",
                      (start, end)).fetchone()[0]
    by_campaign = {
        (r[0] or "-"): r[1] for r in c.execute(
            "SELECT campaign_id, COUNT(*) FROM decision WHERE accepted=1 AND voided_at IS NULL"
            " AND kind='coupon' AND at >= ? AND at < ? GROUP BY campaign_id ORDER BY 2 DESC",
            (start, end))}
    rejects = {
        r[0]: r[1] for r in c.execute(
            "SELECT reason, COUNT(*) FROM decision WHERE accepted=0 AND at >= ? AND at < ?"
            " GROUP BY reason ORDER BY 2 DESC", (start, end))}
    pickups = c.execute(
        "SELECT COUNT(*) FROM decision WHERE accepted=1 AND voided_at IS NULL AND kind='pickup'"
        " AND at >= ? AND at < ?", (start, end)).fetchone()[0]
    voids = c.execute("SELECT COUNT(*) FROM decision WHERE voided_at >= ? AND voided_at < ?",
                      (start, end)).fetchone()[0]
    return {
        "day_start": start, "day_end": end,
        "cards_printed": int(cards),
        "redemptions": int(sum(by_campaign.values())),
        "redemptions_by_campaign": by_campaign,
        "pickups_collected": int(pickups),
        "rejects": int(sum(rejects.values())),
        "rejects_by_reason": rejects,
        "voids": int(voids),
    }


def recent(ledger: Ledger, limit: int = 20) -> list[dict[str, Any]]:
    """The latest ``limit`` decisions (at most :data:`MAX_RECENT`), newest first."""
    rows = ledger.conn.execute(
        "SELECT id, at, kind, code_id, campaign_id, accepted, reason, till, source,"
        " clock_trusted, facts, voided_at, void_reason FROM decision ORDER BY id DESC LIMIT ?",
        (max(1, min(limit, MAX_RECENT)),))
    return [{"decision_id": r[0], "at": r[1], "kind": r[2], "code_id": r[3],
             "campaign_id": r[4], "accepted": bool(r[5]), "reason": r[6], "till": r[7],
             "source": r[8], "clock_trusted": bool(r[9]), "facts": json.loads(r[10]),
             "voided_at": r[11], "void_reason": r[12]} for r in rows]
