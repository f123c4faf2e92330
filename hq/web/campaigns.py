"""Campaigns whose personal coupons the customer pages hand out.

Two kinds: ``card`` (the welcome gift behind a packaging card; the newest one active for
the card's store applies) and ``link`` (a link shown in a livestream or posted in a group,
``/c/<campaign id>``). Each has a benefit, a claim window, how long each coupon stays
valid, the stores where it is good (or only the claiming store), a per-customer limit and
a total budget (0: none).
"""

from __future__ import annotations

import enum
import re
import time
from dataclasses import dataclass

from edge import tokens
from hq.db import Cursor, Database

CAMPAIGN_ID = re.compile(r"[A-Za-z0-9_-]{1,24}")
CAMPAIGN_COLUMNS = ("campaign_id, kind, name, benefit_kind, benefit_value, benefit_item, starts,"
                    " ends, coupon_days, stores, claim_store_only, per_customer, budget, issued")


class CampaignKind(enum.StrEnum):
    """What hands a campaign's coupons out."""

    CARD = "card"
    LINK = "link"


class CampaignError(ValueError):
    """A campaign cannot be created as asked."""


@dataclass(frozen=True, slots=True)
class Campaign:
    """A campaign as HQ defined it, with how many coupons it has given."""

    campaign_id: str
    kind: CampaignKind
    name: str
    benefit: tokens.Benefit
    starts: int
    ends: int
    coupon_days: int = 30
    stores: tuple[str, ...] = ()  # empty: every store
    claim_store_only: bool = False  # a card gift good only at the store that printed it
    per_customer: int = 0  # 0: no limit
    budget: int = 0  # 0: no limit
    issued: int = 0

    def active(self, now: float) -> bool:
        """Whether coupons may be claimed at ``now``."""
        return self.starts <= now < self.ends

    def spent(self) -> bool:
        """Whether the budget is used up."""
        return 0 < self.budget <= self.issued

    def covers(self, store: str) -> bool:
        """Whether a card of ``store`` may claim this campaign."""
        return not self.stores or store in self.stores


def campaign_from_row(row: tuple[object, ...]) -> Campaign:
    """A campaign from a row of :data:`CAMPAIGN_COLUMNS`."""
    (cid, kind, name, bkind, bvalue, bitem, starts, ends, days, stores, only, per, budget,
     issued) = row
    return Campaign(str(cid), CampaignKind(str(kind)), str(name),
                    tokens.Benefit(tokens.BenefitKind(int(str(bkind))), int(str(bvalue)),
                                   str(bitem)),
                    int(str(starts)), int(str(ends)), int(str(days)),
                    tuple(s for s in str(stores).split(",") if s), bool(only),
                    int(str(per)), int(str(budget)), int(str(issued)))


def create_campaign(db: Database, c: Campaign) -> None:
    """Define a new campaign.

    Raises:
        CampaignError: a bad id, window, limit, or an id already used.
    """
    if not CAMPAIGN_ID.fullmatch(c.campaign_id):
        raise CampaignError(f"campaign id {c.campaign_id!r} must be 1-24 letters, digits, "
                            "'_' or '-'")
    if c.ends <= c.starts:
        raise CampaignError("the campaign must end after it starts")
    if c.coupon_days < 1 or c.per_customer < 0 or c.budget < 0:
        raise CampaignError("coupon days must be >= 1; limits >= 0 (0: none)")
    with db.tx() as cur:
        cur.execute(
            f"INSERT INTO web_campaign({CAMPAIGN_COLUMNS}, created_at) VALUES"
            " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?) ON CONFLICT (campaign_id) DO NOTHING",
            (c.campaign_id, c.kind.value, c.name, int(c.benefit.kind), c.benefit.value,
             c.benefit.item, c.starts, c.ends, c.coupon_days, ",".join(c.stores),
             int(c.claim_store_only), c.per_customer, c.budget, time.time()))
        if cur.rowcount == 0:
            raise CampaignError(f"campaign {c.campaign_id} already exists")


def get_campaign(cur: Cursor, campaign_id: str) -> Campaign | None:
    """One campaign, read on ``cur``."""
    cur.execute(f"SELECT {CAMPAIGN_COLUMNS} FROM web_campaign WHERE campaign_id=?", (campaign_id,))
    row = cur.fetchone()
    return None if row is None else campaign_from_row(tuple(row))


def list_campaigns(db: Database) -> list[Campaign]:
    """Every campaign, newest first."""
    rows = db.query(f"SELECT {CAMPAIGN_COLUMNS} FROM web_campaign ORDER BY created_at DESC")
    return [campaign_from_row(r) for r in rows]


def card_campaign(cur: Cursor, store: str, now: float) -> Campaign | None:
    """The welcome gift a card of ``store`` claims at ``now``: the newest active one."""
    cur.execute(f"SELECT {CAMPAIGN_COLUMNS} FROM web_campaign WHERE kind=? AND starts<=? AND ends>?"
                " ORDER BY created_at DESC", (CampaignKind.CARD.value, int(now), int(now)))
    for row in cur.fetchall():
        c = campaign_from_row(tuple(row))
        if c.covers(store):
            return c
    return None
