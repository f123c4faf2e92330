"""Builders shared by the sync tests: a box ledger with trusted HQ keys, configs, events."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.events import EventType
from edge.keys import Purpose, SigningKey, TrustedKey
from edge.ledger import Ledger, confirm_in
from edge.rules import Identity
from provisioning.localbroker import LocalBroker
from sync.contract import DataKind, EventBatch, HqData, Topics, seal

STORE, DEVICE = "BJ001", "BJ001-T1"
TOPICS = Topics("se")
IDENTITY = Identity(STORE, DEVICE)
ALL = frozenset({Purpose.CONFIG, Purpose.COUPON, Purpose.PICKUP})


def trusted(key: SigningKey, purposes: frozenset[Purpose] = ALL,
            not_after: int | None = None) -> TrustedKey:
    """The trust record a box keeps for ``key``."""
    return TrustedKey(key.key_id, key.public_key, purposes, not_after)


def new_ledger(path: Path, *keys: SigningKey) -> Ledger:
    """A fresh box ledger trusting ``keys`` for everything (the provisioned anchor)."""
    ledger = Ledger(path)
    with ledger.immediate() as conn:
        for k in keys:
            ledger.put_trusted_key(conn, trusted(k))
    return ledger


def key_entry(key: SigningKey, purposes: tuple[str, ...] = ("config", "coupon", "pickup"),
              not_after: int | None = None) -> dict[str, Any]:
    """A ``keys[]`` item of a config body."""
    return {"key_id": key.key_id, "public_key": key.public_key.hex(),
            "purposes": list(purposes), "not_after": not_after}


def config_body(*keys: SigningKey, **over: Any) -> dict[str, Any]:
    """A valid config body trusting ``keys``; keyword arguments replace top-level fields."""
    body: dict[str, Any] = {
        "schema": 1,
        "store": {"name": "望京店"},
        "printer": {"url_base": "HTTPS://Q.EDGE.CN/", "headline": "扫码入群 领新人礼",
                    "gift": "新人礼: 到店免费咖啡一杯", "footer": "谢谢惠顾"},
        "campaigns": [{"id": "LIVE1125", "state": "active", "name": "双十一直播"},
                      {"id": "OLD0901", "state": "revoked"}],
        "keys": [key_entry(k) for k in keys],
        "revoked": [{"code_id": "C:LEAK-1", "reason": "leaked on social media"}],
        "void_window_s": 600,
        "sync": {"batch_size": 50, "linger_ms": 20},
    }
    body.update(over)
    return body


def hq_data(kind: DataKind, version: int, body: dict[str, Any], store: str = STORE,
            issued_at: float | None = None) -> HqData:
    """An HQ payload."""
    return HqData(kind, store, version, time.time() if issued_at is None else issued_at, body)


def sealed(key: SigningKey, kind: DataKind, version: int, body: dict[str, Any],
           store: str = STORE, issued_at: float | None = None) -> bytes:
    """The wire bytes HQ publishes."""
    return seal(key, hq_data(kind, version, body, store, issued_at)).encode()


def append_events(ledger: Ledger, count: int, start_at: float | None = None) -> None:
    """``count`` decision events in one transaction, a millisecond apart from ``start_at``."""
    start_at = time.time() if start_at is None else start_at
    body = {"accepted": True, "reason": None, "kind": "coupon", "code_id": "C:LIVE-1",
            "campaign_id": "LIVE1125", "till": "T1", "source": "scanner",
            "facts": {"benefit": {"kind": "free_item", "value": 1, "item": "咖啡一杯"}}}
    with ledger.immediate() as conn:
        for i in range(count):
            ledger.append_event(conn, EventType.DECISION, start_at + i / 1000, True, body)


def confirm(ledger: Ledger, seq: int) -> None:
    """HQ's confirmation of every event up to ``seq`` (what ``edge.delivery`` applies)."""
    with ledger.immediate() as conn:
        version = conn.execute("SELECT version FROM outbox_confirmed").fetchone()[0] + 1
        confirm_in(conn, seq, version, time.time())


def events_of(ledger: Ledger, type_: EventType) -> list[dict[str, Any]]:
    """Bodies of the outbox events of one type, oldest first."""
    import json
    rows = ledger.conn.execute("SELECT body FROM outbox WHERE type=? ORDER BY seq",
                               (type_.value,)).fetchall()
    return [json.loads(r[0]) for r in rows]


class HqListener:
    """HQ's side in a test: a raw paho MQTT 5 client with a persistent session."""

    def __init__(self, broker: LocalBroker, client_id: str = "hq-test") -> None:
        self.broker = broker
        self.lock = threading.Lock()
        self.messages: list[tuple[str, bytes, str | None, bool]] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=MQTTProtocolVersion.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self.connected = threading.Event()

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        client.subscribe([(TOPICS.all_events(), 1), (TOPICS.all_status(), 1),
                          (TOPICS.all_reported(), 1)])
        self.connected.set()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        ctype = getattr(msg.properties, "ContentType", None)
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), ctype, bool(msg.retain)))

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect(self.broker.host, self.broker.port, 30, clean_start=False,
                            properties=props)
        self.client.loop_start()
        assert self.connected.wait(10)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

    def seqs(self) -> list[int]:
        """Every event seq received, in arrival order, duplicates included."""
        out = []
        with self.lock:
            msgs = list(self.messages)
        for topic, payload, ctype, _r in msgs:
            if topic.endswith("/events"):
                out.extend(e["seq"] for e in EventBatch.decode(payload, ctype).events)
        return out

    def last(self, leaf: str) -> bytes | None:
        with self.lock:
            found = [p for t, p, _c, _r in self.messages if t.endswith("/" + leaf)]
        return found[-1] if found else None
