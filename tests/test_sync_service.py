"""sync.service against a real mosquitto: delivery through outages, config and data down."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge import tokens
from edge.events import EventType
from edge.keys import SigningKey
from edge.ledger import Ledger
from edge.rules import Counter
from edge.verdict import Reason
from hq.issuing.codes import sign_token
from provisioning.localbroker import Broker, LocalBroker, free_port
from sync.contract import DataKind, Presence, PresenceState, Reported, Topics
from sync.service import SyncService, SyncState
from sync.settings import MqttSettings
from tests.sync_fixtures import (
    DEVICE,
    IDENTITY,
    STORE,
    HqListener,
    append_events,
    config_body,
    events_of,
    new_ledger,
    sealed,
)

pytestmark = pytest.mark.network
# The broker is stopped while HQ's listener holds a session: it must keep the subscription
# and queue the box's events meanwhile (rumqttd forgets both).
BROKER_STOPPED = pytest.mark.broker_needs(
    "persistence", reason="the broker is stopped; HQ's listener session must survive that")

HQ1 = SigningKey.generate("HQ1")
TOPICS = Topics("se")


@pytest.fixture
def hq(broker: LocalBroker) -> Iterator[HqListener]:
    h = HqListener(broker)
    h.start()
    yield h
    h.stop()


def _settings(port: int, **over: Any) -> MqttSettings:
    return MqttSettings(port=port, keepalive_s=2, backoff_min_s=0.05, backoff_max_s=0.5,
                        connect_timeout_s=2.0, **over)


async def until(cond: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or cond}")
        await asyncio.sleep(0.02)


class Box:
    """A ledger plus a running SyncService (started and stopped by the test)."""

    def __init__(self, path: Path, settings: MqttSettings,
                 device_key: SigningKey | None = None) -> None:
        self.path = path
        self.ledger = new_ledger(path, HQ1)
        self.settings = settings
        self.device_key = device_key  # signs what the box publishes, where HQ checks
        self.states: list[SyncState] = []
        self.task: asyncio.Task[None] | None = None
        self.service: SyncService | None = None

    def start(self) -> None:
        self.service = SyncService(self.path, IDENTITY, self.settings, self.states.append,
                                   software="test-1.0", device_key=self.device_key)
        self.task = asyncio.create_task(self.service.run())

    async def stop(self) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        self.task = None

    def sent(self) -> int:
        return self.ledger.last_seq() - self.ledger.backlog()


@pytest.fixture
async def box(tmp_path: Path, broker: LocalBroker) -> AsyncIterator[Box]:
    b = Box(tmp_path / "box.sqlite", _settings(broker.port))
    yield b
    if b.task is not None:
        await b.stop()
    b.ledger.close()


def _set_policy(ledger: Ledger, **policy: int) -> None:
    with ledger.immediate() as conn:
        ledger.put_setting(conn, "sync_policy", {"batch_size": 100, "linger_ms": 10,
                                                 "outbox_max_age_s": 86400,
                                                 "outbox_max_rows": 1_000_000,
                                                 "alarm_backlog": 1_000_000, **policy})


@BROKER_STOPPED
async def test_offline_whole_time_then_online_delivers_all_in_order(
        broker: LocalBroker, hq: HqListener, box: Box) -> None:
    """GIVEN a box whose broker is down from its start, queuing 1200 events WHEN the broker
    comes back THEN HQ receives every event in seq order, the box marks all sent, the retained
    presence says online with backlog 0, and the state went offline -> online."""
    broker.stop()
    box.start()
    append_events(box.ledger, 1200)
    await until(lambda: any(not s.online and "connect" in s.detail for s in box.states),
                what="offline state")
    assert box.sent() == 0
    broker.start()
    await until(lambda: box.sent() == 1200, what="all sent")
    await until(lambda: len(set(hq.seqs())) == 1200, what="HQ has all")
    seqs = hq.seqs()
    assert sorted(set(seqs)) == list(range(1, 1201))
    assert seqs == sorted(seqs)  # one connection, no outage during the drain: in order
    await until(lambda: box.states[-1].backlog == 0 and box.states[-1].online, what="state")
    await until(lambda: (p := hq.last("status")) is not None
                and Presence.decode(p).state is PresenceState.ONLINE)


@BROKER_STOPPED
async def test_a_long_outage_prepares_the_backlog_and_the_drain_sends_it_as_stored(
        broker: LocalBroker, hq: HqListener, box: Box, monkeypatch: pytest.MonkeyPatch) -> None:
    """GIVEN a box offline past SEAL_AFTER_S with 1250 events waiting WHEN housekeeping runs
    THEN the 12 full batches are prepared (the 50 newest are not); WHEN the broker comes
    back THEN HQ receives exactly the prepared bytes for them, every event once, in order,
    and the prepared batches are pruned once acknowledged."""
    monkeypatch.setattr("sync.service.HOUSEKEEPING_S", 0.1)
    monkeypatch.setattr("sync.service.SEAL_AFTER_S", 0.2)
    _set_policy(box.ledger, batch_size=100)
    broker.stop()
    append_events(box.ledger, 1250)
    box.start()

    def prepared() -> list[bytes]:
        return [r[0] for r in box.ledger.conn.execute(
            "SELECT payload FROM outbox_batch ORDER BY first")]
    await until(lambda: len(prepared()) == 12, what="the backlog prepared")
    stored = prepared()
    assert box.sent() == 0
    broker.start()
    await until(lambda: box.sent() == 1250, what="all sent")
    await until(lambda: len(hq.seqs()) >= 1250, what="HQ has all")
    assert hq.seqs() == list(range(1, 1251))
    with hq.lock:
        payloads = [p for t, p, _c, _r in hq.messages if t.endswith("/events")]
    assert payloads[:12] == stored
    await until(lambda: prepared() == [], what="prepared batches pruned")


@pytest.mark.broker_needs("persistence",
                          reason="a broker restart mid-drain: HQ's listener session survives it")
async def test_broker_restart_mid_drain_loses_nothing(broker: LocalBroker, hq: HqListener,
                                                      box: Box) -> None:
    """GIVEN 6000 events draining in batches of 50 WHEN the broker is restarted mid-drain
    THEN after reconnect HQ has every seq; duplicates are only resent batches (HQ de-dups by
    device+seq) and every event is marked sent exactly once."""
    append_events(box.ledger, 6000)
    _set_policy(box.ledger, batch_size=50)
    box.start()
    await until(lambda: len(hq.seqs()) >= 500, what="drain started")
    sent_before = box.sent()
    broker.restart()
    assert sent_before < 6000, "the drain finished before the restart: nothing was tested"
    await until(lambda: box.sent() == 6000, timeout=30, what="all sent after restart")
    await until(lambda: set(hq.seqs()) == set(range(1, 6001)), timeout=30, what="HQ complete")
    assert box.ledger.backlog() == 0
    assert any(not s.online for s in box.states)  # the outage was seen


class CuttingProxy:
    """A loopback TCP proxy that, once armed, swallows bytes mid-stream and then cuts."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self.target = target_port
        self.cut_after: int | None = None
        self.cuts = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def close(self) -> None:
        if self.server:
            self.server.close()

    async def _serve(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        ur, uw = await asyncio.open_connection("127.0.0.1", self.target)
        done = asyncio.Event()

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, up: bool) -> None:
            passed = 0
            try:
                while data := await src.read(4096):
                    if up and self.cut_after is not None and passed + len(data) > self.cut_after:
                        keep = self.cut_after - passed
                        dst.write(data[:max(keep, 0)])  # half a packet goes through
                        self.cut_after = None
                        self.cuts += 1
                        await asyncio.sleep(0.3)  # the rest is swallowed: a dying link
                        break
                    passed += len(data)
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                done.set()

        tasks = [asyncio.create_task(pump(r, uw, True)), asyncio.create_task(pump(ur, w, False))]
        await done.wait()
        for t in tasks:
            t.cancel()
        for s in (w, uw):
            s.transport.abort()


