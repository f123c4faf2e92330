"""Generators of hostile input for the store daemon, and what each input may lead to.

Every generated input is tagged with the most it may do: ``accept`` only for a genuine code
(which a single-use coupon does once), ``reject`` for anything else. Kinds: random bytes,
one-character mutations of genuine codes, genuine payloads with forged signatures, codes
signed by a rogue key that reuses HQ's key id, replays of genuine codes, oversized lines,
invalid UTF-8, and serial noise (bytes with no line end, then a line end).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

from edge import base41, tokens
from edge.keys import SigningKey
from hq.issuing.codes import sign_token

KINDS = ("random_bytes", "mutated", "forged_sig", "rogue_key", "replay", "oversized",
         "bad_utf8", "noise")


@dataclass(frozen=True, slots=True)
class Input:
    """One hostile input: raw bytes for the serial line, or text for the local API."""

    kind: str
    data: bytes
    genuine: str | None = None  # the genuine code this is, if any (may be accepted once)


def rogue_coupon(key_id: str, coupon_id: str, now: int) -> str:
    """A well-formed coupon signed by a key HQ never had, under HQ's own key id."""
    rogue = SigningKey.generate(key_id)
    return sign_token(rogue, tokens.Coupon(
        key_id, coupon_id, "LIVE1125", tokens.Channel.LIVESTREAM,
        tokens.Benefit(tokens.BenefitKind.FREE_ITEM, 1, "咖啡一杯"), now - 3600, now + 86400))


def forged(code: str, rng: random.Random) -> str:
    """A genuine code's payload with a random signature."""
    parsed = tokens.parse(code)
    assert isinstance(parsed, tokens.Signed)
    return tokens.PREFIXES[parsed.kind] + base41.encode(
        parsed.signed[tokens.PREFIX_LEN:] + rng.randbytes(tokens.SIG_LEN))


def mutate(code: str, rng: random.Random) -> str:
    """One character of a genuine code changed to another of the code alphabet."""
    i = rng.randrange(tokens.PREFIX_LEN, len(code))
    alphabet = base41.ALPHABET.replace(code[i], "")
    return code[:i] + rng.choice(alphabet) + code[i + 1:]


def generate(n: int, genuine: list[str], key_id: str, now: int, seed: int = 17
             ) -> Iterator[Input]:
    """``n`` inputs, kinds in turn; genuine codes are replayed several times each."""
    rng = random.Random(seed)
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        code = genuine[rng.randrange(len(genuine))]
        if kind == "random_bytes":
            yield Input(kind, rng.randbytes(rng.randrange(1, 200)).replace(b"\n", b" "))
        elif kind == "mutated":
            yield Input(kind, mutate(code, rng).encode())
        elif kind == "forged_sig":
            yield Input(kind, forged(code, rng).encode())
        elif kind == "rogue_key":
            yield Input(kind, rogue_coupon(key_id, f"R-{i}", now).encode())
        elif kind == "replay":
            yield Input(kind, code.encode(), genuine=code)
        elif kind == "oversized":
            yield Input(kind, (code * 40 + "X" * rng.randrange(4000, 20000)).encode())
        elif kind == "bad_utf8":
            yield Input(kind, code[:10].encode() + bytes([0xFF, 0xC3, 0x28]) + code[10:].encode())
        else:
            yield Input(kind, rng.randbytes(rng.randrange(1, 64)).translate(None, b"\r\n"))
