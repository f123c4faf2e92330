"""Trust lists: the set of keys boxes trust, signed by the trust root.

Only a key with the ``trust`` role can change which keys a box trusts
(``docs/security.md``, "Keys and roles"). ``edge-hq sign-trust`` signs the whole set, once
for every store (``store`` is ``*``), with a version above the last one, and keeps it as
``trust.json`` in the HQ home; ``edge-hq push-config`` carries the newest list inside each
config (the ``trust`` field), so a box learns a rotated set with its next config. The
trust root need not be where configs are pushed: sign in the root's own home
(``--keys`` names the set to sign) and copy ``trust.json`` across.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from edge.keys import Purpose, parse_trust
from edge.storeconfig import ALL_STORES
from hq.issuing import keystore
from sync.contract import DataKind, Envelope, HqData, seal

TRUST_FILE = "trust.json"


def load_trust_list(home: Path) -> dict[str, Any] | None:
    """The signed trust list kept in ``home`` (an envelope object), or ``None``.

    Raises:
        hq.issuing.keystore.KeystoreError: the file is unreadable or not an envelope.
    """
    path = home / TRUST_FILE
    if not path.exists():
        return None
    try:
        obj = json.loads(path.read_text())
        Envelope.from_object(obj)
    except (OSError, ValueError) as exc:
        raise keystore.KeystoreError(f"{path}: {exc}") from None
    if not isinstance(obj, dict):
        raise keystore.KeystoreError(f"{path}: not a signed trust list")
    return obj


def trust_version(obj: dict[str, Any]) -> int:
    """The version a signed trust list carries (its payload is not verified here)."""
    return int(json.loads(Envelope.from_object(obj).payload)["version"])


def sign_trust_list(home: Path, keys: list[dict[str, Any]] | None = None,
                    root_key_id: str | None = None, version: int | None = None,
                    out: Path | None = None) -> tuple[Path, int]:
    """Sign ``keys`` (default: every public key in ``home``) with the trust root.

    The version is ``version`` or one above the list already at ``out`` (default
    ``home/trust.json``). Returns where it was written and its version.

    Raises:
        hq.issuing.keystore.KeystoreError: no trust key, a bad key set, or a version not
            above the last.
    """
    root = keystore.signing_key(home, Purpose.TRUST, root_key_id)
    keys = keystore.public_keys(home) if keys is None else keys
    try:
        parsed = parse_trust(keys)
    except ValueError as exc:
        raise keystore.KeystoreError(f"trust list: {exc}") from None
    if not any(Purpose.TRUST in k.purposes for k in parsed):
        raise keystore.KeystoreError("trust list names no trust-root key: nothing could "
                                     "change the set again")
    if not any(Purpose.CONFIG in k.purposes for k in parsed):
        raise keystore.KeystoreError("trust list names no config key: a box could verify "
                                     "no config")
    out = out or home / TRUST_FILE
    last = 0
    if out.exists():
        previous = load_trust_list(out.parent) if out.name == TRUST_FILE else json.loads(
            out.read_text())
        last = trust_version(previous) if previous else 0
    if version is not None and version <= last:
        raise keystore.KeystoreError(f"trust list version {version} is not above the last "
                                     f"one ({last}): boxes would refuse it")
    version = version if version is not None else last + 1
    env = seal(root, HqData(DataKind.TRUST, ALL_STORES, version, time.time(), {"keys": keys}))
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(env.to_object(), indent=1))
    os.replace(tmp, out)
    return out, version