async def test_connection_cut_mid_stream_recovers(broker: LocalBroker, hq: HqListener,
                                                  tmp_path: Path) -> None:
    """GIVEN a box connected through a proxy WHEN the proxy cuts the link in the middle of a
    batch (half a packet delivered) THEN the broker publishes the box's will (offline), the box
    reconnects, and HQ ends with every event."""
    proxy = CuttingProxy(broker.port)
    await proxy.start()
    box = Box(tmp_path / "box.sqlite", _settings(proxy.port))
    append_events(box.ledger, 3000)
    _set_policy(box.ledger, batch_size=100)
    proxy.cut_after = 40_000  # bytes up, of ~100 kB for the whole backlog: mid-drain
    box.start()
    try:
        await until(lambda: proxy.cuts == 1, what="cut")
        assert box.sent() < 3000
        await until(lambda: any(Presence.decode(p).state is PresenceState.OFFLINE
                                for t, p, _c, _r in list(hq.messages) if t.endswith("/status")),
                    what="will published")
        await until(lambda: box.sent() == 3000, timeout=30, what="all sent")
        await until(lambda: set(hq.seqs()) == set(range(1, 3001)), what="HQ complete")
    finally:
        await box.stop()
        box.ledger.close()
        await proxy.close()


async def test_config_down_applied_and_reported_and_tampered_refused(
        broker: LocalBroker, hq: HqListener, box: Box) -> None:
    """GIVEN HQ's retained config v4 for the store WHEN the box connects THEN it applies it and
    publishes a retained report of v4; WHEN a tampered v5 is published THEN the box refuses it,
    reports bad_signature, records config_rejected, and stays on v4."""
    topic = TOPICS.config(STORE)
    hq.publish(topic, sealed(HQ1, DataKind.CONFIG, 4, config_body(HQ1)), retain=True)
    box.start()
    await until(lambda: box.ledger.setting("config_version") == 4, what="config applied")
    await until(lambda: (r := hq.last("reported")) is not None
                and Reported.decode(r).applied_version == 4, what="reported v4")
    await until(lambda: box.states[-1].config_version == 4, what="state config version")
    good = sealed(HQ1, DataKind.CONFIG, 5, config_body(HQ1, void_window_s=1))
    tampered = good.replace(b'void_window_s\\":1', b'void_window_s\\":9')
    assert tampered != good
    hq.publish(topic, tampered, retain=True)
    await until(lambda: (r := hq.last("reported")) is not None
                and "bad_signature" in Reported.decode(r).last_error, what="refusal reported")
    assert box.ledger.setting("config_version") == 4
    assert events_of(box.ledger, EventType.CONFIG_REJECTED)[-1]["reason"] == "bad_signature"
    # The refusal event itself reaches HQ like any other event.
    await until(lambda: box.ledger.backlog() == 0, what="refusal event sent")


