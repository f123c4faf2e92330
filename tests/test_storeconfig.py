"""edge.storeconfig: the config body schema and applying HQ's config, orders and remote uses."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from edge import tokens
from edge.events import EventType
from edge.keys import SigningKey
from edge.ledger import Ledger
from edge.rules import Counter
from edge.storeconfig import (
    Outcome,
    Rejection,
    apply_config,
    apply_orders,
    apply_remote_uses,
    card_texts,
    data_versions,
    sync_policy,
)
from edge.verdict import Reason
from hq.issuing.codes import sign_token
from sync.contract import DataKind
from tests.sync_fixtures import (
    DEVICE,
    IDENTITY,
    STORE,
    config_body,
    events_of,
    hq_data,
    new_ledger,
    trusted,
)

HQ1 = SigningKey.generate("HQ1")
HQ2 = SigningKey.generate("HQ2")


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return new_ledger(tmp_path / "ledger.sqlite", HQ1)


def _snapshot(ledger: Ledger) -> dict[str, list[tuple[object, ...]]]:
    return {t: ledger.conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()
            for t in ("trusted_key", "campaign", "revoked_code", "setting")}


def test_good_config_is_applied_whole_and_recorded(ledger: Ledger) -> None:
    """GIVEN a box trusting HQ1 WHEN a valid config v3 arrives THEN every table, setting,
    the version and the trusted time change together and a config_applied event is queued."""
    issued = time.time() + 5
    result = apply_config(ledger, IDENTITY, hq_data(DataKind.CONFIG, 3,
                                                    config_body(HQ1, HQ2), issued_at=issued))
    assert result.outcome is Outcome.APPLIED
    assert [k.key_id for k in ledger.trusted_keys()] == ["HQ1", "HQ2"]
    assert ledger.conn.execute("SELECT campaign_id, state FROM campaign ORDER BY 1").fetchall() \
        == [("LIVE1125", "active"), ("OLD0901", "revoked")]
    assert ledger.conn.execute("SELECT code_id FROM revoked_code").fetchall() == [("C:LEAK-1",)]
    assert ledger.setting("config_version") == 3
    assert ledger.setting("void_window_s") == 600
    assert ledger.setting("store_name") == "望京店"
    assert sync_policy(ledger).batch_size == 50 and sync_policy(ledger).linger_ms == 20
    assert card_texts(ledger).gift == "新人礼: 到店免费咖啡一杯"
    assert ledger.trusted_time() == issued
    applied = events_of(ledger, EventType.CONFIG_APPLIED)
    assert applied[-1]["version"] == 3 and applied[-1]["trusted_time_advanced"] is True


def test_config_is_atomic_when_the_write_fails_midway(ledger: Ledger) -> None:
    """GIVEN config v1 applied and a write that fails halfway through v2 (a trigger aborts
    the revoked-codes insert) WHEN v2 is applied THEN the error surfaces and v1 is intact."""
    assert apply_config(ledger, IDENTITY, hq_data(DataKind.CONFIG, 1, config_body(HQ1))).applied
    before = _snapshot(ledger)
    ledger.conn.execute("CREATE TEMP TRIGGER boom BEFORE INSERT ON revoked_code "
                        "BEGIN SELECT RAISE(ABORT, 'disk trouble'); END")
    body = config_body(HQ1, HQ2, campaigns=[{"id": "NEW", "state": "paused"}])
    with pytest.raises(sqlite3.IntegrityError, match="disk trouble"):
        apply_config(ledger, IDENTITY, hq_data(DataKind.CONFIG, 2, body))
    assert _snapshot(ledger) == before


@pytest.mark.parametrize(("version", "same_body", "words"), [
    (5, False, "replays the applied v5"),
    (4, True, "is older than the applied v5"),
])
def test_stale_config_is_refused_and_recorded(ledger: Ledger, version: int, same_body: bool,
                                              words: str) -> None:
    """GIVEN config v5 applied WHEN v5 with other content, or an older v4, arrives (a replay
    or an out-of-order delivery) THEN it is refused as stale, recorded, and nothing changes."""
    assert apply_config(ledger, IDENTITY, hq_data(DataKind.CONFIG, 5, config_body(HQ1))).applied
    before = _snapshot(ledger)
    body = config_body(HQ1) if same_body else config_body(HQ1, void_window_s=60)
    result = apply_config(ledger, IDENTITY, hq_data(DataKind.CONFIG, version, body))
    assert result.outcome is Outcome.REJECTED and result.reason is Rejection.STALE
    assert words in result.detail
    rejected = events_of(ledger, EventType.CONFIG_REJECTED)[-1]
    assert rejected["reason"] == "stale" and rejected["version"] == version
    after = _snapshot(ledger)
    assert [r for r in after["setting"] if r[0] != "config_last_rejection"] == \
        [r for r in before["setting"] if r[0] != "config_last_rejection"]


def test_exact_redelivery_of_the_applied_config_is_a_quiet_no_op(ledger: Ledger) -> None:
    """GIVEN config v2 applied WHEN the broker re-sends the same retained v2 THEN nothing is
    changed or recorded (a reconnect must not fill the outbox with refusals)."""
    data = hq_data(DataKind.CONFIG, 2, config_body(HQ1))
    assert apply_config(ledger, IDENTITY, data).applied
    backlog = ledger.backlog()
    assert apply_config(ledger, IDENTITY, data).outcome is Outcome.DUPLICATE
    assert ledger.backlog() == backlog


def test_config_for_another_store_is_refused(ledger: Ledger) -> None:
    """GIVEN a box of store BJ001 WHEN a config for SH002 arrives THEN it is refused as
    wrong_store, with both store ids in the reason."""
    result = apply_config(ledger, IDENTITY, hq_data(DataKind.CONFIG, 1, config_body(HQ1),
                                                    store="SH002"))
    assert result.reason is Rejection.WRONG_STORE
    assert "SH002" in result.detail and STORE in result.detail
    assert ledger.setting("config_version") == 0
    assert events_of(ledger, EventType.CONFIG_REJECTED)[-1]["reason"] == "wrong_store"


@pytest.mark.parametrize(("over", "words"), [
    ({"printer": {"url_base": "HTTPS://A-VERY-LONG-LANDING-HOST.EXAMPLE.COM/CARDS/V1/"}},
     "printer.url_base"),
    ({"keys": []}, "no key usable for config"),
    ({"campaigns": [{"id": "X", "state": "sleeping"}]}, "campaigns[0].state"),
    ({"colour": "red"}, "unknown field(s) ['colour']"),
    ({"void_window_s": -1}, "void_window_s"),
    ({"sync": {"batch_size": 0}}, "sync.batch_size"),
    ({"revoked": [{"code_id": "C:A"}, {"code_id": "C:A"}]}, "appears twice"),
    ({"schema": 2}, "config schema 2"),
])
def test_invalid_config_body_is_refused_with_the_field_named(ledger: Ledger,
                                                             over: dict[str, object],
                                                             words: str) -> None:
    """GIVEN a signed, fresh config WHEN its body breaks the schema THEN it is refused as
    invalid, the reason names the field, and the applied config stays."""
    result = apply_config(ledger, IDENTITY, hq_data(DataKind.CONFIG, 1,
                                                    config_body(HQ1, **over)))
    assert result.reason is Rejection.INVALID
    assert words in result.detail
    assert ledger.setting("config_version") == 0
    assert [k.key_id for k in ledger.trusted_keys()] == ["HQ1"]


def _order(order_id: str, number: str, status: str = "waiting") -> dict[str, object]:
    now = int(time.time())
    return {"order_id": order_id, "number": number, "window_start": now - 60,
            "window_end": now + 3600, "items": "吐司x2", "customer": "王*", "status": status}


def test_orders_are_applied_idempotently_and_cancel(ledger: Ledger) -> None:
    """GIVEN orders v1 (two new orders) WHEN it is re-delivered, then v2 cancels one THEN the
    re-delivery changes nothing and the cancelled order's number is refused at the till."""
    v1 = hq_data(DataKind.ORDERS, 1, {"orders": [_order("ORD-1", "0815"),
                                                 _order("ORD-2", "0816")]})
    assert apply_orders(ledger, IDENTITY, v1).changed == 2
    assert apply_orders(ledger, IDENTITY, v1).outcome is Outcome.DUPLICATE
    v2 = hq_data(DataKind.ORDERS, 2, {"orders": [_order("ORD-2", "0816", "cancelled")]})
    assert apply_orders(ledger, IDENTITY, v2).applied
    counter = Counter(ledger, IDENTITY)
    assert counter.redeem("0815").accepted
    assert counter.redeem("0816").reason is Reason.ORDER_CANCELLED
    assert data_versions(ledger)["orders"] == 2


