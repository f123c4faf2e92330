"""Shared pieces for the HQ tests: a raw paho "box", event factories, an HQ in-process."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.keys import Purpose, SigningKey, TrustedKey
from hq.broker import BrokerOptions
from hq.db import Database
from hq.ingest.delivery import DeliveryTiming
from hq.ingest.eventstore import EventStore
from hq.ingest.worker import IngestWorker
from hq.issuing.registry import DeviceRegistry
from provisioning.localbroker import LocalBroker, local_broker
from sync.contract import SIG_PROPERTY, EventBatch, Topics, sign_device_message

TOPICS = Topics()


def wait_until(pred: Callable[[], bool], timeout_s: float = 15.0, what: str = "") -> None:
    """Poll ``pred`` until true; fail the test with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what or pred}")


def event(store: str, device: str, seq: int, type_: str = "decision",
          body: dict[str, Any] | None = None, at: float | None = None) -> dict[str, Any]:
    """One event in wire form, as ``edge.events.Event.to_wire`` makes it."""
    return {"v": 1, "id": uuid.uuid4().hex, "seq": seq, "store": store, "device": device,
            "type": type_, "at": time.time() if at is None else at, "clock_trusted": True,
            "body": body if body is not None else {"accepted": False, "reason": "bad_format",
                                                   "kind": None, "code_id": None,
                                                   "campaign_id": None, "facts": {}}}


def url(broker: LocalBroker) -> str:
    """The broker as an ``mqtt://`` URL for the CLI."""
    return f"mqtt://{broker.host}:{broker.port}"


