"""Broker ACLs (issue 11, attack 8) against a real mosquitto with a password file and an acl_file.

Two stores' boxes and HQ's two users; the device listener binds client ids to usernames,
HQ's workers use a listener of their own.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from cli import hq as hq_cli
from edge.keys import SigningKey
from hq.broker import BrokerOptions, OneShot
from hq.db import Database
from hq.ingest.eventstore import EventStore
from hq.ingest.worker import IngestWorker
from hq.issuing.registry import DeviceRegistry
from provisioning import brokerauth
from provisioning.brokerauth import HQ_INGEST_USER, HQ_PUBLISH_USER, DeviceAccount
from provisioning.localbroker import Broker, free_port
from sync.contract import DataKind, Topics
from sync.settings import MqttSettings
from tests.sync_fixtures import DEVICE, STORE, append_events, config_body, sealed
from tests.test_sync_service import HQ1, Box, until

pytestmark = pytest.mark.network

T = Topics("se")
BJ = DeviceAccount("BJ001", "BJ001-T1", "bj-secret-1")
SH = DeviceAccount("SH002", "SH002-T1", "sh-secret-2")
HQ_PASSWORDS = {HQ_INGEST_USER: "ingest-secret", HQ_PUBLISH_USER: "publish-secret"}


@dataclass
class Ports:
    broker: Broker
    hq_port: int


@pytest.fixture
def acl_broker(tmp_path: Path) -> Iterator[Ports]:
    """mosquitto with the generated password file and ACL; a device and an HQ listener."""
    pw, acl = brokerauth.write_files(tmp_path / "auth", [BJ, SH], HQ_PASSWORDS)
    hq_port = free_port()
    b = Broker(tmp_path / "broker", anonymous=False,
               listener_options=brokerauth.mosquitto_lines(pw, acl, hq_port))
    b.start()
    yield Ports(b, hq_port)
    b.stop()


@dataclass
class Client:
    """A raw MQTT 5 client that records what it receives and how the broker answered."""

    c: mqtt.Client
    got: list[tuple[str, bytes]] = field(default_factory=list)
    suback: list[ReasonCode] = field(default_factory=list)
    disconnected: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def subscribe(self, topic: str) -> list[ReasonCode]:
        done = threading.Event()

        def on_subscribe(_c: object, _u: object, _m: int, rcs: list[ReasonCode],
                         _p: object) -> None:
            self.suback = rcs
            done.set()
        self.c.on_subscribe = on_subscribe
        self.c.subscribe(topic, qos=1)
        assert done.wait(10), "no SUBACK"
        return self.suback

    def publish(self, topic: str, payload: bytes, retain: bool = False,
                properties: Properties | None = None) -> ReasonCode:
        """Publish at QoS 1; the PUBACK's reason code."""
        result: list[ReasonCode] = []
        done = threading.Event()

        def on_publish(_c: object, _u: object, _mid: int, rc: ReasonCode, _p: object) -> None:
            result.append(rc)
            done.set()
        self.c.on_publish = on_publish
        self.c.publish(topic, payload, qos=1, retain=retain, properties=properties)
        assert done.wait(10), "no PUBACK"
        return result[0]

    def received(self) -> list[tuple[str, bytes]]:
        with self.lock:
            return list(self.got)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def connect(port: int, username: str | None, password: str | None,
            client_id: str | None = None, session: bool = False,
            tls_ca: Path | None = None) -> tuple[Client, ReasonCode]:
    """Connect and wait for CONNACK; the client and the broker's reason code."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or uuid.uuid4().hex[:10],
                    protocol=MQTTProtocolVersion.MQTTv5)
    if username is not None:
        c.username_pw_set(username, password)
    if tls_ca is not None:
        c.tls_set(ca_certs=str(tls_ca))
    cl = Client(c)
    answered = threading.Event()
    codes: list[ReasonCode] = []

    def on_connect(_c: object, _u: object, _f: object, rc: ReasonCode, _p: object) -> None:
        codes.append(rc)
        answered.set()

    def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        with cl.lock:
            cl.got.append((msg.topic, bytes(msg.payload)))
    c.on_connect = on_connect
    c.on_message = on_message
    c.on_disconnect = lambda *_a: cl.disconnected.set()
    c.reconnect_delay_set(30, 60)  # a refused client must not come straight back
    props = None
    if session:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
    c.connect("127.0.0.1", port, clean_start=not session, properties=props)
    c.loop_start()
    assert answered.wait(10), "no CONNACK"
    return cl, codes[0]


def wait_for(pred: object, what: str, timeout: float = 10.0) -> None:
    assert callable(pred)
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_a_device_cannot_touch_another_stores_topics(acl_broker: Ports) -> None:
    """GIVEN boxes of BJ001 and SH002, HQ's users each with its own password, and both stores'
    retained configs WHEN BJ001's box publishes under SH002's device topics, as another device
    of its store, and to its store's config and SH002's data, and subscribes to SH002's config,
    every store's data and '#' THEN each publish is refused (PUBACK: not authorised) and never
    reaches HQ, and the subscriptions deliver only BJ001's own config and data (mosquitto
    grants a subscription and checks read access on every message), while the box's own
    events reach HQ."""
    port = acl_broker.broker.port
    hq, rc = connect(acl_broker.hq_port, HQ_INGEST_USER, HQ_PASSWORDS[HQ_INGEST_USER])
    assert not rc.is_failure
    assert not any(r.is_failure for r in hq.subscribe(f"$share/g/{T.all_events()}"))
    publisher, rc = connect(acl_broker.hq_port, HQ_PUBLISH_USER, HQ_PASSWORDS[HQ_PUBLISH_USER])
    assert not rc.is_failure
    bj, rc = connect(port, BJ.device, BJ.password)
    assert not rc.is_failure

    assert bj.publish(T.events(SH.store, SH.device), b"forged").is_failure
    assert bj.publish(T.events(BJ.store, SH.device), b"forged").is_failure
    assert bj.publish(T.config(BJ.store), b"junk", retain=True).is_failure
    assert bj.publish(T.data(SH.store), b"junk").is_failure
    assert not publisher.publish(T.config(SH.store), b"SH002 config", retain=True).is_failure
    assert not publisher.publish(T.config(BJ.store), b"BJ001 config", retain=True).is_failure
    bj.subscribe(T.config(SH.store))
    bj.subscribe(T.config(BJ.store))
    bj.subscribe("se/v1/s/+/data")
    bj.subscribe("#")

    assert not publisher.publish(T.data(SH.store), b"for SH002").is_failure
    assert not publisher.publish(T.data(BJ.store), b"for BJ001").is_failure
    assert not bj.publish(T.events(BJ.store, BJ.device), b"genuine").is_failure
    wait_for(lambda: (T.data(BJ.store), b"for BJ001") in bj.received(), "BJ001's data")
    wait_for(lambda: hq.received(), "HQ gets BJ001's events")
    assert hq.received() == [(T.events(BJ.store, BJ.device), b"genuine")]
    assert (T.config(BJ.store), b"BJ001 config") in bj.received()
    assert all(t.startswith("se/v1/s/BJ001/") for t, _ in bj.received())
    for c in (hq, publisher, bj):
        c.close()


def test_a_stolen_client_id_does_not_take_the_boxs_session(acl_broker: Ports) -> None:
    """GIVEN BJ001's box connected with its persistent session (client id se-BJ001-BJ001-T1)
    WHEN a client uses that client id with no credentials, with a wrong password, and with
    SH002's valid credentials THEN the first two are refused, the third is bound to its own
    username (the box is not disconnected) and HQ's next data for BJ001 reaches only the box."""
    port = acl_broker.broker.port
    client_id = f"se-{BJ.store}-{BJ.device}"
    box, rc = connect(port, BJ.device, BJ.password, client_id, session=True)
    assert not rc.is_failure
    box.subscribe(T.data(BJ.store))

    anonymous, rc = connect(port, None, None, client_id)
    assert rc.is_failure
    anonymous.close()
    guessed, rc = connect(port, BJ.device, "guess", client_id)
    assert rc.is_failure
    guessed.close()
    thief, rc = connect(port, SH.device, SH.password, client_id, session=True)
    assert not rc.is_failure
    thief.subscribe(T.data(BJ.store))

    publisher, _ = connect(acl_broker.hq_port, HQ_PUBLISH_USER, HQ_PASSWORDS[HQ_PUBLISH_USER])
    assert not publisher.publish(T.data(BJ.store), b"remote uses for BJ001").is_failure
    wait_for(lambda: box.received(), "the box gets its data")
    assert box.received() == [(T.data(BJ.store), b"remote uses for BJ001")]
    assert not box.disconnected.is_set()
    assert thief.received() == []
    for c in (box, thief, publisher):
        c.close()