@pytest.mark.broker_needs("persistence",
                          reason="the box's queued orders must survive a broker restart")
async def test_orders_and_remote_uses_published_while_box_is_down(
        broker: LocalBroker, hq: HqListener, box: Box) -> None:
    """GIVEN a box that connected once (so the broker keeps its session) and is then off
    WHEN HQ publishes orders and a remote use of a single-use coupon, and the broker restarts
    THEN the box, back on, applies both: the order is known and the coupon is refused as
    used at another store."""
    box.start()
    await until(lambda: box.states and box.states[-1].online, what="first connect")
    await box.stop()
    now = int(time.time())
    orders = {"orders": [{"order_id": "ORD-77", "number": "0777", "window_start": now - 60,
                          "window_end": now + 3600, "items": "蛋糕", "customer": "赵*"}]}
    coupon = tokens.Coupon("HQ1", "LIVE-9", "LIVE1125", tokens.Channel.LIVESTREAM,
                           tokens.Benefit(tokens.BenefitKind.FREE_ITEM, 1, "咖啡"),
                           now - 60, now + 3600)
    uses = {"uses": [{"code_id": coupon.code_id, "store": "SH002", "uses": 1, "last_at": now}]}
    hq.publish(TOPICS.data(STORE), sealed(HQ1, DataKind.ORDERS, 1, orders))
    hq.publish(TOPICS.data(STORE), sealed(HQ1, DataKind.REMOTE_USES, 1, uses))
    broker.restart()  # the queued messages live in the broker's persisted session
    box.start()
    await until(lambda: box.ledger.setting("remote_uses_version") == 1, what="data applied")
    assert box.ledger.conn.execute("SELECT number FROM pickup_order WHERE order_id='ORD-77'"
                                   ).fetchone() == ("0777",)
    verdict = Counter(box.ledger, IDENTITY).redeem(sign_token(HQ1, coupon))
    assert verdict.reason is Reason.USED_AT_OTHER_STORE


