"""Claiming coupons: a packaging card once, a campaign link within its limits.

Every claim is one transaction. A card's claim row (``PRIMARY KEY (device, serial)``) is
inserted first, so of two phones racing exactly one inserts it; the budget and the
per-customer limit are single conditional UPDATEs, so they hold under any concurrency.
Each request carries an idempotency key (the claim form's, kept per customer): a retry,
a double tap or a reload finds the coupon it already minted instead of minting another.
"""

from __future__ import annotations

import enum
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from edge import tokens
from edge.keys import SigningKey
from hq.db import Cursor, Database
from hq.issuing.minting import mint_coupon, new_coupon_id
from hq.reports import aggregates
from hq.web.campaigns import (
    CAMPAIGN_COLUMNS,
    Campaign,
    CampaignKind,
    campaign_from_row,
    card_campaign,
    get_campaign,
)

IDEM_KEY = re.compile(r"[A-Za-z0-9_-]{16,64}")
CUSTOMER_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
_COUPON_COLUMNS = ("coupon_id, code, campaign_id, source, store, issued_at, valid_until,"
                   " stores, card_device, card_serial")
_DAY = 86400


class Outcome(enum.StrEnum):
    """What a claim came to."""

    CLAIMED = "claimed"  # a coupon was minted now
    ALREADY_YOURS = "already_yours"  # this customer claimed it before: the same coupon
    TAKEN = "taken"  # another customer claimed this card first
    NO_GIFT = "no_gift"  # no campaign covers this card's store now
    NOT_ACTIVE = "not_active"  # the campaign link is unknown, not started or over
    BUDGET_SPENT = "budget_spent"
    LIMIT_REACHED = "limit_reached"  # this customer has had the campaign's limit


@dataclass(frozen=True, slots=True)
class IssuedCoupon:
    """A coupon minted for a customer, and where it came from."""

    coupon_id: str
    code: str
    campaign_id: str
    source: str  # "card" | "link"
    store: str  # the claiming store ("" for a link)
    issued_at: float
    valid_until: int
    stores: tuple[str, ...]  # empty: every store
    card_device: str | None = None
    card_serial: int | None = None

    @property
    def token(self) -> tokens.Coupon:
        """The coupon the code carries."""
        parsed = tokens.parse(self.code)
        assert isinstance(parsed, tokens.Signed) and isinstance(parsed.token, tokens.Coupon)
        return parsed.token


@dataclass(frozen=True, slots=True)
class Claim:
    """A claim's outcome; the coupon when there is one; when the card was claimed."""

    outcome: Outcome
    coupon: IssuedCoupon | None = None
    claimed_at: float | None = None