def test_password_file_holds_no_password_and_refuses_bad_names(tmp_path: Path) -> None:
    """GIVEN the generated files WHEN read back THEN no password appears in them, both are
    mode 0600, and a name that would widen a rule ('+', '#', '/') is refused."""
    pw, acl = brokerauth.write_files(tmp_path, [BJ], HQ_PASSWORDS)
    text = pw.read_text() + acl.read_text()
    assert BJ.password not in text and "ingest-secret" not in text
    assert pw.stat().st_mode & 0o777 == 0o600 and acl.stat().st_mode & 0o777 == 0o600
    for bad in ("BJ+1", "BJ#", "BJ/1", "$SYS"):
        with pytest.raises(ValueError, match="cannot be"):
            brokerauth.acl_text([DeviceAccount(bad, "D1", "x")])


async def test_the_real_box_and_hq_workers_run_under_their_own_credentials(
        acl_broker: Ports, tmp_path: Path) -> None:
    """GIVEN the ACL broker, BJ001's sync service as user BJ001-T1 and an ingest worker as
    hq-ingest on HQ's listener WHEN HQ publishes a config as hq-publish and the box records
    events THEN the box applies the config and HQ stores every event: the ACL admits exactly
    what the contract needs."""
    assert (BJ.store, BJ.device) == (STORE, DEVICE)
    key = HQ1  # the key the test box's ledger trusts
    db = Database(f"sqlite:///{tmp_path / 'hq.sqlite'}")
    hq_opts = BrokerOptions(port=acl_broker.hq_port, username=HQ_INGEST_USER,
                            password=HQ_PASSWORDS[HQ_INGEST_USER])
    device_key = SigningKey.generate(BJ.device)
    devices = DeviceRegistry()  # HQ believes only what a registered box signed
    devices.add(BJ.device, BJ.store, device_key.public_key)
    worker = IngestWorker(EventStore(db, T, devices), hq_opts, "hq-ingest-1", "g", 600)
    worker.start()
    box = Box(tmp_path / "box.sqlite", MqttSettings(
        port=acl_broker.broker.port, username=BJ.device, password=BJ.password, keepalive_s=2,
        backoff_min_s=0.05, backoff_max_s=0.5, connect_timeout_s=2.0), device_key)
    try:
        assert worker.wait_subscribed()
        pub = BrokerOptions(port=acl_broker.hq_port, username=HQ_PUBLISH_USER,
                            password=HQ_PASSWORDS[HQ_PUBLISH_USER])
        with OneShot(pub, "hq-publish-1") as one:
            one.publish(T.config(STORE), sealed(key, DataKind.CONFIG, 2, config_body(key)),
                        retain=True)
        box.start()
        append_events(box.ledger, 30)
        await until(lambda: box.ledger.setting("config_version") == 2, what="config applied")
        await until(lambda: worker.counters.new_events >= 31, what="HQ stored the events")
        assert worker.counters.rejected == 0
    finally:
        if box.task is not None:
            await box.stop()
        box.ledger.close()
        worker.stop()
        db.close()


