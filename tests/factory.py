"""Test factories: an HQ key, a box home, and signed codes, built with the real code paths."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from edge import tokens
from edge.box import Box, init_home
from edge.keys import Purpose, SigningKey, TrustedKey
from hq.issuing.codes import sign_token

NOW = 1_764_000_000.0  # 2025-11-24, a fixed "now" for deterministic rules tests
STORE = "BJ001"
DEVICE = "BJ001-T1"


@dataclass
class Clock:
    """A settable wall clock for the rules engine."""

    now: float = NOW

    def __call__(self) -> float:
        return self.now


@dataclass
class Hq:
    """HQ's signing key and trust list."""

    key: SigningKey = field(default_factory=lambda: SigningKey.generate("HQ1"))

    @property
    def trusted(self) -> TrustedKey:
        return TrustedKey(self.key.key_id, self.key.public_key,
                          frozenset({Purpose.COUPON, Purpose.PICKUP, Purpose.CONFIG}))

    def coupon(self, **overrides: object) -> str:
        return sign_token(self.key, replace(sample_coupon(self.key.key_id), **overrides))

    def pickup(self, **overrides: object) -> str:
        return sign_token(self.key, replace(sample_pickup(self.key.key_id), **overrides))


def sample_coupon(key_id: str = "HQ1") -> tokens.Coupon:
    return tokens.Coupon(
        key_id=key_id, coupon_id="LIVE-0001", campaign_id="LIVE1125",
        channel=tokens.Channel.LIVESTREAM,
        benefit=tokens.Benefit(tokens.BenefitKind.FREE_ITEM, 1, "咖啡一杯"),
        valid_from=int(NOW - 3600), valid_until=int(NOW + 86400), max_uses=1, stores=())


def sample_pickup(key_id: str = "HQ1") -> tokens.Pickup:
    return tokens.Pickup(
        key_id=key_id, order_id="ORD-88", store_id=STORE, number="0815",
        window_start=int(NOW - 600), window_end=int(NOW + 3 * 3600),
        items="吐司x2 牛角包x1", customer="王*")


def make_box(home: Path, hq: Hq, clock: Clock | None = None, store: str = STORE,
             device: str = DEVICE) -> Box:
    """A fresh box home trusting ``hq``; its rules use ``clock`` and a trusted time of NOW."""
    init_home(home, store, device, [hq.trusted], store_name="望京店")
    box = Box.open(home)
    if clock is not None:
        box.counter.wall_clock = clock
    with box.ledger.immediate() as conn:
        box.ledger.advance_trusted_time(conn, NOW - 60, "test")
    return box

