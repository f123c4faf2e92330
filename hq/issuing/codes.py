"""Issuing signed codes, and checking packaging cards as HQ's landing page does."""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass
from typing import Final

from edge import keys, tokens
from edge.keys import SigningKey

PICKUP_DIGITS: Final = 6  # a typed number: 10^6 to guess from, 5 misses a minute per till


def random_pickup_number(digits: int = PICKUP_DIGITS) -> str:
    """A pickup number to type at the till: random, never sequential; leading zeros kept.

    One order's number says nothing about another's.

    Raises:
        ValueError: ``digits`` outside the contract's 3-8.
    """
    if not 3 <= digits <= 8:
        raise ValueError(f"a pickup number has 3-8 digits, not {digits}")
    return f"{secrets.randbelow(10 ** digits):0{digits}d}"


def sign_token(key: SigningKey, token: tokens.Coupon | tokens.Pickup | tokens.Ticket) -> str:
    """The code text for ``token``, signed with ``key`` (whose id the token must carry)."""
    if token.key_id != key.key_id:
        raise ValueError(f"token names key {token.key_id!r} but is signed by {key.key_id!r}")
    return tokens.assemble(token, key.sign(tokens.signing_bytes(token)))


class CardCheck(enum.StrEnum):
    """The outcome of checking a packaging-card URL."""

    VALID = "valid"
    BAD_FORMAT = "bad_format"
    NOT_A_CARD = "not_a_card"
    UNKNOWN_DEVICE = "unknown_device"
    WRONG_STORE = "wrong_store"
    FORGED = "forged"


@dataclass(frozen=True, slots=True)
class CardResult:
    """What HQ learned from a card URL."""

    outcome: CardCheck
    detail: str
    card: tokens.Card | None = None


def verify_card(url: str, devices: dict[str, dict[str, str]]) -> CardResult:
    """Check a card URL offline against the device registry. Never raises."""
    parsed = tokens.parse(tokens.code_from_url(url))
    if isinstance(parsed, tokens.FormatError):
        return CardResult(CardCheck.BAD_FORMAT, parsed.detail)
    card = parsed.token
    if not isinstance(card, tokens.Card):
        return CardResult(CardCheck.NOT_A_CARD, f"a {parsed.kind.value} code, not a card")
    device = devices.get(card.device_id)
    if device is None:
        return CardResult(CardCheck.UNKNOWN_DEVICE, f"device {card.device_id} is not registered",
                          card)
    if device.get("store") != card.store_id:
        return CardResult(CardCheck.WRONG_STORE, f"device {card.device_id} belongs to store "
                          f"{device.get('store')}, card says {card.store_id}", card)
    if not keys.verify(bytes.fromhex(device["public_key"]), parsed.signed, parsed.signature):
        return CardResult(CardCheck.FORGED, "signature does not match the device key", card)
    return CardResult(CardCheck.VALID, f"store {card.store_id} device {card.device_id} "
                      f"card {card.serial}", card)