def client(broker: LocalBroker, client_id: str, clean: bool = True) -> mqtt.Client:
    """A connected paho MQTT 5 client with its network thread running."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                    protocol=MQTTProtocolVersion.MQTTv5)
    connected = threading.Event()
    c.on_connect = lambda *_a: connected.set()
    props = None
    if not clean:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
    c.connect(broker.host, broker.port, clean_start=clean, properties=props)
    c.loop_start()
    assert connected.wait(10), "client did not connect"
    return c


class RawBox:
    """Publishes event batches exactly as a box would, with QoS 1, waiting for PUBACK.

    With a ``key`` every message is signed as a box signs it (``se-sig``); without one,
    nothing is (a stranger on the broker).
    """

    def __init__(self, broker: LocalBroker, store: str, device: str,
                 key: SigningKey | None = None) -> None:
        self.store = store
        self.device = device
        self.key = key
        self.client = client(broker, f"box-{store}-{device}-{uuid.uuid4().hex[:6]}")

    def send(self, events: list[dict[str, Any]]) -> None:
        payload, ctype = EventBatch(self.store, self.device, events).encode()
        self.raw(TOPICS.events(self.store, self.device), payload, ctype)

    def raw(self, topic: str, payload: bytes, content_type: str | None = None,
            retain: bool = False, key: SigningKey | None = None) -> None:
        """Publish one message, signed with ``key`` (default: this box's, if any)."""
        props = Properties(PacketTypes.PUBLISH)
        if content_type:
            props.ContentType = content_type
        key = key or self.key
        if key is not None:
            props.UserProperty = (SIG_PROPERTY,
                                  sign_device_message(key, topic, content_type, payload))
        info = self.client.publish(topic, payload, qos=1, retain=retain, properties=props)
        info.wait_for_publish(10)
        assert info.is_published()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Inbox:
    """A subscriber that keeps every message it gets (a box listening on its data topic)."""

    def __init__(self, broker: LocalBroker, topic: str, client_id: str | None = None) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self._lock = threading.Lock()
        self.client = client(broker, client_id or f"inbox-{uuid.uuid4().hex[:6]}")
        subscribed = threading.Event()
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_a: subscribed.set()
        self.client.subscribe(topic, qos=1)
        assert subscribed.wait(10)

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(msg)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Hq:
    """HQ in this process: a database, a signer, and ingest workers started on demand."""

    broker: LocalBroker
    key: SigningKey
    db_url: str
    workers: list[IngestWorker] = field(default_factory=list)
    dbs: list[Database] = field(default_factory=list)
    devices: DeviceRegistry = field(default_factory=DeviceRegistry)
    boxes: list[RawBox] = field(default_factory=list)

    def register(self, store: str, device: str) -> SigningKey:
        """A device key for ``device``, registered for ``store`` (as register-device does)."""
        key = SigningKey.generate(device)
        self.devices.add(device, store, key.public_key)
        return key

    def box(self, store: str, device: str) -> RawBox:
        """A registered box that signs what it publishes."""
        b = RawBox(self.broker, store, device, self.register(store, device))
        self.boxes.append(b)
        return b

    @property
    def opts(self) -> BrokerOptions:
        return BrokerOptions(host=self.broker.host, port=self.broker.port)

    @property
    def trusted(self) -> list[TrustedKey]:
        return [TrustedKey(self.key.key_id, self.key.public_key, frozenset({Purpose.CONFIG}))]

    def db(self) -> Database:
        db = Database(self.db_url)
        self.dbs.append(db)
        return db

    def worker(self, client_id: str = "hq-ingest-1", group: str = "g",
               fanout: bool = True, wait: bool = True,
               timing: DeliveryTiming | None = None) -> IngestWorker:
        store = EventStore(self.db(), TOPICS, self.devices, timing=timing)
        w = IngestWorker(store, self.opts, client_id, group, session_expiry_s=600,
                         signer=self.key if fanout else None)
        w.start()
        self.workers.append(w)
        assert not wait or w.wait_subscribed(), "ingest did not subscribe"
        return w

    def count(self, sql: str = "SELECT COUNT(*) FROM hq_event", params: tuple[Any, ...] = ()
              ) -> int:
        return int(self.dbs[0].query(sql, params)[0][0]) if self.dbs else int(
            self.db().query(sql, params)[0][0])

    def close(self) -> None:
        for w in self.workers:
            w.stop()
        for b in self.boxes:
            b.close()
        for d in self.dbs:
            d.close()


def register(hq: Hq, home: Path) -> None:
    """Pair the box at ``home`` with ``hq`` both ways: HQ registers its device key (as
    ``edge-hq register-device`` does: HQ believes only what a registered box signed), and
    the box trusts HQ's key for data (the confirmations and fan-out ingest signs)."""
    from edge.box import Box

    box = Box.open(home)
    try:
        hq.devices.add(box.identity.device_id, box.identity.store_id, box.device_key.public_key)
        with box.ledger.immediate() as conn:
            box.ledger.put_trusted_key(conn, TrustedKey(hq.key.key_id, hq.key.public_key,
                                                        frozenset({Purpose.DATA})))
    finally:
        box.close()


@pytest.fixture(name="hq")
def hq_fixture(tmp_path: Path, hq_db_url: str, broker_kind: str) -> Iterator[Hq]:
    """A broker and an HQ database (workers are started by the test).

    The database is ``hq_db_url``'s and the broker ``broker_kind``'s: each test runs on
    both databases over mosquitto, and on SQLite over each other broker (conftest).
    """
    broker = local_broker(broker_kind, tmp_path / "broker")
    broker.start()
    h = Hq(broker, SigningKey.generate("hqcfg"), hq_db_url)
    try:
        yield h
    finally:
        h.close()
        broker.stop()


class StoreBox:
    """A box's domain core on a temp ledger (real ``edge.rules.Counter``), with a minimal
    uplink (outbox -> event batch) and a minimal ``remote_uses`` applier, standing in for
    ``sync/service.py`` where the HQ side is what is under test."""

    def __init__(self, folder: Path, store: str, device: str, trust: list[TrustedKey]) -> None:
        from edge.ledger import Ledger
        from edge.rules import Counter, Identity

        folder.mkdir(parents=True, exist_ok=True)
        self.store = store
        self.device = device
        self.trust = trust
        self.ledger = Ledger(folder / f"{store}-{device}.sqlite")
        with self.ledger.immediate() as conn:
            for k in trust:
                self.ledger.put_trusted_key(conn, k)
        self.counter = Counter(self.ledger, Identity(store, device))

    def drain(self, box: RawBox) -> int:
        """Publish every pending outbox event in one batch; mark them sent after PUBACK."""
        events = self.ledger.pending_events(limit=1000)
        if events:
            box.send([e.to_wire(self.store, self.device) for e in events])
            self.ledger.mark_sent([(e.seq, e.seq) for e in events])
        return len(events)

    def apply_remote_uses(self, payload: bytes) -> int:
        """Verify a ``remote_uses`` envelope and upsert its entries; returns how many."""
        from sync.contract import DataKind, Envelope, decode_remote_uses, open_envelope

        data = open_envelope(Envelope.decode(payload), self.trust, time.time())
        assert data.kind is DataKind.REMOTE_USES and data.store == self.store
        uses = decode_remote_uses(data.body)
        with self.ledger.immediate() as conn:
            for u in uses:
                conn.execute("INSERT INTO remote_use(code_id, store_id, uses, last_at)"
                             " VALUES (?,?,?,?) ON CONFLICT(code_id, store_id) DO UPDATE SET"
                             " uses=excluded.uses, last_at=excluded.last_at",
                             (u.code_id, u.store, u.uses, u.last_at))
        return len(uses)

    def close(self) -> None:
        self.ledger.close()


def coupon_code(key: SigningKey, coupon_id: str, campaign: str = "live1",
                stores: tuple[str, ...] = (), max_uses: int = 1,
                record: Database | None = None) -> str:
    """A signed coupon code valid now; recorded as issued in ``record`` (HQ's database)."""
    from edge import tokens
    from hq.issuing.codes import sign_token
    from hq.issuing.issued import record_issued

    now = int(time.time())
    coupon = tokens.Coupon(
        key.key_id, coupon_id, campaign, tokens.Channel.LIVESTREAM,
        tokens.Benefit(tokens.BenefitKind.FREE_ITEM, 1, "coffee"), now - 60, now + 3600,
        max_uses, stores)
    if record is not None:
        with record.tx() as cur:
            record_issued(cur, coupon, now)
    return sign_token(key, coupon)