class _Refused(Exception):
    """Rolls a claim's transaction back with the outcome to report."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.value)
        self.outcome = outcome


def _coupon(row: tuple[object, ...]) -> IssuedCoupon:
    cid, code, campaign, source, store, at, until, stores, device, serial = row
    return IssuedCoupon(str(cid), str(code), str(campaign), str(source), str(store),
                        float(str(at)), int(str(until)),
                        tuple(s for s in str(stores).split(",") if s),
                        None if device is None else str(device),
                        None if serial is None else int(str(serial)))


class Claims:
    """Claims against HQ's database, coupons signed with HQ's coupon key."""

    def __init__(self, db: Database, key: SigningKey,
                 clock: Callable[[], float] = time.time) -> None:
        """Claim on ``db``, minting with ``key``; ``clock`` is the wall clock."""
        self.db = db
        self.key = key
        self.clock = clock

    # -- reads ---------------------------------------------------------------------

    def card_claim(self, card: tokens.Card) -> tuple[float, str, str | None] | None:
        """(claimed_at, customer, coupon id) of a card's claim, or None if unclaimed."""
        rows = self.db.query("SELECT claimed_at, customer, coupon_id FROM web_card_claim"
                             " WHERE device=? AND serial=?", (card.device_id, card.serial))
        if not rows:
            return None
        at, customer, coupon = rows[0]
        return float(at), str(customer), None if coupon is None else str(coupon)

    def gift_for(self, store: str) -> Campaign | None:
        """The welcome gift a card of ``store`` would claim now."""
        with self.db.tx() as cur:
            return card_campaign(cur, store, self.clock())

    def campaign(self, campaign_id: str) -> Campaign | None:
        """A campaign by id."""
        with self.db.tx() as cur:
            return get_campaign(cur, campaign_id)

    def coupon(self, coupon_id: str, customer: str) -> IssuedCoupon | None:
        """A customer's coupon by id (None for another customer's)."""
        rows = self.db.query(f"SELECT {_COUPON_COLUMNS} FROM web_coupon WHERE coupon_id=?"
                             " AND customer=?", (coupon_id, customer))
        return _coupon(rows[0]) if rows else None

    def coupons_of(self, customer: str) -> list[IssuedCoupon]:
        """A customer's coupons, newest first."""
        rows = self.db.query(f"SELECT {_COUPON_COLUMNS} FROM web_coupon WHERE customer=?"
                             " ORDER BY issued_at DESC", (customer,))
        return [_coupon(r) for r in rows]

    def uses(self, coupon_id: str) -> list[tuple[str, float | None]]:
        """(store, last use) where HQ's ingested events say the coupon was used (net of voids)."""
        rows = self.db.query("SELECT store, last_at FROM hq_code_use WHERE code_id=?"
                             " AND uses>0 ORDER BY last_at", ("C:" + coupon_id,))
        return [(str(s), None if at is None else float(at)) for s, at in rows]

    # -- claims --------------------------------------------------------------------

    def claim_card(self, card: tokens.Card, customer: str, idem_key: str) -> Claim:
        """Claim a verified card for ``customer``: once per card, once per idempotency key.

        Raises:
            ValueError: a malformed customer id or idempotency key.
            DbError: the database failed (nothing was claimed).
        """
        def claim(cur: Cursor, now: float) -> Claim:
            cur.execute(
                "INSERT INTO web_card_claim(device, serial, store, issued_at, receipt_ref,"
                " claimed_at, customer) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (device, serial) DO NOTHING",
                (card.device_id, card.serial, card.store_id, card.issued_at,
                 card.receipt_ref, now, customer))
            if cur.rowcount == 0:
                return self._claimed_before(cur, card, customer)
            aggregates.count_claim(cur, card.store_id, now)  # the dashboard's funnel
            campaign = card_campaign(cur, card.store_id, now)
            if campaign is None:
                raise _Refused(Outcome.NO_GIFT)
            _spend(cur, campaign, customer)
            stores = (card.store_id,) if campaign.claim_store_only else campaign.stores
            issued = self._mint(cur, campaign, customer, idem_key, now, "W", stores,
                                card.store_id, card)
            cur.execute("UPDATE web_card_claim SET coupon_id=? WHERE device=? AND serial=?",
                        (issued.coupon_id, card.device_id, card.serial))
            return Claim(Outcome.CLAIMED, issued, now)

        return self._once(customer, idem_key, claim)

    def claim_link(self, campaign_id: str, customer: str, idem_key: str) -> Claim:
        """Claim a personal coupon of a link campaign, within its budget and limit.

        Raises:
            ValueError: a malformed customer id or idempotency key.
            DbError: the database failed (nothing was claimed).
        """
        def claim(cur: Cursor, now: float) -> Claim:
            campaign = _take_link(cur, campaign_id, now)
            _per_customer(cur, campaign, customer)
            issued = self._mint(cur, campaign, customer, idem_key, now, "L", campaign.stores,
                                "", None)
            return Claim(Outcome.CLAIMED, issued, now)

        return self._once(customer, idem_key, claim)

    def _once(self, customer: str, idem_key: str,
              claim: Callable[[Cursor, float], Claim]) -> Claim:
        """Run ``claim`` in one transaction unless this idempotency key minted already.

        A refusal inside ``claim`` rolls back everything it did and becomes the outcome.
        """
        _check_ids(customer, idem_key)
        now = self.clock()
        try:
            with self.db.tx() as cur:
                mine = _by_idem(cur, customer, idem_key)
                if mine is not None:
                    return Claim(Outcome.ALREADY_YOURS, mine, mine.issued_at)
                return claim(cur, now)
        except _Refused as refused:
            return Claim(refused.outcome)

    def _claimed_before(self, cur: Cursor, card: tokens.Card, customer: str) -> Claim:
        cur.execute("SELECT claimed_at, customer, coupon_id FROM web_card_claim"
                    " WHERE device=? AND serial=?", (card.device_id, card.serial))
        at, by, coupon_id = cur.fetchone()
        if by != customer:
            return Claim(Outcome.TAKEN, None, float(at))
        cur.execute(f"SELECT {_COUPON_COLUMNS} FROM web_coupon WHERE coupon_id=?", (coupon_id,))
        row = cur.fetchone()
        return Claim(Outcome.ALREADY_YOURS, None if row is None else _coupon(tuple(row)),
                     float(at))

    def _mint(self, cur: Cursor, campaign: Campaign, customer: str, idem_key: str,
              now: float, prefix: str, stores: tuple[str, ...], store: str,
              card: tokens.Card | None) -> IssuedCoupon:
        coupon_id = new_coupon_id(prefix)
        until = int(min(now + campaign.coupon_days * _DAY, 2**32 - 1))
        channel = tokens.Channel.WELCOME if card is not None else tokens.Channel.COMMUNITY
        token = tokens.Coupon(self.key.key_id, coupon_id, campaign.campaign_id, channel,
                              campaign.benefit, int(now), until, 1, stores)
        code = mint_coupon(cur, self.key, token, now)
        issued = IssuedCoupon(coupon_id, code, campaign.campaign_id,
                              "card" if card is not None else "link", store, now, until,
                              stores, None if card is None else card.device_id,
                              None if card is None else card.serial)
        cur.execute(f"INSERT INTO web_coupon({_COUPON_COLUMNS}, customer, idem_key)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (coupon_id, code, campaign.campaign_id, issued.source, store, now, until,
                     ",".join(stores), issued.card_device, issued.card_serial, customer,
                     _idem(customer, idem_key)))
        return issued


