"""What HQ issued, recorded when it is issued: the numbers fan-out and conflicts go by.

A box reports the facts of a coupon it accepted, but HQ never takes a box's word for the
coupon's limits (a box can be stolen; attack 1 of issue 11 claimed ``max_uses`` 10^9): the
coupon's eligible stores and maximum uses come from ``hq_issued``, written here by every
path that signs a coupon (``edge-hq issue coupon``, the web service's minting).
A coupon HQ has no record of (issued before this table existed) counts as single-use at
every store (``docs/security.md``, "Event authentication").
"""

from __future__ import annotations

from dataclasses import dataclass

from edge import tokens
from hq.db import Cursor


@dataclass(frozen=True, slots=True)
class IssuedCode:
    """HQ's own record of a code's limits."""

    code_id: str
    campaign_id: str | None
    eligible: tuple[str, ...]  # empty: every store
    max_uses: int


UNRECORDED_MAX_USES = 1  # a code HQ did not record: the strictest reading


def record_issued(cur: Cursor, coupon: tokens.Coupon, now: float) -> str:
    """Record a coupon HQ signs, inside the caller's transaction; returns its ``code_id``.

    Call it in the same transaction as anything else the issue changes (a campaign budget),
    before the code leaves HQ. Issuing the same coupon id again replaces the record: the
    latest issue is HQ's word.
    """
    cur.execute("INSERT INTO hq_issued(code_id, kind, campaign_id, eligible, max_uses,"
                " valid_from, valid_until, key_id, issued_at) VALUES (?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT (code_id) DO UPDATE SET campaign_id=excluded.campaign_id,"
                " eligible=excluded.eligible, max_uses=excluded.max_uses,"
                " valid_from=excluded.valid_from, valid_until=excluded.valid_until,"
                " key_id=excluded.key_id, issued_at=excluded.issued_at",
                (coupon.code_id, "coupon", coupon.campaign_id, ",".join(coupon.stores),
                 coupon.max_uses, coupon.valid_from, coupon.valid_until, coupon.key_id, now))
    return coupon.code_id


def issued(cur: Cursor, code_id: str) -> IssuedCode:
    """HQ's record of ``code_id``; an unrecorded code is single-use at every store."""
    cur.execute("SELECT campaign_id, eligible, max_uses FROM hq_issued WHERE code_id=?",
                (code_id,))
    row = cur.fetchone()
    if row is None:
        return IssuedCode(code_id, None, (), UNRECORDED_MAX_USES)
    return IssuedCode(code_id, None if row[0] is None else str(row[0]),
                      tuple(s for s in str(row[1]).split(",") if s), int(row[2]))
