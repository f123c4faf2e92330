"""The sync service the daemon runs: outbox up, config and data down, presence, forever.

``SyncService(...).run()`` runs until cancelled and never returns on network trouble: a
lost broker means backoff with jitter and another try, with the outbox growing meanwhile
(within policy, with an alarm) and every unacknowledged batch sent again after reconnect.
HQ de-duplicates by (device, seq), so a resend is always safe. The broker's PUBACK makes an
event sent; only HQ's signed confirmation (``edge.delivery``) makes it confirmed, and sent
events HQ does not confirm in time, or asks for, are sent again.

It opens its own ledger connection (the daemon keeps its own; SQLite WAL serialises the
writers) and runs its ledger calls on the event-loop thread, between awaits, except the
sent marks, the policy check and HQ's confirmations and resend requests, which run on
threads of their own (``sync.outbox.OutboxThread``).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

import paho.mqtt.client as mqtt

from edge import clock
from edge.delivery import KINDS as DELIVERY_KINDS
from edge.keys import SigningKey
from edge.ledger import Ledger, unsend_in
from edge.rules import Identity
from edge.storeconfig import (
    ApplyResult,
    Outcome,
    SyncPolicy,
    data_versions,
    last_rejection,
    sync_policy,
)
from sync.contract import (
    ContractError,
    DataKind,
    Envelope,
    Presence,
    PresenceState,
    Reported,
    Topics,
    device_digest,
    sign_device_digest,
)
from sync.inbound import Inbound
from sync.link import ConnectRefused, Link, LinkError, Will, signed_properties
from sync.outbox import Batch, Outbox, OutboxThread
from sync.settings import MqttSettings

log = logging.getLogger(__name__)

HOUSEKEEPING_S: Final = 10.0  # outbox policy check, backlog recount, presence refresh
SEAL_AFTER_S: Final = 5.0  # offline this long: the backlog's batches are prepared ahead
IDLE_POLL_S: Final = 1.0  # the drain's poll of an outbox with nothing to send (wake() hurries)
ACK_FLUSH_S: Final = 0.05  # acknowledged batches are marked sent together within this
PRESIGNED_MAX: Final = 20_000  # signed properties of prepared batches kept (~6 MB)
RESEND_MAX_S: Final = 3600.0  # the longest wait for HQ's confirmation before a resend


def software_version() -> str:
    """The installed store-edge version, as the presence message reports it."""
    try:
        return importlib.metadata.version("store-edge")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True, slots=True)
class SyncState:
    """What the cashier's screen and the status API show about sync."""

    online: bool
    last_contact: float | None  # wall time the broker last answered
    backlog: int  # events waiting to be sent
    config_version: int
    alarm: bool  # the outbox crossed its policy limits
    detail: str = ""  # why offline, or why the alarm is on
    unconfirmed: int = 0  # sent (the broker acknowledged them), waiting for HQ's confirmation


def coalesce_confirmations(payloads: list[bytes]) -> list[bytes]:
    """``payloads`` without the confirmations a later confirmation among them supersedes.

    Judged on the unverified kind: a forged later one can only make the box skip a genuine
    earlier confirmation, which costs a resend, never an event; resend requests and
    anything unreadable are all kept, in order.
    """
    kinds = [_kind(p) for p in payloads]
    last = max((i for i, k in enumerate(kinds) if k == DataKind.CONFIRMED), default=-1)
    return [p for i, (p, k) in enumerate(zip(payloads, kinds, strict=True))
            if k != DataKind.CONFIRMED or i == last]


def _kind(payload: bytes) -> str | None:
    try:
        kind = json.loads(Envelope.decode(payload).payload).get("kind")
    except (ContractError, ValueError, AttributeError):
        return None
    return kind if isinstance(kind, str) else None


