"""A store for the cashier UI tests: a box home with an HQ key, coupons and today's orders."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge import tokens
from edge.box import init_home
from edge.keys import Purpose, SigningKey, TrustedKey
from edge.ledger import Ledger
from edge.orders import upsert_order
from hq.issuing.codes import sign_token
from tests.uihelp import FIXED_NOW

HQ_SEED = bytes(range(32))  # a fixed HQ key: the same codes in every run


@dataclass(frozen=True)
class Store:
    """A box home and the codes a test can show at its till."""

    home: Path
    coffee: str  # free coffee, single use
    ninety_five: str  # 95折, single use
    five_off: str  # 减5元
    other_store: str  # a coupon for another store only
    pickup: str  # signed pickup code for order 0815
    numbers: dict[str, str]  # order number -> order id


def _coupon(key: SigningKey, now: float, coupon_id: str, campaign: str,
            kind: tokens.BenefitKind, value: int, item: str = "",
            stores: tuple[str, ...] = ()) -> str:
    return sign_token(key, tokens.Coupon(
        key.key_id, coupon_id, campaign, tokens.Channel.LIVESTREAM,
        tokens.Benefit(kind, value, item), int(now - 7 * 86400),
        int(now + 30 * 86400), 1, stores))


def make_store(home: Path, now: float = FIXED_NOW) -> Store:
    """Initialise ``home`` as store BJ001, till T1, with codes and four pickup orders.

    Codes and pickup windows are placed around ``now`` (the fixed clock by default; the
    real daemon tests pass the real time, since the daemon reads the system clock).
    """
    hq = SigningKey("HQ1", HQ_SEED)
    trust = [TrustedKey("HQ1", hq.public_key, frozenset({Purpose.COUPON, Purpose.PICKUP}))]
    init_home(home, "BJ001", "BJ001-T1", trust, store_name="望京店")
    ledger = Ledger(home / "ledger.sqlite")
    numbers: dict[str, str] = {}
    pickup = ""
    hour = 3600
    plans = [("0815", "吐司x2 牛角包x1", "王*", -hour, 3 * hour, "waiting"),
             ("0816", "全麦面包x1", "李*", -3 * hour, -hour, "waiting"),  # late, inside grace
             ("0817", "蛋糕 6寸x1", "张*", -2 * hour, 2 * hour, "cancelled"),
             ("0818", "法棍x2", "Chen*", hour, 4 * hour, "waiting")]
    try:
        with ledger.immediate() as conn:
            ledger.advance_trusted_time(conn, now - 60, "test")
            for number, items, customer, start, end, status in plans:
                order = tokens.Pickup("HQ1", f"ORD-{number}", "BJ001", number,
                                      int(now + start), int(now + end), items,
                                      customer)
                upsert_order(conn, order, status)
                numbers[number] = order.order_id
                if number == "0815":
                    pickup = sign_token(hq, order)
    finally:
        ledger.close()
    return Store(
        home=home,
        coffee=_coupon(hq, now, "LIVE-0001", "LIVE1125", tokens.BenefitKind.FREE_ITEM, 1,
                       "咖啡一杯"),
        ninety_five=_coupon(hq, now, "COMM-0001", "COMM95", tokens.BenefitKind.PERCENT_PRICE, 95),
        five_off=_coupon(hq, now, "WEL-0001", "WELCOME", tokens.BenefitKind.AMOUNT_OFF, 500),
        other_store=_coupon(hq, now, "SH-0001", "SH-ONLY", tokens.BenefitKind.AMOUNT_OFF, 300,
                            stores=("SH002",)),
        pickup=pickup, numbers=numbers)


