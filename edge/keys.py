"""Ed25519 keys: signing, verification, and the trusted-key records a box keeps.

PyNaCl (libsodium) was chosen over ``cryptography`` by measurement on this machine:
55 us against 105 us per verify (``bench/signing.py``), and verify sits on the hot path.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import nacl.exceptions
import nacl.public
import nacl.signing

from edge.config import ConfigError


class Purpose(enum.StrEnum):
    """What an HQ key may sign (its role; ``docs/security.md``, "Keys and roles")."""

    COUPON = "coupon"
    PICKUP = "pickup"
    CONFIG = "config"  # a store's config (retained on the config topic)
    DATA = "data"  # every other HQ-to-box message: remote uses, orders, ... (the online worker)
    TRUST = "trust"  # the trust root: the only key that can change the set of trusted keys


@dataclass(frozen=True, slots=True)
class TrustedKey:
    """A public key the box trusts, for some purposes, until ``not_after`` (if set)."""

    key_id: str
    public_key: bytes
    purposes: frozenset[Purpose]
    not_after: int | None = None

    def usable_for(self, purpose: Purpose, now: float) -> bool:
        """Whether this key may vouch for ``purpose`` at time ``now``."""
        return purpose in self.purposes and (self.not_after is None or now <= self.not_after)


class SigningKey:
    """A private Ed25519 key with its id."""

    def __init__(self, key_id: str, seed: bytes) -> None:
        """Wrap a 32-byte seed."""
        self.key_id = key_id
        self._key = nacl.signing.SigningKey(seed)

    @classmethod
    def generate(cls, key_id: str) -> SigningKey:
        """A fresh random key."""
        return cls(key_id, bytes(nacl.signing.SigningKey.generate()))

    @property
    def seed(self) -> bytes:
        """The 32-byte private seed (keep it secret)."""
        return bytes(self._key)

    @property
    def public_key(self) -> bytes:
        """The 32-byte public key."""
        return bytes(self._key.verify_key)

    def sign(self, message: bytes) -> bytes:
        """The 64-byte detached signature of ``message``."""
        return self._key.sign(message).signature

    def unseal(self, sealed: bytes) -> bytes:
        """Open what :func:`seal_to` sealed to this key's public half.

        Raises:
            ValueError: not sealed to this key, or altered.
        """
        box = nacl.public.SealedBox(self._key.to_curve25519_private_key())
        try:
            return box.decrypt(sealed)
        except nacl.exceptions.CryptoError as exc:
            raise ValueError(f"cannot open the sealed message: {exc}") from None


def seal_to(public_key: bytes, data: bytes) -> bytes:
    """``data`` sealed to the holder of Ed25519 ``public_key`` (anonymous sender).

    libsodium's sealed box to the X25519 key derived from the Ed25519 one: only the private
    key's holder can open it (:meth:`SigningKey.unseal`); enrolment sends a box its broker
    password this way (``docs/security.md``, "Broker credentials").

    Raises:
        ValueError: ``public_key`` is not an Ed25519 public key.
    """
    try:
        x25519 = nacl.signing.VerifyKey(public_key).to_curve25519_public_key()
    except (nacl.exceptions.CryptoError, nacl.exceptions.ValueError, TypeError) as exc:
        raise ValueError(f"not an Ed25519 public key: {exc}") from None
    return bytes(nacl.public.SealedBox(x25519).encrypt(data))


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is a valid Ed25519 signature of ``message`` by ``public_key``."""
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, TypeError):
        return False
    return True


def parse_trust(data: Any) -> list[TrustedKey]:
    """Trusted keys from their JSON form.

    The form is a list of ``{key_id, public_key (hex), purposes, not_after}``.

    Raises:
        ConfigError: the JSON does not have that shape.
    """
    if not isinstance(data, list):
        raise ConfigError("trusted keys must be a JSON list")
    out = []
    for i, item in enumerate(data):
        try:
            pub = bytes.fromhex(item["public_key"])
            if len(pub) != 32:
                raise ValueError("public key must be 32 bytes")
            out.append(TrustedKey(str(item["key_id"]), pub,
                                  frozenset(Purpose(p) for p in item["purposes"]),
                                  None if item.get("not_after") is None
                                  else int(item["not_after"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"trusted key #{i}: {exc}") from None
    return out
