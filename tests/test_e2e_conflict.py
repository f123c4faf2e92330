"""Box and HQ together over a real broker: a coupon spent at two stores while both were
offline is reported by HQ, and after fan-out a third store refuses it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edge import i18n, tokens
from edge.keys import Purpose, SigningKey, TrustedKey
from edge.ledger import Ledger
from edge.rules import Counter, Identity
from edge.verdict import Reason
from hq.issuing.codes import sign_token
from hq.publishing.push import push_orders
from sync.contract import OrderUpdate
from sync.service import SyncService
from sync.settings import MqttSettings
from tests.hq_support import Hq, hq_fixture  # noqa: F401  (fixture)

pytestmark = pytest.mark.network

COUPON_KEY = SigningKey.generate("HQC")


async def until(cond: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


class StoreBox:
    """A store: a ledger with the real rules, and (once started) the real SyncService."""

    def __init__(self, folder: Path, store: str, hq: Hq, till: str = "T1") -> None:
        self.identity = Identity(store, f"{store}-{till}")
        self.device_key = hq.register(store, self.identity.device_id)  # as provisioning does
        self.path = folder / f"{store}-{till}.sqlite"
        self.ledger = Ledger(self.path)
        with self.ledger.immediate() as conn:
            self.ledger.put_trusted_key(conn, TrustedKey(
                COUPON_KEY.key_id, COUPON_KEY.public_key,
                frozenset({Purpose.COUPON, Purpose.PICKUP})))
            for k in hq.trusted:  # HQ's config key signs the fan-out envelopes
                self.ledger.put_trusted_key(conn, k)
        self.counter = Counter(self.ledger, self.identity)
        self.settings = MqttSettings(port=hq.broker.port, keepalive_s=2, backoff_min_s=0.05,
                                     backoff_max_s=0.5, connect_timeout_s=2.0)
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        service = SyncService(self.path, self.identity, self.settings, lambda s: None,
                              software="e2e", device_key=self.device_key)
        self.task = asyncio.create_task(service.run())

    async def stop_sync(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None

    async def stop(self) -> None:
        await self.stop_sync()
        self.ledger.close()


async def test_offline_double_spend_is_reported_and_fanned_out(tmp_path: Path,
                                                               hq: Hq) -> None:
    """GIVEN stores A and B offline, each accepting the same single-use coupon, and store C
    online WHEN A and B come online THEN HQ ingests both decisions once each, reports the
    conflict naming A and B, fans the uses out, and C refuses the coupon as used at another
    store; A, B and C's own outboxes drain to zero."""
    now = int(time.time())
    code = sign_token(COUPON_KEY, tokens.Coupon(
        COUPON_KEY.key_id, "DOUBLE-1", "LIVE1125", tokens.Channel.LIVESTREAM,
        tokens.Benefit(tokens.BenefitKind.FREE_ITEM, 1, "咖啡"), now - 60, now + 3600))
    hq.worker()  # ingest with fan-out
    a, b, c = (StoreBox(tmp_path, s, hq) for s in ("SA", "SB", "SC"))
    try:
        c.start()
        await until(lambda: hq.count("SELECT COUNT(*) FROM hq_store WHERE store='SC'") == 1,
                    "HQ to learn of store C from its birth message")
        assert a.counter.redeem(code, till="T1").accepted  # both offline: both accept
        assert b.counter.redeem(code, till="T1").accepted
        a.start()
        b.start()
        await until(lambda: a.ledger.backlog() == 0 and b.ledger.backlog() == 0,
                    "A and B to drain")
        await until(lambda: hq.count("SELECT COUNT(*) FROM hq_conflict") == 1,
                    "HQ to report the conflict")
        (stores,), = hq.dbs[0].query("SELECT stores FROM hq_conflict WHERE code_id=?",
                                     ("C:DOUBLE-1",))
        assert "SA" in stores and "SB" in stores
        assert hq.count("SELECT COUNT(*) FROM hq_event WHERE type='decision'") == 2
        await until(lambda: c.ledger.conn.execute(
            "SELECT COUNT(*) FROM remote_use WHERE code_id='C:DOUBLE-1'").fetchone()[0] == 2,
            "store C to apply the fanned-out uses")
        verdict = c.counter.redeem(code, till="T1")
        assert verdict.reason is Reason.USED_AT_OTHER_STORE
        assert verdict.facts["used_store"] in {"SA", "SB"}
        await until(lambda: c.ledger.backlog() == 0, "C's refusal to reach HQ")
    finally:
        for box in (a, b, c):
            await box.stop()