def _check_ids(customer: str, idem_key: str) -> None:
    if not CUSTOMER_ID.fullmatch(customer):
        raise ValueError("malformed customer id")
    if not IDEM_KEY.fullmatch(idem_key):
        raise ValueError("malformed idempotency key")


def _idem(customer: str, idem_key: str) -> str:
    """Idempotency keys are the customer's own: another's key never finds their coupon."""
    return f"{customer}:{idem_key}"


def _by_idem(cur: Cursor, customer: str, idem_key: str) -> IssuedCoupon | None:
    cur.execute(f"SELECT {_COUPON_COLUMNS} FROM web_coupon WHERE idem_key=?",
                (_idem(customer, idem_key),))
    row = cur.fetchone()
    return None if row is None else _coupon(tuple(row))


def _customer(cur: Cursor, customer: str, now: float) -> None:
    cur.execute("INSERT INTO web_customer(customer, created_at) VALUES (?, ?)"
                " ON CONFLICT (customer) DO NOTHING", (customer, now))


def _spend(cur: Cursor, campaign: Campaign, customer: str) -> None:
    """Take one from the budget and from the customer's limit, or refuse (rolling back)."""
    cur.execute("UPDATE web_campaign SET issued=issued+1 WHERE campaign_id=?"
                " AND (budget=0 OR issued<budget)", (campaign.campaign_id,))
    if cur.rowcount == 0:
        raise _Refused(Outcome.BUDGET_SPENT)
    _per_customer(cur, campaign, customer)


def _take_link(cur: Cursor, campaign_id: str, now: float) -> Campaign:
    """Take one from a running link campaign's budget (one statement), or refuse."""
    cur.execute(f"UPDATE web_campaign SET issued=issued+1 WHERE campaign_id=? AND kind=?"
                " AND starts<=? AND ends>? AND (budget=0 OR issued<budget)"
                f" RETURNING {CAMPAIGN_COLUMNS}",
                (campaign_id, CampaignKind.LINK.value, int(now), int(now)))
    row = cur.fetchone()
    if row is not None:
        return campaign_from_row(tuple(row))
    campaign = get_campaign(cur, campaign_id)  # why not: the rare path reads once more
    if campaign is None or campaign.kind is not CampaignKind.LINK or not campaign.active(now):
        raise _Refused(Outcome.NOT_ACTIVE)
    raise _Refused(Outcome.BUDGET_SPENT)


def _per_customer(cur: Cursor, campaign: Campaign, customer: str) -> None:
    """Count one claim against the customer's limit for ``campaign``, or refuse."""
    if campaign.per_customer:
        cur.execute("INSERT INTO web_campaign_customer(campaign_id, customer, claims)"
                    " VALUES (?, ?, 1) ON CONFLICT (campaign_id, customer) DO UPDATE"
                    " SET claims=web_campaign_customer.claims+1"
                    " WHERE web_campaign_customer.claims<?",
                    (campaign.campaign_id, customer, campaign.per_customer))
        if cur.rowcount == 0:
            raise _Refused(Outcome.LIMIT_REACHED)


def set_phone(db: Database, customer: str, phone: str, marketing: bool) -> None:
    """Keep a customer's phone number, and their marketing consent only if given.

    Raises:
        ValueError: a malformed customer id or phone number.
    """
    if not CUSTOMER_ID.fullmatch(customer):
        raise ValueError("malformed customer id")
    if not PHONE.fullmatch(phone):
        raise ValueError("malformed phone number")
    now = time.time()
    with db.tx() as cur:
        _customer(cur, customer, now)
        cur.execute("UPDATE web_customer SET phone=?, marketing_consent=?, consent_at=?"
                    " WHERE customer=?", (phone, int(marketing), now if marketing else None,
                                          customer))


PHONE = re.compile(r"1[3-9][0-9]{9}|\+[0-9]{6,15}")