def test_bad_orders_are_refused_and_recorded(ledger: Ledger) -> None:
    """GIVEN an orders message with a non-numeric pickup number WHEN applied THEN it is refused
    as invalid with the field named, recorded, and no order is stored."""
    bad = hq_data(DataKind.ORDERS, 1, {"orders": [_order("ORD-1", "08A5")]})
    result = apply_orders(ledger, IDENTITY, bad)
    assert result.reason is Rejection.INVALID and "orders[0].number" in result.detail
    assert ledger.conn.execute("SELECT COUNT(*) FROM pickup_order").fetchone()[0] == 0
    assert events_of(ledger, EventType.CONFIG_REJECTED)[-1]["kind"] == "orders"


def test_remote_use_makes_a_single_use_coupon_used_elsewhere(ledger: Ledger) -> None:
    """GIVEN a single-use coupon redeemed at SH002 (fanned out twice, plus a line about this
    store's own use) WHEN this store scans it THEN it is refused as used at another store."""
    now = int(time.time())
    coupon = tokens.Coupon("HQ1", "LIVE-0001", "LIVE1125", tokens.Channel.LIVESTREAM,
                           tokens.Benefit(tokens.BenefitKind.FREE_ITEM, 1, "咖啡"),
                           now - 60, now + 3600)
    code = sign_token(HQ1, coupon)
    uses = {"uses": [{"code_id": coupon.code_id, "store": "SH002", "uses": 1,
                      "last_at": now - 10},
                     {"code_id": coupon.code_id, "store": STORE, "uses": 1, "last_at": now}]}
    first = apply_remote_uses(ledger, IDENTITY, hq_data(DataKind.REMOTE_USES, 7, uses))
    assert first.applied and first.changed == 1  # own store's line skipped
    assert apply_remote_uses(ledger, IDENTITY, hq_data(DataKind.REMOTE_USES, 7, uses)
                             ).outcome is Outcome.DUPLICATE
    assert apply_remote_uses(ledger, IDENTITY, hq_data(DataKind.REMOTE_USES, 8, uses)).applied
    assert ledger.conn.execute("SELECT store_id, uses FROM remote_use").fetchall() == \
        [("SH002", 1)]
    verdict = Counter(ledger, IDENTITY).redeem(code)
    assert verdict.reason is Reason.USED_AT_OTHER_STORE
    assert verdict.facts["used_store"] == "SH002"


def test_pushed_card_texts_reach_minted_cards(tmp_path: Path) -> None:
    """GIVEN a box whose edge.toml has the default card texts WHEN HQ pushes a config with
    another URL base, headline and store name THEN the box mints cards on the new base and
    reports the new texts and name (what the printed card shows)."""
    from edge.box import Box, init_home

    init_home(tmp_path / "b", STORE, DEVICE, [trusted(HQ1)], store_name="旧名字")
    box = Box.open(tmp_path / "b")
    try:
        assert box.issue_card().url.startswith("HTTPS://Q.EDGE.CN/")
        body = config_body(HQ1, store={"name": "望京店"},
                           printer={"url_base": "HTTPS://WJ.CN/", "headline": "入群领礼",
                                    "gift": "送蛋挞一个", "footer": "再见"})
        assert apply_config(box.ledger, IDENTITY,
                            hq_data(DataKind.CONFIG, 1, body)).applied
        assert box.issue_card().url.startswith("HTTPS://WJ.CN/SEK1")
        assert box.card_texts().headline == "入群领礼" and box.card_texts().gift == "送蛋挞一个"
        assert box.store_name() == "望京店"
    finally:
        box.close()