def _orders_known(box: StoreBox) -> dict[str, str]:
    return dict(box.ledger.conn.execute("SELECT order_id, status FROM pickup_order").fetchall())


async def test_a_replacement_box_catches_up_on_what_it_missed(tmp_path: Path, hq: Hq) -> None:
    """GIVEN orders pushed to store N, the first of them collected by N's first box, and a
    single-use coupon spent at store A, all before N's replacement box first connected
    (so the broker holds no session for it) WHEN the replacement connects THEN HQ sends it
    a catch-up: it knows the waiting order, knows the collected one as collected, and
    refuses the coupon as used at A; WHEN HQ's ingest restarts (the retained report is
    replayed) or the box reconnects with its session THEN no second catch-up is sent."""
    now = int(time.time())
    hq.worker()
    push_orders(hq.db(), hq.opts, hq.key, "SN", [
        OrderUpdate("ORD-1", "4001", now - 600, now + 3600, "蛋糕x1", "赵*"),
        OrderUpdate("ORD-2", "4002", now - 600, now + 3600, "吐司x2", "钱*")])
    code = sign_token(COUPON_KEY, tokens.Coupon(
        COUPON_KEY.key_id, "ONCE-9", "LIVE1125", tokens.Channel.LIVESTREAM,
        tokens.Benefit(tokens.BenefitKind.FREE_ITEM, 1, "咖啡"), now - 60, now + 3600))
    old, a = StoreBox(tmp_path, "SN", hq), StoreBox(tmp_path, "SA", hq)
    new = StoreBox(tmp_path, "SN", hq, till="T2")
    outbox_sn = "SELECT COUNT(*) FROM hq_outbox WHERE store='SN'"
    try:
        old.start()
        await until(lambda: len(_orders_known(old)) == 2, "the first box's catch-up")
        assert old.counter.redeem("4001", till="T1").accepted
        assert a.counter.redeem(code, till="T1").accepted
        a.start()
        await until(lambda: old.ledger.backlog() == 0 and a.ledger.backlog() == 0,
                    "the collection and the coupon use to reach HQ")
        await until(lambda: hq.count("SELECT COUNT(*) FROM hq_code_use WHERE code_id="
                                     "'C:ONCE-9'") == 1, "HQ to count the use")
        await old.stop_sync()
        before = hq.count(outbox_sn)
        new.start()
        await until(lambda: _orders_known(new) == {"ORD-1": "collected", "ORD-2": "waiting"},
                    "the replacement's catch-up")
        await until(lambda: new.ledger.conn.execute(
            "SELECT COUNT(*) FROM remote_use WHERE code_id='C:ONCE-9'").fetchone()[0] == 1,
            "the use at A in the catch-up")
        assert hq.count(outbox_sn) == before + 2  # orders, remote uses
        assert new.counter.redeem("4002", till="T2").accepted
        collected = new.counter.redeem("4001", till="T2")
        assert collected.reason is Reason.ALREADY_COLLECTED
        assert "总部记录" in i18n.verdict_lines(collected)[1]
        assert new.counter.redeem(code, till="T2").reason is Reason.USED_AT_OTHER_STORE
        for w in hq.workers:
            w.stop()
        hq.workers.clear()
        hq.worker(client_id="hq-ingest-2")
        await new.stop_sync()
        new.start()
        await until(lambda: new.ledger.backlog() == 0, "the replacement to drain")
        await asyncio.sleep(0.5)
        assert hq.count(outbox_sn) == before + 2
    finally:
        for box in (old, a, new):
            await box.stop()
