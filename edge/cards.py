"""Packaging cards: minting the device-signed, single-claim token and its URL."""

from __future__ import annotations

import re
from dataclasses import dataclass

from edge import tokens
from edge.clock import Reading
from edge.events import EventType
from edge.keys import SigningKey
from edge.ledger import Ledger
from edge.qrfit import CARD_MAX_VERSION, qr_version
from edge.rules import Identity

RECEIPT_REF = re.compile(r"[A-Za-z0-9_-]{0,32}")
# The largest card a device will mint within the next decades, to size-check a URL base.
_WORST_SERIAL = 2**32
_WORST_TIME = 2**32 - 1


class CardError(ValueError):
    """A card cannot be minted as asked (bad receipt reference, URL base too long)."""


@dataclass(frozen=True, slots=True)
class IssuedCard:
    """A minted card: its serial, URL and the event that reports it."""

    serial: int
    url: str
    code: str
    issued_at: float
    clock_trusted: bool
    event_id: str


def _unsigned_url(base: str, card: tokens.Card) -> str:
    """The card's URL with a worst-case placeholder signature, for size checks.

    0xFF bytes encode to non-digits: a run of zeros would let the QR encoder switch to
    numeric mode and under-state the size a real signature needs.
    """
    return tokens.card_url(base, tokens.assemble(card, b"\xff" * tokens.SIG_LEN))


def check_url_base(base: str, identity: Identity) -> int:
    """The QR version of the largest card this base would produce.

    Raises:
        CardError: the base would push a card past QR version 6 at ECC M.
    """
    worst = tokens.Card(identity.store_id, identity.device_id, _WORST_SERIAL, _WORST_TIME)
    version = qr_version(_unsigned_url(base, worst))
    if version > CARD_MAX_VERSION:
        raise CardError(
            f"card URL base {base!r} is too long: with store {identity.store_id!r} and device "
            f"{identity.device_id!r} a card needs QR version {version} (at most "
            f"{CARD_MAX_VERSION}); use a shorter base, upper case")
    return version


def issue_card(ledger: Ledger, identity: Identity, key: SigningKey, url_base: str,
               reading: Reading, receipt_ref: str = "") -> IssuedCard:
    """Mint a card: a never-repeating serial, a signed token, and a ``card_issued`` event.

    The receipt reference goes into the token when the URL still fits QR version 6;
    otherwise only the event carries it, and HQ joins it to the card by device and serial.

    Raises:
        CardError: the receipt reference is not 0-32 of ``A-Z a-z 0-9 _ -``.
    """
    if not RECEIPT_REF.fullmatch(receipt_ref):
        raise CardError(f"receipt reference {receipt_ref!r} must be 0-32 letters, digits, "
                        "'_' or '-'")
    with ledger.immediate() as conn:
        cur = conn.execute("INSERT INTO card(issued_at, receipt_ref, url) VALUES (?, ?, '')",
                           (reading.now, receipt_ref))
        assert cur.lastrowid is not None
        serial = cur.lastrowid
        card = tokens.Card(identity.store_id, identity.device_id, serial, int(reading.now),
                           receipt_ref)
        if receipt_ref and qr_version(_unsigned_url(url_base, card)) > CARD_MAX_VERSION:
            card = tokens.Card(card.store_id, card.device_id, serial, card.issued_at)
        code = tokens.assemble(card, key.sign(tokens.signing_bytes(card)))
        url = tokens.card_url(url_base, code)
        conn.execute("UPDATE card SET url=? WHERE serial=?", (url, serial))
        _seq, event_id = ledger.append_event(
            conn, EventType.CARD_ISSUED, reading.now, reading.trusted,
            {"serial": serial, "receipt_ref": receipt_ref,
             "receipt_in_token": bool(card.receipt_ref), "url": url})
    return IssuedCard(serial, url, code, reading.now, reading.trusted, event_id)
