"""What a storm scans, and what the ledger must say afterwards.

:func:`code_mix` signs the codes a counter meets (single-use coupons, three-use coupons,
expired coupons, forged signatures, pickup codes), each with the most times it may be
accepted; a storm scans them in a random order with repeats (the duplicates). :func:`audit`
reads the ledger after the storm and compares it with what clients were shown.
"""

from __future__ import annotations

import itertools
import random
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from edge import tokens
from edge.keys import Purpose
from hq.ingest.delivery import DeliveryTiming
from hq.issuing import keystore
from hq.issuing.codes import random_pickup_number, sign_token
from provisioning.dev import hq_home, issue_pickup
from tests.hq_support import Hq
from tests.system.hostile import forged

MULTI_USES = 3
# HQ confirms and asks for what it lacks within a second (production: seconds to minutes).
FAST = DeliveryTiming(confirm_every_s=0.1, ask_after_s=0.3, ask_max_s=2.0)


@dataclass(frozen=True, slots=True)
class Code:
    """One code to scan and the most acceptances it may ever get (0: never)."""

    text: str
    kind: str  # valid, multi, expired, forged, pickup
    code_id: str
    allowed: int


def _coupon(home: Path, coupon_id: str, valid_until: int, max_uses: int = 1) -> str:
    key = keystore.signing_key(hq_home(home), Purpose.COUPON)
    now = int(time.time())
    return sign_token(key, tokens.Coupon(
        key.key_id, coupon_id, "LIVE1125", tokens.Channel.LIVESTREAM,
        tokens.Benefit(tokens.BenefitKind.FREE_ITEM, 1, "咖啡一杯"), now - 30 * 86400,
        valid_until, max_uses))


def code_mix(home: Path, n: int, rng: random.Random, prefix: str = "S") -> list[Code]:
    """``n`` codes of every kind in turn, signed by the demo HQ keys of ``home``.

    Validity windows are a month wide around now, so a clock jumped by hours keeps every
    verdict the same (the expired ones ended a week ago).
    """
    now = int(time.time())
    out: list[Code] = []
    for i in range(n):
        kind = ("valid", "multi", "expired", "forged", "pickup")[i % 5]
        cid = f"{prefix}{kind[0].upper()}-{i:05d}"
        if kind == "valid":
            out.append(Code(_coupon(home, cid, now + 30 * 86400), kind, "C:" + cid, 1))
        elif kind == "multi":
            out.append(Code(_coupon(home, cid, now + 30 * 86400, MULTI_USES), kind,
                            "C:" + cid, MULTI_USES))
        elif kind == "expired":
            out.append(Code(_coupon(home, cid, now - 7 * 86400), kind, "C:" + cid, 0))
        elif kind == "forged":
            out.append(Code(forged(_coupon(home, cid, now + 30 * 86400), rng), kind,
                            "C:" + cid, 0))
        else:
            code = issue_pickup(home, cid, random_pickup_number(), "吐司x1", "王*",
                                now - 30 * 86400, now + 30 * 86400)
            out.append(Code(code, kind, "P:" + cid, 1))
    return out


def scan_order(codes: list[Code], scans: int, rng: random.Random) -> list[Code]:
    """``scans`` codes: each in turn, and every other scan a repeat of an earlier one."""
    order: list[Code] = []
    fresh = iter(codes)
    for i in range(scans):
        nxt = next(fresh, None) if i % 2 == 0 or not order else None
        order.append(nxt if nxt is not None else order[rng.randrange(len(order))])
    return order


@dataclass(slots=True)
class Audit:
    """The ledger against what clients were shown."""

    decisions: int = 0
    lost: list[int] = field(default_factory=list)  # shown, but not in the ledger as shown
    doubled: dict[str, int] = field(default_factory=dict)  # code_id -> acceptances over limit
    gaps: int = 0  # seqs missing between 1 and the last
    first_seq: int = 0
    quick_check: str = ""


def audit(ledger: Path, seen: list[tuple[int, bool]], codes: list[Code]) -> Audit:
    """Compare ``seen`` (decision id, accepted) with the ledger at ``ledger``."""
    allowed = {c.code_id: c.allowed for c in codes}
    db = sqlite3.connect(ledger)
    try:
        decided = dict(db.execute("SELECT id, accepted FROM decision").fetchall())
        accepted = Counter(c for (c,) in db.execute(
            "SELECT code_id FROM decision WHERE accepted = 1 AND voided_at IS NULL"))
        seqs = [s for (s,) in db.execute("SELECT seq FROM outbox ORDER BY seq")]
        check = db.execute("PRAGMA quick_check").fetchone()[0]
    finally:
        db.close()
    return Audit(
        decisions=len(decided),
        lost=[d for d, acc in seen if decided.get(d) != int(acc)],
        doubled={c: k - allowed.get(c, 0) for c, k in accepted.items()
                 if k > allowed.get(c, 0)},
        gaps=sum(b - a - 1 for a, b in itertools.pairwise(seqs)),
        first_seq=seqs[0] if seqs else 0, quick_check=str(check))


def sync_to(home: Path, port: int) -> None:
    """Point the box's sync at the broker on ``port``, with short retry waits."""
    with (home / "edge.toml").open("a", encoding="utf-8") as f:
        f.write(f'\n[mqtt]\nhost = "127.0.0.1"\nport = {port}\nkeepalive_s = 5\n'
                "backoff_min_s = 0.05\nbackoff_max_s = 0.5\nconnect_timeout_s = 2.0\n"
                "resend_after_s = 2\n")


def box_and_hq(home: Path, hq: Hq) -> tuple[list[tuple[int, str]], list[tuple[int, str]], int]:
    """The box's outbox (seq, event id), HQ's events of it, and how many HQ has not confirmed."""
    db = sqlite3.connect(home / "ledger.sqlite")
    try:
        box = [(int(s), str(e)) for s, e in db.execute(
            "SELECT seq, event_id FROM outbox ORDER BY seq")]
        confirmed = int(db.execute("SELECT seq FROM outbox_confirmed WHERE id = 1").fetchone()[0])
    finally:
        db.close()
    held = [(int(s), str(e)) for s, e in hq.dbs[0].query(
        "SELECT seq, event_id FROM hq_event ORDER BY seq, event_id")]
    return box, held, len(box) - confirmed
