"""sync.inbound: what HQ publishes, verified against the box's trust anchor before applying."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from edge.events import EventType
from edge.keys import SigningKey
from edge.ledger import Ledger
from edge.storeconfig import Outcome, Rejection
from sync.contract import DataKind, Topics
from sync.inbound import Inbound
from tests.sync_fixtures import IDENTITY, config_body, events_of, key_entry, new_ledger, sealed

HQ1 = SigningKey.generate("HQ1")
HQ2 = SigningKey.generate("HQ2")
ROGUE = SigningKey.generate("HQ1")  # same id as the real key, different secret


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return new_ledger(tmp_path / "ledger.sqlite", HQ1)


@pytest.fixture
def inbound(ledger: Ledger) -> Inbound:
    return Inbound(ledger, IDENTITY, Topics("se"))


def _tamper(raw: bytes) -> bytes:
    env = json.loads(raw)
    env["payload"] = env["payload"].replace('"void_window_s":600', '"void_window_s":86400')
    assert "86400" in env["payload"]
    return json.dumps(env).encode()


@pytest.mark.parametrize(("make", "reason"), [
    (lambda: _tamper(sealed(HQ1, DataKind.CONFIG, 1, config_body(HQ1))), Rejection.BAD_SIGNATURE),
    (lambda: sealed(ROGUE, DataKind.CONFIG, 1, config_body(HQ1)), Rejection.BAD_SIGNATURE),
    (lambda: sealed(HQ2, DataKind.CONFIG, 1, config_body(HQ2)), Rejection.UNTRUSTED_KEY),
    (lambda: json.dumps({"key_id": "HQ1", "payload": json.dumps(
        {"kind": "config", "store": "BJ001", "version": 1, "issued_at": 1.0,
         "body": config_body(HQ1)})}).encode(), Rejection.UNSIGNED),
    (lambda: b"\xff\xfe not json", Rejection.MALFORMED),
    (lambda: json.dumps({"key_id": "HQ1", "payload": "{}",
                         "sig": base64.b64encode(b"x" * 64).decode()}).encode(),
     Rejection.BAD_SIGNATURE),
    (lambda: sealed(HQ1, DataKind.ORDERS, 1, {"orders": []}), Rejection.WRONG_KIND),
])
def test_bad_config_messages_are_refused_with_their_reason(ledger: Ledger, inbound: Inbound,
                                                           make, reason: Rejection) -> None:  # type: ignore[no-untyped-def]
    """GIVEN a box trusting HQ1 WHEN its config topic carries a tampered, forged, untrusted,
    unsigned, garbled or wrong-kind message THEN it is refused with that reason, recorded as
    config_rejected, and the box keeps its (empty) config."""
    result = inbound.handle(inbound.config_topic, make())
    assert result is not None and result.outcome is Outcome.REJECTED
    assert result.reason is reason
    recorded = events_of(ledger, EventType.CONFIG_REJECTED)
    assert recorded[-1]["reason"] == reason.value
    assert ledger.setting("config_version") == 0
    assert ledger.setting("void_window_s") == 15 * 60


def test_key_rotation_by_config(ledger: Ledger, inbound: Inbound) -> None:
    """GIVEN a box whose trust anchor is HQ1 WHEN config v1 (signed by HQ1) trusts only HQ2
    THEN v2 signed by HQ1 is refused as untrusted and v2 signed by HQ2 is applied."""
    v1 = sealed(HQ1, DataKind.CONFIG, 1, config_body(keys=[key_entry(HQ2)]))
    assert inbound.handle(inbound.config_topic, v1).outcome is Outcome.APPLIED  # type: ignore[union-attr]
    assert [k.key_id for k in ledger.trusted_keys()] == ["HQ2"]
    old = inbound.handle(inbound.config_topic,
                         sealed(HQ1, DataKind.CONFIG, 2, config_body(HQ1)))
    assert old is not None and old.reason is Rejection.UNTRUSTED_KEY
    new = inbound.handle(inbound.config_topic,
                         sealed(HQ2, DataKind.CONFIG, 2, config_body(HQ2, void_window_s=300)))
    assert new is not None and new.applied
    assert ledger.setting("void_window_s") == 300


def test_expired_config_key_is_untrusted(ledger: Ledger, inbound: Inbound) -> None:
    """GIVEN config v1 that trusts HQ2 for config only until a time long past WHEN v2 signed
    by HQ2 arrives THEN it is refused as untrusted (expired), while HQ1 still works."""
    v1 = sealed(HQ1, DataKind.CONFIG, 1,
                config_body(keys=[key_entry(HQ1), key_entry(HQ2, ("config",), 1_000_000)]))
    assert inbound.handle(inbound.config_topic, v1).applied  # type: ignore[union-attr]
    late = inbound.handle(inbound.config_topic, sealed(HQ2, DataKind.CONFIG, 2, config_body(HQ1)))
    assert late is not None and late.reason is Rejection.UNTRUSTED_KEY
    assert "expired" in late.detail


def test_data_topic_applies_orders_and_refuses_config(ledger: Ledger, inbound: Inbound) -> None:
    """GIVEN the data topic WHEN orders arrive, then a config THEN the orders are applied and
    the config is refused as the wrong kind for that topic."""
    orders = {"orders": [{"order_id": "ORD-9", "number": "0901", "window_start": 0,
                          "window_end": 2**31, "items": "牛角包", "customer": "李*"}]}
    ok = inbound.handle(inbound.data_topic, sealed(HQ1, DataKind.ORDERS, 1, orders))
    assert ok is not None and ok.applied
    bad = inbound.handle(inbound.data_topic, sealed(HQ1, DataKind.CONFIG, 1, config_body(HQ1)))
    assert bad is not None and bad.reason is Rejection.WRONG_KIND
    assert ledger.conn.execute("SELECT number FROM pickup_order").fetchall() == [("0901",)]