async def test_clean_stop_says_offline_and_service_survives_refused_port(
        broker: LocalBroker, hq: HqListener, tmp_path: Path) -> None:
    """GIVEN a box pointed at a port where nothing listens WHEN it runs a while THEN it keeps
    retrying (several offline states, task alive); GIVEN a box on the broker WHEN it is stopped
    THEN its retained status says offline."""
    dead = Box(tmp_path / "dead.sqlite", _settings(free_port()))
    dead.start()
    await asyncio.sleep(1.0)
    assert dead.task is not None and not dead.task.done()
    assert dead.states and not dead.states[-1].online
    await dead.stop()
    dead.ledger.close()
    live = Box(tmp_path / "live.sqlite", _settings(broker.port))
    live.start()
    await until(lambda: (p := hq.last("status")) is not None
                and Presence.decode(p).state is PresenceState.ONLINE, what="birth")
    birth = Presence.decode(hq.last("status") or b"")
    assert birth.software == "test-1.0" and birth.config_version == 0
    await live.stop()
    await until(lambda: Presence.decode(hq.last("status") or b"").state
                is PresenceState.OFFLINE, what="offline on stop")
    live.ledger.close()
    assert DEVICE in TOPICS.status(STORE, DEVICE)
    with socket.socket() as s:  # the broker is still up: the box's stop did not hurt it
        s.connect((broker.host, broker.port))


async def test_inbound_message_that_fails_to_apply_is_delivered_again(
        broker: LocalBroker, hq: HqListener, box: Box) -> None:
    """GIVEN a connected box whose ledger refuses writes to pickup orders (a trigger stands in
    for a failing disk) WHEN HQ publishes orders THEN the box does not acknowledge them, and
    once the ledger works again the broker's re-delivery is applied: nothing is lost."""
    box.start()
    await until(lambda: bool(box.states) and box.states[-1].online, what="connected")
    with box.ledger.immediate() as conn:
        conn.execute("CREATE TRIGGER boom BEFORE INSERT ON pickup_order "
                     "BEGIN SELECT RAISE(ABORT, 'disk trouble'); END")
    now = int(time.time())
    orders = {"orders": [{"order_id": "ORD-5", "number": "0555", "window_start": now,
                          "window_end": now + 600}]}
    hq.publish(TOPICS.data(STORE), sealed(HQ1, DataKind.ORDERS, 1, orders))
    await until(lambda: sum(not s.online for s in box.states) >= 1, what="link dropped")
    assert not box.ledger.setting("orders_version")
    with box.ledger.immediate() as conn:
        conn.execute("DROP TRIGGER boom")
    await until(lambda: box.ledger.setting("orders_version") == 1, what="re-delivered")
    assert box.ledger.conn.execute("SELECT number FROM pickup_order").fetchall() == [("0555",)]