def _batch_mark(batch: Batch) -> tuple[int, int, str, int]:
    """What names a prepared batch's exact bytes: its seq range, type and size.

    The bytes of a range are a function of its events (stored once, never changed) and
    the outbox's settings (this service's identity and compression), so the range alone
    would do; type and size make a batch built otherwise meanwhile miss. No checksum of the
    payload: a batch sent with a signature that does not match it is refused by HQ and
    opens a gap there, which HQ asks for again (``hq.ingest.delivery``) and the box then
    resends with a signature made at once (this one was taken), so a wrong match would
    cost a resend, not an event; the checksum cost the drain a tenth of a plain batch.
    """
    return batch.first, batch.last, batch.content_type, len(batch.payload)


def backoff_delay(attempt: int, low: float, high: float) -> float:
    """Capped exponential backoff with jitter: half fixed, half random (``attempt`` from 0)."""
    cap = min(high, low * 2 ** min(attempt, 30))
    return float(cap / 2 + random.uniform(0, cap / 2))


class SyncService:
    """Keeps one box in sync with HQ over MQTT."""

    def __init__(self, ledger_path: Path | str, identity: Identity, settings: MqttSettings,
                 on_state: Callable[[SyncState], None] | None = None,
                 software: str | None = None,
                 wall_clock: Callable[[], float] = time.time,
                 device_key: SigningKey | None = None) -> None:
        """Sync the ledger at ``ledger_path`` for ``identity`` through ``settings``' broker.

        ``device_key`` (the box's, which HQ registered) signs every message published:
        HQ refuses an unsigned one (``docs/security.md``, "Event authentication").
        """
        self.device_key = device_key
        # Signed PUBLISH properties of batches prepared while offline, made and packed on
        # the outbox thread and taken by the drain (see presign).
        self._presigned: dict[tuple[int, int, str, int], bytes] = {}
        self.ledger_path = Path(ledger_path)
        self.identity = identity
        self.settings = settings
        self.topics = Topics(settings.root)
        self.software = software or software_version()
        self.wall_clock = wall_clock
        self._on_state = on_state
        self._state = SyncState(False, None, 0, 0, False, "not started")
        self._told: SyncState | None = None
        self._told_at = 0.0
        self._tell_later: asyncio.TimerHandle | None = None
        self._counted_at = 0.0
        self._wake: asyncio.Event | None = None
        self._ledger: Ledger | None = None
        self._link: Link | None = None
        self._inflight: dict[int, Batch] = {}
        self._acked: list[tuple[int, int]] = []
        self._acked_since: float | None = None
        self._ack_failure = ""
        self._presence_sent: tuple[int, int, bool, bool, int, int] | None = None
        self._marking: set[asyncio.Future[None]] = set()
        self._delivering: set[asyncio.Future[None]] = set()  # applying HQ's delivery messages
        self._delivery_queue: list[bytes] = []  # received, not applied yet
        self._offline_since: float | None = None  # monotonic; None: online or not tried yet
        # The broker had no session for us: ask HQ for a catch-up until a report saying so
        # is acknowledged (a connection lost before that asks again on the next one).
        self._resync = False
        self._resync_mid: int | None = None
        # HQ's confirmations: the drain starts again from the first unsent event when a
        # resend makes sent events unsent; sent events wait for a confirmation at most
        # ``_resend_wait`` seconds (doubling while HQ stays silent) before they are resent.
        self._rewind = False
        self._confirmed_seen = -1
        self._unconfirmed_since: float | None = None  # monotonic
        self._resend_wait = settings.resend_after_s

    # -- public -------------------------------------------------------------------------

    @property
    def state(self) -> SyncState:
        """The latest state."""
        return self._state

    def wake(self) -> None:
        """Tell the drain new events are in the outbox (it also polls, so this only hurries)."""
        if self._wake is not None:
            self._wake.set()

    async def run(self) -> None:
        """Sync until cancelled. Network and broker trouble never end it."""
        self._wake = asyncio.Event()
        self._ledger = Ledger(self.ledger_path)
        self._acks = OutboxThread(self.ledger_path)  # sent marks
        self._checks = OutboxThread(self.ledger_path)  # policy checks, beside the marks
        try:
            self._outbox = Outbox(self._ledger, self.identity, self.settings.compress)
            self._inbound = Inbound(self._ledger, self.identity, self.topics, self.wall_clock)
            # The backlog is known before the first connect (a count on the unsent index, a
            # few ms); the full policy check runs on its own thread, beside the drain.
            try:
                self._set_state(backlog=self._outbox.backlog(),
                                config_version=int(self._ledger.setting("config_version")),
                                unconfirmed=self._ledger.unconfirmed())
            except Exception:  # a locked or full ledger now must not stop sync for good
                log.exception("sync could not read the outbox backlog")
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._connect_forever(), name="sync-connect")
                tg.create_task(self._housekeeping(), name="sync-housekeeping")
        finally:
            self._flush_refusals(force=True)
            self._acks.close()
            self._checks.close()
            self._ledger.close()
            self._ledger = None

    # -- connection loop ----------------------------------------------------------------

    async def _connect_forever(self) -> None:
        attempt = 0
        while True:
            connected = False
            try:
                connected = await self._session()
            except ConnectRefused as exc:
                self._offline(str(exc))
                log.error("%s (check mqtt credentials)", exc)
            except LinkError as exc:
                self._offline(str(exc))
                log.info("broker unreachable: %s", exc)
            except Exception as exc:  # a bug or a ledger error must not end sync for good
                self._offline(f"error: {exc!r}")
                log.exception("sync session failed")
            if connected:
                attempt = 0
            delay = backoff_delay(attempt, self.settings.backoff_min_s,
                                  self.settings.backoff_max_s)
            attempt += 1
            log.debug("reconnecting in %.2f s", delay)
            await asyncio.sleep(delay)

    async def _session(self) -> bool:
        """One connection, from CONNECT until it drops; returns whether CONNACK came."""
        s, ident = self.settings, self.identity
        will_topic = self.topics.status(ident.store_id, ident.device_id)
        will_payload = self._presence(PresenceState.OFFLINE).encode()
        will = Will(will_topic, will_payload, self._sign(will_topic, None, will_payload))
        link = Link(s, s.client_id_for(ident.store_id, ident.device_id), will,
                    self._on_message, self._on_ack)
        self._link = link
        self._inflight.clear()
        self._resync_mid = None  # mids are per connection
        self._acked.clear()
        self._acked_since = None
        self._ack_failure = ""
        try:
            session_present = await link.open()
            if not session_present:
                self._resync = True  # data published while we had no session never comes
            self._unconfirmed_since = None  # HQ gets a whole wait to confirm after a connect
            log.info("connected to %s:%s (session %s)", s.host, s.port,
                     "resumed" if session_present else "new")
            self._contact(online=True, detail="")
            link.subscribe(self._inbound.topics)
            self._publish_presence(force=True)
            self._publish_reported()
            await self._drain(link)
            self._offline(f"connection lost: {link.close_reason}")
            log.info("connection lost: %s", link.close_reason)
            return True
        except asyncio.CancelledError:
            await self._goodbye(link)
            raise
        finally:
            self._link = None
            if not link.closed.is_set():
                link.abort("session ended")
            self._flush_acks(force=True)
            if self._marking or self._delivering:
                await asyncio.gather(*self._marking, *self._delivering,
                                     return_exceptions=True)

    async def _goodbye(self, link: Link) -> None:
        """A clean stop: say offline ourselves (a clean disconnect sends no will)."""
        if link.closed.is_set():
            return
        with contextlib.suppress(LinkError):
            self._publish(link, self.topics.status(self.identity.store_id,
                                                   self.identity.device_id),
                          self._presence(PresenceState.OFFLINE).encode(), retain=True)
        with contextlib.suppress(Exception):
            await link.close(timeout=2.0)

    # -- the drain ----------------------------------------------------------------------

    async def _drain(self, link: Link) -> None:
        """Publish outbox batches, at most ``max_inflight`` unacknowledged, until the link drops.

        After a reconnect the cursor starts at 0: every unacknowledged event is sent again.
        """
        assert self._wake is not None
        topic = self.topics.events(self.identity.store_id, self.identity.device_id)
        cursor = 0
        partial_since: float | None = None
        while not link.closed.is_set():
            if self._rewind:  # sent events were made unsent again: send them first
                self._rewind, cursor, partial_since = False, 0, None
            self._flush_acks()
            if self._ack_failure:
                link.abort(f"broker refused a batch: {self._ack_failure}")
                break
            policy = self._policy
            linger = policy.linger_ms / 1000
            timeout = max(0.05, min(linger or 0.25, 0.5))
            while len(self._inflight) < self.settings.max_inflight:
                batch = self._outbox.next_batch(cursor, policy.batch_size)
                if batch is None:
                    partial_since = None
                    if not self._inflight and not self._acked and not self._marking:
                        # Nothing to send or mark: sleep until woken (a decision wakes the
                        # drain), polling once a second; a store's box is idle most of the
                        # time, and 2,000 of them on one HQ machine's tests were busy polling.
                        timeout = IDLE_POLL_S
                        if self._state.backlog:
                            self._set_state(backlog=0)  # everything before the cursor is acked
                            self._presigned.clear()  # any left were for batches built otherwise
                    break
                if batch.count < policy.batch_size and linger > 0:
                    now = time.monotonic()
                    partial_since = partial_since or now
                    if now - partial_since < linger:
                        timeout = min(timeout, linger - (now - partial_since))
                        break
                try:
                    mid = self._publish_batch(link, topic, batch)
                except LinkError:
                    break
                self._inflight[mid] = batch
                cursor = batch.last
                partial_since = None
            if self._acked_since is not None:
                timeout = min(timeout, ACK_FLUSH_S)
            if time.monotonic() - self._counted_at >= 1.0:
                self._counted_at = time.monotonic()
                self._set_state(backlog=self._outbox.backlog())
                self._check_confirmation()
                if self._rewind:
                    continue  # a resend is due: send it now, not after an idle wait
            self._wake.clear()
            waiter = asyncio.ensure_future(link.closed.wait())
            woken = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait((waiter, woken), timeout=max(timeout, 0.001),
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                woken.cancel()

    def _check_confirmation(self) -> None:
        """Resend sent events HQ has not confirmed in time (the broker may have lost them).

        The wait starts when events are sent and unconfirmed, starts over whenever HQ's
        confirmation moves, and doubles after each resend while HQ stays silent (an HQ that
        is down for long is not flooded), up to ``RESEND_MAX_S``.
        """
        assert self._ledger is not None
        confirmed = self._ledger.confirmed()[0]
        unconfirmed = self._ledger.unconfirmed()
        self._set_state(unconfirmed=unconfirmed)
        now = time.monotonic()
        if confirmed != self._confirmed_seen or not unconfirmed:
            self._confirmed_seen = confirmed
            self._unconfirmed_since = now if unconfirmed else None
            self._resend_wait = self.settings.resend_after_s
            return
        if self._unconfirmed_since is None:
            self._unconfirmed_since = now
        if now - self._unconfirmed_since < self._resend_wait:
            return
        with self._ledger.immediate() as conn:
            unsent = unsend_in(conn, confirmed + 1, self._ledger.newest_seq())
        log.warning("HQ confirmed nothing past seq %d for %.0f s: sending %d events again",
                    confirmed, now - self._unconfirmed_since, unsent)
        self._unconfirmed_since = now
        self._resend_wait = min(self._resend_wait * 2, RESEND_MAX_S)
        self._rewind = True
        self._set_state(backlog=self._outbox.backlog(), unconfirmed=self._ledger.unconfirmed())

    def _on_ack(self, mid: int, ok: bool, reason: str) -> None:
        if mid == self._resync_mid:
            self._resync_mid = None
            self._resync = self._resync and not ok
            return
        batch = self._inflight.pop(mid, None)
        if batch is None:
            return  # presence or reported
        if not ok:
            self._ack_failure = f"{reason} (events {batch.first}-{batch.last})"
        else:
            self._acked.append((batch.first, batch.last))
            if self._acked_since is None:
                self._acked_since = time.monotonic()
        if self._wake is not None:
            self._wake.set()

    def _flush_acks(self, force: bool = False) -> None:
        """Mark acknowledged batches sent, several per transaction when they come fast.

        One mark at a time (group commit): acks that arrive while a commit waits for its
        fsync are marked together by the next one, so the marks keep up with any ack rate
        instead of queueing one fsync per flush behind each other.
        """
        if not self._acked or self._ledger is None:
            return
        if self._marking and not force:
            return  # the running mark's completion flushes again
        due = (force or not self._inflight
               or len(self._acked) >= max(1, self.settings.max_inflight // 2)
               or (self._acked_since is not None
                   and time.monotonic() - self._acked_since >= ACK_FLUSH_S))
        if not due:
            return
        acked, self._acked, self._acked_since = self._acked, [], None
        task = asyncio.ensure_future(self._mark(acked))
        self._marking.add(task)
        task.add_done_callback(self._marked)

    def _marked(self, task: asyncio.Future[None]) -> None:
        self._marking.discard(task)
        self.wake()  # flush what was acknowledged meanwhile

    async def _mark(self, acked: list[tuple[int, int]]) -> None:
        try:
            changed = await self._acks.mark(acked)
        except Exception:  # not marked means sent again later: safe, HQ de-duplicates
            log.exception("could not mark %d acknowledged batches sent", len(acked))
            return
        # Unconfirmed first: no state may show the events neither unsent nor unconfirmed.
        self._set_state(unconfirmed=self._state.unconfirmed + changed)
        self._contact(online=self._link is not None,
                      backlog=max(0, self._state.backlog - changed))

    # -- inbound ------------------------------------------------------------------------

    def _on_message(self, msg: mqtt.MQTTMessage) -> None:
        self._contact(online=True)
        if msg.topic == self._inbound.hq_topic:
            # A confirmation or resend request is applied on the marks' thread, in order
            # with the marks: on the loop its commit (an fsync) would stall the drain, and
            # its write would wait on the marks' lock. It is acknowledged on receipt: one
            # lost to a crash is sent again by HQ (a confirmation after the next batch or
            # presence, a request after its wait), and the box resends what stays
            # unconfirmed.
            self._delivery_queue.append(bytes(msg.payload))
            if all(t.done() for t in self._delivering):  # else the running one takes it
                task = asyncio.ensure_future(self._deliver())
                self._delivering.add(task)
                task.add_done_callback(self._delivering.discard)
            return
        result = self._inbound.handle(msg.topic, bytes(msg.payload))
        if result is None or result.outcome is Outcome.DUPLICATE:
            return
        self._after_inbound(result)

    def _after_inbound(self, result: ApplyResult) -> None:
        if result.kind in DELIVERY_KINDS:
            if result.applied:
                self._after_delivery(result)
            return
        if result.kind in (DataKind.CONFIG, None) or result.applied:
            self._publish_reported()
        if result.kind is DataKind.CONFIG and result.applied:
            assert self._ledger is not None
            self._set_state(config_version=int(self._ledger.setting("config_version")))
            self._publish_presence(force=True)
        self.wake()  # the outcome's event is in the outbox

    # -- signing ------------------------------------------------------------------------

    def _sign(self, topic: str, content_type: str | None, payload: bytes) -> str | None:
        """The device's signature over one message as sent (None without a device key)."""
        if self.device_key is None:
            return None
        return sign_device_digest(self.device_key, device_digest(topic, content_type, payload))

    def presign(self, batch: Batch) -> None:
        """Sign a batch prepared ahead (``Outbox.seal``'s hook; runs on the outbox thread).

        The drain then sends the properties packed here instead of hashing, signing and
        packing while it sends.
        """
        if self.device_key is None or len(self._presigned) >= PRESIGNED_MAX:
            return
        topic = self.topics.events(self.identity.store_id, self.identity.device_id)
        signature = sign_device_digest(
            self.device_key, device_digest(topic, batch.content_type, batch.payload))
        self._presigned[_batch_mark(batch)] = signed_properties(batch.content_type, signature)

    def _publish_batch(self, link: Link, topic: str, batch: Batch) -> int:
        """Publish one outbox batch, signed while it was prepared if it was, else now."""
        if self.device_key is not None and self._presigned:
            packed = self._presigned.pop(_batch_mark(batch), None)
            if packed is not None:
                return link.publish(topic, batch.payload, properties=packed)
        return link.publish(topic, batch.payload, content_type=batch.content_type,
                            signature=self._sign(topic, batch.content_type, batch.payload))

    def _publish(self, link: Link, topic: str, payload: bytes, retain: bool = False,
                 content_type: str | None = None) -> int:
        """Publish one message, signed: one signature per batch, over the bytes sent."""
        return link.publish(topic, payload, retain=retain, content_type=content_type,
                            signature=self._sign(topic, content_type, payload))

    def _flush_refusals(self, force: bool = False) -> None:
        """Record the junk refusals counted in a minute that ended (all of them at stop)."""
        inbound: Inbound | None = getattr(self, "_inbound", None)  # set by run()
        if inbound is None:
            return
        try:
            if inbound.flush(force):
                self.wake()
        except Exception:  # a full disk: the counts are lost, the log says so
            log.exception("could not record the coalesced refusals")

    async def _deliver(self) -> None:
        """Apply the queued delivery messages, in order, until none is left.

        Each applied message is a commit (an fsync) on the marks' thread; confirmations that
        queued up meanwhile are coalesced to the last one (each says all HQ holds).
        """
        topic, identity, wall_clock = self._inbound.hq_topic, self.identity, self.wall_clock
        topics = self.topics
        while self._delivery_queue:
            payloads = coalesce_confirmations(self._delivery_queue)
            self._delivery_queue = []

            def apply(ledger: Ledger, payloads: list[bytes] = payloads) -> list[ApplyResult]:
                # Without an fsync of their own (WAL, synchronous=NORMAL: safe against a
                # crash of the process; the next mark's commit syncs them to the disk): a
                # confirmation lost to a power cut costs a resend, a request lost HQ's next
                # one. Their own fsync, one per message, held up the marks during a drain.
                ledger.conn.execute("PRAGMA synchronous=NORMAL")
                try:
                    inbound = Inbound(ledger, identity, topics, wall_clock)
                    done = [r for p in payloads if (r := inbound.handle(topic, p)) is not None]
                    # This Inbound lives for one batch: record the junk it counted now, or
                    # the counts go with it (at most one event per reason and kind a batch).
                    inbound.flush(force=True)
                    return done
                finally:
                    ledger.conn.execute("PRAGMA synchronous=FULL")

            try:
                results = await self._acks.run(apply)
            except Exception:  # a ledger error: HQ sends another; unconfirmed ones are resent
                log.exception("could not apply a message from HQ on %s", topic)
                continue
            for result in results:
                if result.outcome is not Outcome.DUPLICATE:
                    self._after_inbound(result)

    def _after_delivery(self, result: ApplyResult) -> None:
        """A confirmation (prune may go on) or a resend request (the drain goes back)."""
        assert self._ledger is not None
        if result.kind is DataKind.RESEND and result.changed:
            self._rewind = True
            self._set_state(backlog=self._outbox.backlog())
            self.wake()
        self._set_state(unconfirmed=self._ledger.unconfirmed())

    # -- presence, report, state ----------------------------------------------------------

    @property
    def _policy(self) -> SyncPolicy:
        assert self._ledger is not None
        return sync_policy(self._ledger)

    def _presence(self, state: PresenceState) -> Presence:
        assert self._ledger is not None
        reading = clock.read(self.wall_clock(), self._ledger.trusted_time(),
                             self._ledger.setting("clock_skew_s"))
        return Presence(state, self.software, int(self._ledger.setting("config_version")),
                        self._state.backlog, reading.trusted, reading.now, self._state.alarm,
                        self._ledger.newest_seq(), self._state.unconfirmed)

    def _publish_presence(self, force: bool = False) -> None:
        link = self._link
        if link is None or link.closed.is_set():
            return
        p = self._presence(PresenceState.ONLINE)
        key = (p.config_version, p.backlog, p.clock_trusted, p.alarm, p.last_seq,
               p.unconfirmed)
        if not force and key == self._presence_sent:
            return
        with contextlib.suppress(LinkError):
            self._publish(link, self.topics.status(self.identity.store_id,
                                                   self.identity.device_id),
                          p.encode(), retain=True)
            self._presence_sent = key

    def _publish_reported(self) -> None:
        link = self._link
        if link is None or link.closed.is_set() or self._ledger is None:
            return
        rej = last_rejection(self._ledger) or {}
        # One resync request in flight per connection: HQ would answer each one.
        resync = self._resync and self._resync_mid is None
        report = Reported(int(self._ledger.setting("config_version")), rej.get("version"),
                          str(rej.get("reason", "")) + (": " + rej["detail"] if rej else ""),
                          self.wall_clock(), data_versions(self._ledger), resync,
                          self._ledger.newest_seq())
        with contextlib.suppress(LinkError):
            mid = self._publish(link, self.topics.reported(self.identity.store_id,
                                                           self.identity.device_id),
                                report.encode(), retain=True)
            if report.resync:
                self._resync_mid = mid

    async def _housekeep(self) -> None:
        assert self._ledger is not None
        health = await self._checks.check(self.identity, self._policy, self.wall_clock())
        offline = self._offline_since
        if (offline is not None and time.monotonic() - offline >= SEAL_AFTER_S
                and health.backlog >= self._policy.batch_size):
            # Offline for a while: prepare the backlog's batches now, so the drain after
            # the outage sends stored bytes instead of encoding and compressing them then.
            sealed = await self._checks.seal(self.identity, self.settings.compress,
                                             self._policy.batch_size, self.presign)
            if sealed:
                self._outbox.forget_prepared()  # the drain reads the new ones
                log.info("prepared %d batches of the backlog while offline", sealed)
        detail = health.why if health.alarm else self._state.detail
        if health.alarm != self._state.alarm:
            self.wake()
        self._set_state(backlog=health.backlog, alarm=health.alarm, detail=detail,
                        config_version=int(self._ledger.setting("config_version")),
                        unconfirmed=health.unconfirmed)

    async def _housekeeping(self) -> None:
        # The first round runs at once, beside the first connect and the drain.
        while True:
            try:
                await self._housekeep()
                self._flush_refusals()
                self._publish_presence()
            except Exception:  # a full disk or locked ledger: try again next round
                log.exception("sync housekeeping failed")
            await asyncio.sleep(HOUSEKEEPING_S)

    def _contact(self, online: bool, detail: str | None = None,
                 backlog: int | None = None) -> None:
        changes: dict[str, object] = {"online": online, "last_contact": self.wall_clock()}
        if online:
            self._offline_since = None
        if detail is not None:
            changes["detail"] = detail
        if backlog is not None:
            changes["backlog"] = backlog
        self._set_state(**changes)

    def _offline(self, detail: str) -> None:
        if self._offline_since is None:
            self._offline_since = time.monotonic()
        self._set_state(online=False, detail=detail)

    def _set_state(self, **changes: object) -> None:
        self._state = replace(self._state, **changes)  # type: ignore[arg-type]
        if self._on_state is None:
            return
        told = self._told
        now = time.monotonic()
        important = told is None or (told.online, told.config_version, told.alarm) != (
            self._state.online, self._state.config_version, self._state.alarm)
        if not important and self._state == told:
            return
        if not important and now - self._told_at < 0.5:
            if self._tell_later is None:  # tell the latest state once the half second is up
                self._tell_later = asyncio.get_running_loop().call_later(
                    0.5 - (now - self._told_at), self._tell_pending)
            return
        self._tell()

    def _tell_pending(self) -> None:
        self._tell_later = None
        if self._state != self._told:
            self._tell()

    def _tell(self) -> None:
        assert self._on_state is not None
        if self._tell_later is not None:
            self._tell_later.cancel()
            self._tell_later = None
        self._told, self._told_at = self._state, time.monotonic()
        try:
            self._on_state(self._state)
        except Exception:
            log.exception("sync state callback failed")
