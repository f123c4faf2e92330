"""HQ's signing keys and device registry, kept as files in an HQ home folder.

Layout: ``keys/<key_id>.json`` (private: seed, purposes, expiry; mode 0600) and
``devices.json`` (device id -> store id and public key, for checking packaging cards).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from edge.keys import Purpose, SigningKey, TrustedKey

KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,16}")


class KeystoreError(ValueError):
    """A key or device record is missing or malformed."""


def default_home() -> Path:
    """``$EDGE_HQ_HOME`` or ``~/.store-edge-hq``."""
    return Path(os.environ.get("EDGE_HQ_HOME") or Path.home() / ".store-edge-hq")


def create_key(home: Path, key_id: str, purposes: list[Purpose],
               not_after: int | None = None) -> TrustedKey:
    """Generate and store a new HQ signing key; returns its public record.

    Raises:
        KeystoreError: bad key id, or a key with that id already exists.
    """
    if not KEY_ID.fullmatch(key_id):
        raise KeystoreError(f"key id {key_id!r} must be 1-16 letters, digits, '_' or '-'")
    if not purposes:
        raise KeystoreError("a key needs at least one purpose")
    if Purpose.TRUST in purposes and len(set(purposes)) > 1:
        # The trust root alone changes the trusted set: a key that also signs something
        # day to day would be online, and its theft would hand over every role.
        raise KeystoreError("a trust-root key has the trust purpose alone")
    (home / "keys").mkdir(parents=True, exist_ok=True)
    path = home / "keys" / f"{key_id}.json"
    key = SigningKey.generate(key_id)
    record = {"key_id": key_id, "seed": key.seed.hex(), "public_key": key.public_key.hex(),
              "purposes": sorted(purposes), "not_after": not_after}
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeystoreError(f"key {key_id} already exists at {path}") from None
    with os.fdopen(fd, "w") as f:
        json.dump(record, f, indent=1)
    return TrustedKey(key_id, key.public_key, frozenset(purposes), not_after)


def _records(home: Path) -> list[dict[str, Any]]:
    folder = home / "keys"
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.glob("*.json")):
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            raise KeystoreError(f"{path}: {exc}") from None
    return out


def signing_key(home: Path, purpose: Purpose, key_id: str | None = None) -> SigningKey:
    """The key to sign ``purpose`` with: ``key_id`` if given, else the newest that may.

    Raises:
        KeystoreError: no such key, or none for that purpose.
    """
    candidates = [r for r in _records(home) if purpose in r["purposes"]
                  and (key_id is None or r["key_id"] == key_id)]
    if not candidates:
        raise KeystoreError(f"no HQ key for {purpose.value}" + (f" named {key_id}" if key_id
                                                                else "") + f" in {home}/keys")
    record = max(candidates, key=lambda r: os.path.getmtime(home / "keys" /
                                                            f"{r['key_id']}.json"))
    return SigningKey(record["key_id"], bytes.fromhex(record["seed"]))


def purposes_of(home: Path, key_id: str) -> frozenset[Purpose]:
    """The purposes of HQ key ``key_id``.

    Raises:
        KeystoreError: no such key.
    """
    for r in _records(home):
        if r["key_id"] == key_id:
            return frozenset(Purpose(p) for p in r["purposes"])
    raise KeystoreError(f"no HQ key {key_id} in {home}/keys")


def public_keys(home: Path) -> list[dict[str, Any]]:
    """Every HQ public key record, as a box's trust list takes them."""
    return [{"key_id": r["key_id"], "public_key": r["public_key"], "purposes": r["purposes"],
             "not_after": r["not_after"]} for r in _records(home)]


def register_device(home: Path, device_id: str, store_id: str, public_key: bytes) -> None:
    """Record a device's public key so its packaging cards can be checked."""
    if len(public_key) != 32:
        raise KeystoreError("a device public key is 32 bytes (64 hex digits)")
    devices = load_devices(home)
    devices[device_id] = {"store": store_id, "public_key": public_key.hex()}
    home.mkdir(parents=True, exist_ok=True)
    tmp = home / "devices.json.tmp"
    tmp.write_text(json.dumps(devices, indent=1, sort_keys=True))
    os.replace(tmp, home / "devices.json")


def load_devices(home: Path) -> dict[str, dict[str, str]]:
    """The device registry."""
    path = home / "devices.json"
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise KeystoreError(f"{path}: {exc}") from None
    if not isinstance(data, dict):
        raise KeystoreError(f"{path} must hold a JSON object")
    return data