def test_edge_hq_broker_auth_writes_working_files_from_the_registry(tmp_path: Path) -> None:
    """GIVEN two devices registered at HQ and a passwords file WHEN `edge-hq broker-auth`
    runs THEN mosquitto started on its files admits BJ001-T1 with its password to its own
    topics only; a registered device without a password is an error naming it."""
    home = tmp_path / "hq"
    for acct in (BJ, SH):
        assert hq_cli.main(["--home", str(home), "register-device", "--device", acct.device,
                            "--store", acct.store, "--public-key",
                            SigningKey.generate(acct.device).public_key.hex()]) == 0
    secrets_file = tmp_path / "broker-passwords.json"
    secrets_file.write_text(json.dumps({BJ.device: BJ.password, **HQ_PASSWORDS}))
    out = tmp_path / "auth"
    assert hq_cli.main(["--home", str(home), "broker-auth", "--out", str(out),
                        "--passwords", str(secrets_file)]) == 2  # SH002-T1 has none
    secrets_file.write_text(json.dumps({BJ.device: BJ.password, SH.device: SH.password,
                                        **HQ_PASSWORDS}))
    assert hq_cli.main(["--home", str(home), "broker-auth", "--out", str(out),
                        "--passwords", str(secrets_file)]) == 0
    b = Broker(tmp_path / "broker", anonymous=False, listener_options=brokerauth.mosquitto_lines(
        out / "passwords", out / "acl"))
    b.start()
    try:
        bj, rc = connect(b.port, BJ.device, BJ.password)
        assert not rc.is_failure
        assert not bj.publish(T.events(BJ.store, BJ.device), b"mine").is_failure
        assert bj.publish(T.events(SH.store, SH.device), b"theirs").is_failure
        bj.close()
    finally:
        b.stop()
