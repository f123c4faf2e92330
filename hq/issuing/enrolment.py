"""Enrolment at HQ: one-time tokens in bundles, and redeeming them for a device's key.

``edge-hq enrol --store ID`` makes a bundle (store, broker, CA, HQ's trust root, topic
root, a one-time token that expires) for an installer; ``edge provision`` on the new box
sends the token with its fresh public key, signed by that key (``sync.contract``'s
``EnrolRequest``), and :func:`redeem` registers the key in the device registry
(``keystore.register_device``) if the token is known, for that store, unexpired and
unused. Only the token's SHA-256 is kept at HQ (``enrolments.json`` in HQ's home), so
the file does not hand out usable tokens. When HQ manages the broker's accounts, the token
is also the bundle's claim password (username ``sync.contract.claim_username``): its
broker hash is kept with it (``claim_hash``) and :func:`claims` lists the live ones for
the broker's password file (``provisioning.brokeraccounts``).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from edge.config import ID_PATTERN
from edge.keys import verify
from hq.issuing import keystore
from sync.contract import DEFAULT_ROOT, EnrolReply, EnrolRequest, claim_username

BUNDLE_FORMAT: Final = 1
DEFAULT_TTL_S: Final = 7 * 86400
TOKENS_FILE: Final = "enrolments.json"


class EnrolError(ValueError):
    """An enrolment bundle cannot be made (unknown store, no trust root...)."""


@dataclass(frozen=True, slots=True)
class Broker:
    """Where a box reaches HQ's broker."""

    host: str
    port: int
    tls: bool = False
    root: str = DEFAULT_ROOT
    ca_pem: str | None = None  # the CA of the broker's certificate, when TLS


@dataclass(frozen=True, slots=True)
class Claim:
    """A live token's broker account: its store, username and password hash."""

    store: str
    user: str
    password_hash: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _load(home: Path) -> dict[str, dict[str, Any]]:
    path = home / TOKENS_FILE
    if not path.exists():
        return {}
    data: dict[str, dict[str, Any]] = json.loads(path.read_text())
    return data


def _save(home: Path, tokens: dict[str, dict[str, Any]]) -> None:
    tmp = home / (TOKENS_FILE + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(tokens, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, home / TOKENS_FILE)


def make_bundle(home: Path, store: str, broker: Broker, store_name: str = "",
                ttl_s: float = DEFAULT_TTL_S, now: float | None = None,
                claim_hash: Callable[[str], str] | None = None) -> dict[str, Any]:
    """A bundle for one new box of ``store``, its token recorded (hashed) at HQ.

    ``claim_hash`` (the broker's password hash function) records the token as a claim
    password too, for :func:`claims`.

    Raises:
        EnrolError: a bad store id, or HQ has no keys for a box to trust.
    """
    if not ID_PATTERN.fullmatch(store):
        raise EnrolError(f"store id {store!r} must be 1-32 letters, digits, '_' or '-'")
    trust = keystore.public_keys(home)
    if not trust:
        raise EnrolError(f"no HQ keys in {home}: make them first (edge-hq keygen)")
    now = time.time() if now is None else now
    token = secrets.token_hex(16)
    tokens = _load(home)
    tokens[_digest(token)] = {"store": store, "issued_at": now, "expires_at": now + ttl_s,
                              "used_at": None, "device": None, "public_key": None}
    if claim_hash is not None:
        tokens[_digest(token)]["claim"] = [claim_username(token), claim_hash(token)]
    home.mkdir(parents=True, exist_ok=True)
    _save(home, tokens)
    return {"format": BUNDLE_FORMAT, "store": store, "name": store_name,
            "broker": {"host": broker.host, "port": broker.port, "tls": broker.tls,
                       "root": broker.root},
            "ca": broker.ca_pem, "trust": trust, "token": token, "expires_at": now + ttl_s}


def claims(home: Path, now: float | None = None) -> list[Claim]:
    """The claim accounts of tokens not yet expired, used or not.

    A used token keeps its account until it expires, so a second box trying it hears
    ``token_used`` rather than a refused connection.
    """
    now = time.time() if now is None else now
    return [Claim(r["store"], r["claim"][0], r["claim"][1]) for r in _load(home).values()
            if r.get("claim") and now <= r["expires_at"]]


def redeem(home: Path, request: EnrolRequest, now: float | None = None) -> EnrolReply:
    """Register ``request``'s device key if its token allows it; HQ's answer.

    A request repeated with the same token, device and key (the reply was lost) is
    answered ``ok`` again; any other second use is ``token_used``.
    """
    now = time.time() if now is None else now
    tokens = _load(home)
    record = tokens.get(_digest(request.token))
    if record is None:
        return EnrolReply("token_unknown", "HQ issued no such enrolment token")
    if record["store"] != request.store:
        return EnrolReply("wrong_store", f"this token is for store {record['store']}")
    if record["used_at"] is not None:
        if (record["device"], record["public_key"]) == (request.device, request.public_key):
            return EnrolReply("ok", f"{request.device} is enrolled (repeated request)")
        return EnrolReply("token_used", f"this token enrolled {record['device']} already")
    if now > record["expires_at"]:
        return EnrolReply("token_expired", "this token expired: ask HQ for a new bundle")
    if not ID_PATTERN.fullmatch(request.device):
        return EnrolReply("bad_request", f"device id {request.device!r} is not valid")
    try:
        public = bytes.fromhex(request.public_key)
        signature = bytes.fromhex(request.signature)
    except ValueError:
        return EnrolReply("bad_request", "public key and signature must be hex")
    if len(public) != 32 or not verify(public, request.message(), signature):
        return EnrolReply("bad_signature", "the request is not signed by the key it offers")
    known = keystore.load_devices(home).get(request.device)
    if known is not None and known.get("public_key") != request.public_key:
        return EnrolReply("device_exists", f"{request.device} is registered with another key")
    keystore.register_device(home, request.device, request.store, public)
    record.update(used_at=now, device=request.device, public_key=request.public_key)
    _save(home, tokens)
    return EnrolReply("ok", f"{request.device} enrolled for store {request.store}")
