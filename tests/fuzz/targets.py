"""The fuzz targets: one function per parser, each taking raw bytes and checking invariants.

A target returns normally for any input the parser handles as it should: a typed refusal
(``FormatError``, ``ContractError``, ``StoreConfigError``) is a correct answer to junk. An
AssertionError is a broken invariant (a forged input accepted), and any other exception a
crash; either is a finding, kept in ``tests/fuzz/crashes/<target>/`` and replayed by
``tests/test_fuzz.py`` for good.

Seeds (``seeds(name)``) are valid inputs built with fixed keys, so the fuzzer starts from
the real formats and mutates inward; only a seed itself (or an input that decodes to
exactly a seed's signed content) may be accepted.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from edge import keys, tokens
from edge.hqdata import (
    ContractError,
    DataKind,
    Envelope,
    HqData,
    OrderUpdate,
    RemoteUse,
    decode_orders,
    decode_remote_uses,
    encode_orders,
    encode_remote_uses,
    open_envelope,
    seal,
)
from edge.rules import Identity
from edge.storeconfig import StoreConfigError, parse_config
from hq.events import read_batch
from sync.contract import EventBatch

NOW = 1_764_000_000.0
HQ_KEY = keys.SigningKey("HQ1", bytes(range(32)))
STORE, DEVICE = "BJ001", "BJ001-T1"
TRUSTED = [keys.TrustedKey(HQ_KEY.key_id, HQ_KEY.public_key,
                           frozenset({keys.Purpose.COUPON, keys.Purpose.PICKUP,
                                      keys.Purpose.CONFIG}))]
_SEED_CODES: set[bytes] = set()
_SEED_PAYLOADS: set[str] = set()


def _sign(token: tokens.Token) -> str:
    sig = HQ_KEY.sign(tokens.signing_bytes(token))
    return tokens.assemble(token, sig)


def codes(data: bytes) -> None:
    """A scanned code: parse it; a parsed code verifies only if it is a seed's content."""
    parsed = tokens.parse(data)
    if isinstance(parsed, tokens.FormatError):
        return
    # What a parsed code says must be writable again, byte for byte (the reader accepts
    # only what the writer makes), and only a seed's content may verify.
    assert tokens.signing_bytes(parsed.token) == parsed.signed, f"not canonical: {data!r}"
    if keys.verify(HQ_KEY.public_key, parsed.signed, parsed.signature):
        again = tokens.assemble(parsed.token, parsed.signature).encode()
        assert again in _SEED_CODES, f"a mutated code verified: {data!r}"


def envelope(data: bytes) -> None:
    """An HQ-to-box message: decode, verify, and read its body as the box would."""
    try:
        env = Envelope.decode(data)
        got = open_envelope(env, TRUSTED, NOW)
    except ContractError:
        return
    assert env.payload in _SEED_PAYLOADS, f"a forged envelope verified: {data!r}"
    try:
        if got.kind is DataKind.ORDERS:
            decode_orders(got.body)
        elif got.kind is DataKind.REMOTE_USES:
            decode_remote_uses(got.body)
        elif got.kind is DataKind.CONFIG:
            parse_config(got.body, Identity(STORE, DEVICE), got.issued_at)
    except (ContractError, StoreConfigError):
        return


def config_body(data: bytes) -> None:
    """A config body that verified (HQ's own mistakes or a compromised config key): the
    parser refuses junk with its typed error, never crashes."""
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):
        return
    try:
        parse_config(body, Identity(STORE, DEVICE), NOW)
    except StoreConfigError:
        return


def batch(data: bytes) -> None:
    """An event batch as HQ receives it: the first byte picks the content type. HQ's
    reader (msgspec), and the contract's for whatever that one does not take."""
    ctype = "application/json+zlib" if data[:1] == b"z" else "application/json"
    try:
        read_batch(data[1:], ctype)
    except ContractError:
        return


TARGETS: dict[str, Callable[[bytes], None]] = {
    "codes": codes, "envelope": envelope, "config_body": config_body, "batch": batch,
}


def seeds(name: str) -> list[bytes]:
    """Valid inputs for target ``name``, built with the fixed keys."""
    if name == "codes":
        out = [_sign(tokens.Coupon(
            HQ_KEY.key_id, "LIVE-0001", "LIVE1125", tokens.Channel.LIVESTREAM,
            tokens.Benefit(tokens.BenefitKind.FREE_ITEM, 1, "咖啡一杯"), int(NOW) - 3600,
            int(NOW) + 86400, 1, ())).encode(),
            _sign(tokens.Pickup(HQ_KEY.key_id, "ORD-88", STORE, "481516", int(NOW) - 600,
                                int(NOW) + 3600, "吐司x2", "王*")).encode()]
        _SEED_CODES.update(out)
        return out
    if name in ("envelope", "config_body"):
        cfg = {"store_name": "北京一店", "void_window_s": 900,
               "campaigns": [{"id": "LIVE1125", "state": "paused"}]}
        if name == "config_body":
            return [json.dumps(cfg, ensure_ascii=False).encode()]
        envs = [seal(HQ_KEY, HqData(DataKind.CONFIG, STORE, 3, NOW, cfg)),
                seal(HQ_KEY, HqData(DataKind.ORDERS, STORE, 1, NOW, encode_orders(
                    [OrderUpdate("O-1", "481516", int(NOW), int(NOW) + 3600)]))),
                seal(HQ_KEY, HqData(DataKind.REMOTE_USES, STORE, 1, NOW, encode_remote_uses(
                    [RemoteUse("C-1", "SH002", 1, NOW)])))]
        _SEED_PAYLOADS.update(e.payload for e in envs)
        return [e.encode() for e in envs]
    if name == "batch":
        ev = {"id": "e1", "seq": 1, "type": "decision", "at": NOW, "clock_trusted": True,
              "body": {"accepted": True, "code_id": "C:LIVE-0001"}}
        plain, _ = EventBatch(STORE, DEVICE, [ev]).encode()
        packed, ztype = EventBatch(STORE, DEVICE, [ev] * 40).encode()
        return [b"j" + plain, (b"z" if ztype.endswith("zlib") else b"j") + packed]
    raise KeyError(name)