async def test_refused_batches_are_never_marked_sent(tmp_path: Path) -> None:
    """GIVEN a broker whose ACL refuses the box's events topic (MQTT 5 PUBACK 'not
    authorized') WHEN the box drains THEN no event is marked sent, the state says the broker
    refused a batch, and the box keeps trying."""
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite se/v1/s/+/d/+/status\ntopic readwrite se/v1/s/+/d/+/reported\n"
                   "topic read se/v1/s/+/config\ntopic read se/v1/s/+/data\n")
    broker = Broker(tmp_path / "mq", listener_options=f"acl_file {acl}")
    broker.start()
    box = Box(tmp_path / "box.sqlite", _settings(broker.port))
    append_events(box.ledger, 30)
    box.start()
    try:
        await until(lambda: sum("refused a batch" in s.detail for s in box.states) >= 2,
                    what="two refusals")
        assert box.ledger.backlog() == 30 and box.sent() == 0
        assert box.task is not None and not box.task.done()
    finally:
        await box.stop()
        box.ledger.close()
        broker.kill()


async def test_alarm_while_offline(tmp_path: Path) -> None:
    """GIVEN a policy alarming at 10 unsent events and a broker that is not there WHEN 20
    events wait THEN the state carries the alarm and its reason, and an outbox_alarm event
    is queued behind them (nothing dropped)."""
    box = Box(tmp_path / "box.sqlite", _settings(free_port()))
    _set_policy(box.ledger, alarm_backlog=10)
    append_events(box.ledger, 20)
    box.start()
    try:
        await until(lambda: any(s.alarm and "alarm threshold of 10" in s.detail
                                for s in box.states), what="alarm state with its reason")
        assert events_of(box.ledger, EventType.OUTBOX_ALARM)[0]["backlog"] == 20
        assert box.ledger.backlog() == 21
    finally:
        await box.stop()
        box.ledger.close()


async def test_sent_events_hq_does_not_confirm_are_resent_with_a_growing_wait(
        tmp_path: Path, broker: Broker, hq: HqListener) -> None:
    """GIVEN a box (resend_after_s 1) whose 5 events the broker acknowledged, and an HQ that
    never confirms WHEN time passes THEN the box sends them again after 1 s, then after 2 s
    more (the wait doubles), its state saying 5 unconfirmed meanwhile; WHEN
    HQ then confirms 5 (signed, on the device's hq topic) THEN nothing is unconfirmed and
    no resend follows; WHEN HQ asks for 2-3 THEN those are sent again at once, and the
    confirmation goes back to 1."""
    b = Box(tmp_path / "box.sqlite", _settings(broker.port, resend_after_s=1.0))
    try:
        _set_policy(b.ledger)
        append_events(b.ledger, 5)
        b.start()
        await until(lambda: sorted(hq.seqs()) == [1, 2, 3, 4, 5], what="first send")
        await until(lambda: bool(b.states) and b.states[-1].unconfirmed == 5,
                    what="5 unconfirmed")
        await until(lambda: len(hq.seqs()) == 10, what="the first resend")
        await until(lambda: len(hq.seqs()) == 15, timeout=30, what="the second resend")
        assert b.service is not None and b.service._resend_wait == 4.0  # 1 s, 2 s, next 4 s
        version = 1
        hq.publish(TOPICS.hq(STORE, DEVICE), sealed(HQ1, DataKind.CONFIRMED, version,
                                                    {"device": DEVICE, "seq": 5}))
        await until(lambda: b.ledger.confirmed()[0] == 5 and b.states[-1].unconfirmed == 0,
                    what="confirmed")
        sent = len(hq.seqs())
        hq.publish(TOPICS.hq(STORE, DEVICE), sealed(HQ1, DataKind.RESEND, version + 1,
                                                    {"device": DEVICE, "first": 2, "last": 3}))
        await until(lambda: len(hq.seqs()) >= sent + 2, what="2-3 sent again")
        assert hq.seqs()[sent:sent + 2] == [2, 3]
        # HQ lacking 2-3 holds no longer every event up to 5: the confirmation is back at 1.
        assert b.ledger.confirmed()[0] == 1
    finally:
        if b.task is not None:
            await b.stop()
        b.ledger.close()
