"""``edge-hq push-config`` and ``push-orders`` against a real mosquitto."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from cli.hq import main
from edge.keys import parse_trust
from provisioning.localbroker import Broker, free_port
from sync.contract import DataKind, Envelope, OrderStatus, decode_orders, open_envelope
from tests.hq_support import TOPICS, Hq, Inbox, hq_fixture, url, wait_until  # noqa: F401

pytestmark = pytest.mark.network


def _hq(tmp_path: Path, broker: Broker) -> list[str]:
    home = tmp_path / "hqhome"
    assert main(["--home", str(home), "keygen", "--key-id", "cfg1", "--purposes", "config"]) == 0
    return ["--home", str(home)]


def _common(hq: Hq) -> list[str]:
    return ["--db", hq.db_url, "--broker", url(hq.broker)]


def _trust(home: list[str], capsys: pytest.CaptureFixture[str]) -> list:
    capsys.readouterr()
    assert main([*home, "trust"]) == 0
    return parse_trust(json.loads(capsys.readouterr().out))


def test_push_config_publishes_a_retained_signed_versioned_envelope(
        tmp_path: Path, hq: Hq, capsys: pytest.CaptureFixture[str]) -> None:
    """GIVEN an HQ key and a TOML config body for store S1
    WHEN push-config runs twice, and a box subscribes only afterwards
    THEN the box gets the retained envelope of version 2, which verifies with HQ's public
    key and carries the body; an explicit stale --version is refused with exit 2."""
    home = _hq(tmp_path, hq.broker)
    trust = _trust(home, capsys)
    cfg = tmp_path / "s1.toml"
    cfg.write_text('void_window_s = 600\n[store]\nname = "城东店"\n', encoding="utf-8")
    for expected in (1, 2):
        assert main([*home, "push-config", str(cfg), "--store", "S1",
                     *_common(hq)]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["version"] == expected and out["retained"] and out["topic"] == \
            TOPICS.config("S1")
    inbox = Inbox(hq.broker, TOPICS.config("S1"))
    wait_until(lambda: len(inbox.messages) == 1, what="retained config")
    msg = inbox.messages[0]
    assert msg.retain
    data = open_envelope(Envelope.decode(msg.payload), trust, time.time())
    assert (data.kind, data.store, data.version) == (DataKind.CONFIG, "S1", 2)
    assert data.body == {"void_window_s": 600, "store": {"name": "城东店"}}
    assert abs(data.issued_at - time.time()) < 60
    assert main([*home, "push-config", str(cfg), "--store", "S1", "--version", "2",
                 *_common(hq)]) == 2
    assert "not above the last one given (2)" in capsys.readouterr().err
    assert main([*home, "push-config", str(cfg), "--store", "S1", "--version", "10",
                 *_common(hq)]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == 10
    inbox.close()


def test_tampered_envelope_does_not_verify(
        tmp_path: Path, hq: Hq, capsys: pytest.CaptureFixture[str]) -> None:
    """GIVEN a config pushed by HQ
    WHEN one byte of its payload is changed in transit
    THEN open_envelope refuses it."""
    from sync.contract import ContractError

    home = _hq(tmp_path, hq.broker)
    trust = _trust(home, capsys)
    cfg = tmp_path / "c.json"
    cfg.write_text('{"void_window_s": 300}')
    assert main([*home, "push-config", str(cfg), "--store", "S1",
                 *_common(hq)]) == 0
    inbox = Inbox(hq.broker, TOPICS.config("S1"))
    wait_until(lambda: len(inbox.messages) == 1)
    env = Envelope.decode(inbox.messages[0].payload)
    forged = Envelope(env.key_id, env.payload.replace("300", "900"), env.sig)
    with pytest.raises(ContractError, match="does not verify"):
        open_envelope(forged, trust, time.time())
    inbox.close()


def test_push_orders_publishes_signed_orders_to_the_store_data_topic(
        tmp_path: Path, hq: Hq, capsys: pytest.CaptureFixture[str]) -> None:
    """GIVEN a box listening on S1's data topic
    WHEN push-orders sends a new and a cancelled order (windows given as offsets)
    THEN the box gets one signed orders envelope, version 1, with both orders decoded."""
    home = _hq(tmp_path, hq.broker)
    trust = _trust(home, capsys)
    inbox = Inbox(hq.broker, TOPICS.data("S1"))
    orders = tmp_path / "orders.json"
    orders.write_text(json.dumps({"orders": [
        {"order_id": "O1", "number": "1234", "window_start": "now", "window_end": "+2h",
         "items": "2x bread", "customer": "Li"},
        {"order_id": "O2", "number": "5678", "window_start": 1, "window_end": 2,
         "status": "cancelled"}]}))
    assert main([*home, "push-orders", str(orders), "--store", "S1",
                 *_common(hq)]) == 0
    assert json.loads(capsys.readouterr().out)["orders"] == 2
    wait_until(lambda: len(inbox.messages) == 1, what="orders envelope")
    assert not inbox.messages[0].retain
    data = open_envelope(Envelope.decode(inbox.messages[0].payload), trust, time.time())
    assert (data.kind, data.version) == (DataKind.ORDERS, 1)
    got = decode_orders(data.body)
    assert [(o.order_id, o.status) for o in got] == [("O1", OrderStatus.WAITING),
                                                     ("O2", OrderStatus.CANCELLED)]
    assert got[0].window_end - got[0].window_start == 7200
    inbox.close()


@pytest.mark.parametrize(("content", "name", "message"), [
    ("{not json", "c.json", "not valid JSON"),
    ("[1, 2]", "c.json", "top level must be an object"),
    ("a = ", "c.toml", "not valid TOML"),
])
def test_bad_config_file_is_refused_with_a_clear_message(
        tmp_path: Path, hq: Hq, capsys: pytest.CaptureFixture[str],
        content: str, name: str, message: str) -> None:
    """GIVEN a config file that is not an object in JSON or TOML
    WHEN push-config runs
    THEN it exits 2 naming the problem, before any version is taken."""
    home = _hq(tmp_path, hq.broker)
    bad = tmp_path / name
    bad.write_text(content)
    assert main([*home, "push-config", str(bad), "--store", "S1",
                 *_common(hq)]) == 2
    assert message in capsys.readouterr().err
    if hq.db_url.startswith("sqlite"):
        assert not (tmp_path / "hq.sqlite").exists()
    else:
        assert hq.count("SELECT COUNT(*) FROM hq_version") == 0


def test_bad_orders_and_unreachable_broker_are_refused(
        tmp_path: Path, hq: Hq, capsys: pytest.CaptureFixture[str]) -> None:
    """GIVEN an orders file with an unknown status, and a broker port nothing listens on
    WHEN push-orders / push-config run
    THEN each exits 2 with a message naming the order or the broker."""
    home = _hq(tmp_path, hq.broker)
    orders = tmp_path / "orders.json"
    orders.write_text(json.dumps({"orders": [{"order_id": "O9", "number": "123", "window_start":
                                              1, "window_end": 2, "status": "lost"}]}))
    assert main([*home, "push-orders", str(orders), "--store", "S1",
                 *_common(hq)]) == 2
    assert "bad order 'O9'" in capsys.readouterr().err
    cfg = tmp_path / "c.json"
    cfg.write_text("{}")
    assert main([*home, "push-config", str(cfg), "--store", "S1", "--db",
                 f"sqlite:///{tmp_path / 'x.sqlite'}", "--broker",
                 f"mqtt://127.0.0.1:{free_port()}"]) == 2
    assert "cannot reach broker" in capsys.readouterr().err
