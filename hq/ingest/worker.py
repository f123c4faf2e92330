"""The ingest worker: a shared MQTT 5 subscription into the HQ database.

Several workers may run with the same ``--group``: the broker splits the events among
them (``$share/GROUP/...``). Each worker keeps a persistent session (``clean_start`` off, a
session expiry) under a *stable* client id, so batches published while it is down wait for
it at the broker.

Group commit: paho's network thread checks each message's sender (topic, size, signature:
``EventStore.sender``) and queues it; the worker's committer thread
stores them, several per transaction (:meth:`EventStore.group`): it opens a transaction with
the oldest message waiting and adds the next ones while more are waiting, up to
``group_max`` messages or ``group_max_s`` seconds, then commits. Nothing waits for a group
to fill: a message arriving in a quiet period commits at once, alone. Each message is
acknowledged (PUBACK, paho ``manual_ack``) only after the commit that stored it: a crash
between the two means a redelivery, which the ``UNIQUE(device, seq)`` constraint makes a
no-op. If anything fails in a group (the database, or a bug on one message), the group is
rolled back and its messages are stored again one transaction each: a bad message gets its
own ``hq_reject`` row and the others are stored as if they had come alone. While the
database fails, the worker retries the same message with a capped backoff and acknowledges
nothing.

Fan-out rows are committed to ``hq_outbox`` in the same transaction as the event that
caused them, by every worker. Exactly one worker per HQ sends them (the one given a
``signer``; run the others with ``--no-fanout``): it versions, signs and publishes them in
creation order on its one connection, so each store receives its ``remote_uses`` versions
in increasing order (the box ignores a version at or below the one it applied). It sends
its own fan-out at once and picks up the other workers' within ``FANOUT_POLL_S``; a row is
marked sent on the broker's PUBACK, and whatever is unsent is sent after a reconnect.

The same worker sends each device HQ's signed confirmation of what it committed, and asks
for what it lacks (``hq.ingest.delivery``).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from edge.keys import SigningKey
from hq.broker import (
    BrokerError,
    BrokerOptions,
    connect_properties,
    json_properties,
    make_client,
    set_nodelay,
)
from hq.db import DbError
from hq.ingest import delivery
from hq.ingest.eventstore import CATCH_UP_EVERY_S, EventStore, Handled, Outcome, Sender
from hq.publishing import fanout
from sync.contract import QOS, SIG_PROPERTY, DataKind

log = logging.getLogger("hq.ingest")

DEFAULT_GROUP = "hq-ingest"
DEFAULT_SESSION_EXPIRY_S = 7 * 24 * 3600  # a week of HQ downtime before the broker forgets
FANOUT_POLL_S = 0.2  # how soon the sender sees fan-out committed by the other workers
DB_RETRY_FIRST_S = 0.1
DB_RETRY_MAX_S = 5.0
# A group commit takes at most this many messages, or this long (it holds the write lock
# and acknowledges nothing before its commit).
GROUP_MAX_MESSAGES = 20
GROUP_MAX_S = 0.05
# MQTT 5 Receive Maximum in CONNECT: the broker sends at most this many messages before
# their PUBACKs (else its own default: mosquitto's max_inflight_messages, 20), enough for
# the next groups to arrive while one commits.
RECEIVE_MAXIMUM = 2 * GROUP_MAX_MESSAGES
QUEUE_MAX = RECEIVE_MAXIMUM  # beyond this paho's thread waits (seen with mosquitto 2.0.11)


def _content_type(msg: mqtt.MQTTMessage) -> str | None:
    return getattr(msg.properties, "ContentType", None) if msg.properties else None


def message_signature(properties: Properties | None) -> str | None:
    """The device signature (``se-sig`` user property) a message carries, if any."""
    pairs = getattr(properties, "UserProperty", None) if properties is not None else None
    for name, value in pairs or ():
        if name == SIG_PROPERTY:
            return str(value)
    return None


# A message received, the connection it came on, and its sender if paho's thread checked it.
_Queued = tuple[mqtt.MQTTMessage, int, Sender | None]


@dataclass(slots=True)
class Counters:
    """What a worker has done since it started (for logs and tests)."""

    messages: int = 0
    new_events: int = 0
    duplicates: int = 0
    rejected: int = 0
    fanout_sent: int = 0
    confirmations: int = 0  # confirmations published (hq.ingest.delivery)
    resend_requests: int = 0  # requests to resend a range HQ lacks
    db_errors: int = 0
    commits: int = 0  # transactions that stored messages (fewer than messages: grouped)
    last_commit_at: float = 0.0  # time.monotonic() of the latest such commit (0: none yet)
    groups_split: int = 0  # groups rolled back and stored one message at a time


class IngestWorker:
    """One ingest worker: connects, subscribes, stores, acknowledges, fans out."""

    def __init__(self, store: EventStore, opts: BrokerOptions, client_id: str,
                 group: str = DEFAULT_GROUP,
                 session_expiry_s: int = DEFAULT_SESSION_EXPIRY_S,
                 signer: SigningKey | None = None, group_max: int = GROUP_MAX_MESSAGES,
                 group_max_s: float = GROUP_MAX_S) -> None:
        """Ingest into ``store`` from the broker in ``opts`` as ``client_id``.

        With a ``signer`` this worker is the fan-out sender (one per HQ). ``group_max`` and
        ``group_max_s`` bound a group commit (1: one message per transaction).
        """
        self.store = store
        self.signer = signer
        self.opts = opts
        self.group = group
        self.session_expiry_s = session_expiry_s
        self.counters = Counters()
        self.client = make_client(opts, client_id, manual_ack=True)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect
        self._subscribed = threading.Event()
        self._inflight: dict[int, int] = {}  # paho mid -> hq_outbox id
        self._acked_early: set[int] = set()  # PUBACKs that came before _inflight knew the mid
        self._delivery_mids: set[int] = set()  # confirmations and requests in flight
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self._sender: threading.Thread | None = None
        self._versions = delivery.Versions(store.clock)
        self.shared = True  # False once a broker without shared subscriptions said so
        self.group_max = max(1, group_max)
        self.group_max_s = group_max_s
        # (message, connection it came on, its sender): paho's thread in, the committer out
        self._queue: queue.Queue[_Queued] = queue.Queue(QUEUE_MAX)
        self._connection = 0  # counts CONNACKs: a message is acknowledged on its own one
        self._committer = threading.Thread(target=self._commit_loop, name="hq-ingest-commit",
                                           daemon=True)

    # -- life cycle --------------------------------------------------------------------

    def start(self) -> None:
        """Connect and run paho's network thread.

        Raises:
            BrokerError: the broker cannot be reached.
        """
        props = connect_properties(self.session_expiry_s)
        props.ReceiveMaximum = RECEIVE_MAXIMUM
        try:
            self.client.connect(self.opts.host, self.opts.port, keepalive=30,
                                clean_start=False, properties=props)
        except OSError as exc:
            raise BrokerError(f"cannot reach broker {self.opts.host}:{self.opts.port}: "
                              f"{exc}") from None
        self._committer.start()
        self.client.loop_start()
        if self.signer is not None:
            self._sender = threading.Thread(target=self._send_loop, name="hq-fanout",
                                            daemon=True)
            self._sender.start()

    @property
    def waiting(self) -> int:
        """Messages received and not yet taken into a transaction (none acknowledged)."""
        return self._queue.qsize()

    def wait_subscribed(self, timeout_s: float = 10.0) -> bool:
        """Whether the subscription was acknowledged within ``timeout_s``."""
        return self._subscribed.wait(timeout_s)

    def stop(self) -> None:
        """Disconnect (the session stays at the broker until it expires)."""
        self._stopping.set()
        self._wake.set()
        if self._sender is not None:
            self._sender.join(10)
        # Its group commits and is acknowledged; what is still queued is redelivered later.
        if self._committer.ident is not None:
            self._committer.join(10)
        self.client.disconnect()
        self.client.loop_stop()

    # -- callbacks (paho's network thread) ---------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _u: object, flags: mqtt.ConnectFlags,
                    rc: ReasonCode, props: Properties | None) -> None:
        if rc.is_failure:
            log.error("broker refused ingest worker: %s", rc)
            return
        self._connection += 1  # before any message of this connection is queued
        set_nodelay(client)
        topics = self.opts.topics
        opts = SubscribeOptions(qos=QOS)
        group: str | None = self.group
        if getattr(props, "SharedSubscriptionAvailable", 1) == 0:
            # e.g. ejabberd: a $share subscription would be refused. Unshared, each worker
            # gets every batch; UNIQUE(device, seq) keeps the events (and their fan-out)
            # once, but only one worker does useful work: run one.
            group = None
            log.warning("broker has no shared subscriptions (CONNACK SharedSubscription"
                        "Available 0): subscribing to events unshared, not as group %s; "
                        "run a single ingest worker on this broker", self.group)
        self.shared = group is not None
        # Events are shared among the group's workers; presence and reports are small,
        # retained, and idempotent to store, so every worker takes them (shared
        # subscriptions get no retained messages).
        client.subscribe([(topics.all_events(group), opts), (topics.all_status(), opts),
                          (topics.all_reported(), opts)])
        log.info("ingest connected (session present: %s)", flags.session_present)
        with self._lock:  # unacknowledged fan-out is sent again on this connection
            self._inflight.clear()
            self._acked_early.clear()
            self._delivery_mids.clear()
        self._connected.set()
        self._wake.set()

    def _on_subscribe(self, _c: mqtt.Client, _u: object, _mid: int, rcs: list[ReasonCode],
                      _p: Properties | None) -> None:
        failed = [str(rc) for rc in rcs if rc.is_failure]
        if failed:  # e.g. a broker without shared subscriptions
            log.error("broker refused ingest subscriptions: %s", ", ".join(failed))
            return
        log.info("subscribed (%s)", f"group {self.group}" if self.shared else "unshared")
        self._subscribed.set()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        # The signature is checked here, beside the committer: hashing and Ed25519 run
        # without the interpreter lock, so this is a share of a message's work off the
        # committer's thread (parsing is not: it would hold the lock the committer waits
        # for after each SQL step).
        try:
            sender: Sender | None = self.store.sender(msg.topic, bytes(msg.payload),
                                                      _content_type(msg),
                                                      message_signature(msg.properties))
        except Exception:  # a bug: the committer works it out again and records it
            log.exception("checking the sender of a message on %s failed", msg.topic)
            sender = None
        # Waits while the committer is QUEUE_MAX behind: the broker then holds the rest.
        while not self._stopping.is_set():
            try:
                self._queue.put((msg, self._connection, sender), timeout=0.2)
                return
            except queue.Full:
                continue

    # -- committer (its own thread): group commits, PUBACK after COMMIT -------------------

    def _commit_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                first = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self._commit_group(first)
            except Exception:  # a bug after the commit: what is unacknowledged comes again
                log.exception("ingest failed after storing a group; it goes on")

    def _commit_group(self, first: _Queued) -> None:
        """Store ``first`` and the messages waiting behind it in one transaction, then ack.

        A failure anywhere rolls the group back; its messages are then stored one
        transaction each, exactly as they would have been alone (``_store_retrying``).
        """
        group = [first]
        outcomes: list[Outcome] = []
        try:
            with self.store.group():
                outcomes.append(self._handle(first[0], first[2]))
                ends = time.monotonic() + self.group_max_s
                while len(group) < self.group_max and time.monotonic() < ends:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break  # nothing waiting: commit now, a quiet period waits for nothing
                    group.append(item)
                    outcomes.append(self._handle(item[0], item[2]))
        except Exception as exc:  # the database, or a bug on one message: one at a time
            self.counters.groups_split += 1
            if isinstance(exc, DbError):
                self.counters.db_errors += 1
            log.warning("a group of %d messages failed (%s: %s); storing them one by one",
                        len(group), type(exc).__name__, exc)
            for msg, connection, sender in group:
                outcome = self._store_retrying(msg, sender)
                if outcome is None:
                    return  # stopping with the database still down: redelivered later
                self.counters.commits += 1
                self.counters.last_commit_at = time.monotonic()
                self._done(msg, connection, outcome)
            return
        self.counters.commits += 1
        self.counters.last_commit_at = time.monotonic()
        for (msg, connection, _sender), outcome in zip(group, outcomes, strict=True):
            self._done(msg, connection, outcome)

    def _handle(self, msg: mqtt.MQTTMessage, sender: Sender | None) -> Outcome:
        return self.store.handle(msg.topic, bytes(msg.payload), _content_type(msg),
                                 bool(msg.retain), message_signature(msg.properties), sender)

    def _done(self, msg: mqtt.MQTTMessage, connection: int, outcome: Outcome) -> None:
        """After the commit that stored ``msg``: acknowledge it, count it, say what it did."""
        if connection == self._connection:
            # On a later connection the broker redelivers it (the session) or it is gone
            # (a clean session, whose packet ids mean other messages): never ack it there.
            self.client.ack(msg.mid, msg.qos)
        self.counters.new_events += outcome.new
        self.counters.duplicates += outcome.duplicates
        if outcome.handled is Handled.REJECTED:
            self.counters.rejected += 1
            log.warning("rejected a message on %s: %s", msg.topic, outcome.reject)
        # Last: whoever sees ``messages`` reach N also sees the other counts of those N.
        self.counters.messages += 1
        if outcome.catch_up_skipped:
            log.info("resync asked again on %s within %.0f s of the last catch-up: not "
                     "answered", msg.topic, CATCH_UP_EVERY_S)
        for code in outcome.conflicts:
            log.warning("conflict: coupon %s used over its limit (HQ's own record)", code)
        if outcome.fanout:
            self._wake.set()

    def _store_retrying(self, msg: mqtt.MQTTMessage, sender: Sender | None) -> Outcome | None:
        """Store a message in its own transaction, waiting out a database failure.

        While the database is down nothing can be stored anyway, so the committer waits
        (capped backoff) and the queue fills; paho's thread then waits too and the broker
        holds the rest. None: stopped before it worked.
        """
        payload = bytes(msg.payload)
        delay = DB_RETRY_FIRST_S
        while True:
            try:
                try:
                    return self._handle(msg, sender)
                except DbError:
                    raise
                except Exception as exc:  # a bug: keep the message whole, acknowledge it
                    log.exception("HQ failed on a message from %s; kept in hq_reject",
                                  msg.topic)
                    return self.store.record_failure(msg.topic, payload, exc)
            except DbError as exc:
                self.counters.db_errors += 1
                log.error("database failed on a message from %s (retry in %.1f s): %s",
                          msg.topic, delay, exc)
                if self._stopping.wait(delay):
                    return None
                delay = min(delay * 2, DB_RETRY_MAX_S)

    def _on_disconnect(self, _c: mqtt.Client, _u: object, _f: mqtt.DisconnectFlags,
                       rc: ReasonCode, _p: Properties | None) -> None:
        self._connected.clear()
        if not self._stopping.is_set():
            log.warning("ingest disconnected (%s); paho reconnects", rc)

    # -- fan-out sender (its own thread; only in the worker given a signer) -------------------

    def _send_loop(self) -> None:
        assert self.signer is not None
        while not self._stopping.is_set():
            self._wake.wait(FANOUT_POLL_S)
            self._wake.clear()
            if self._stopping.is_set() or not self._connected.is_set():
                continue
            try:
                with self._lock:
                    busy = list(self._inflight.values())
                pending = fanout.seal_pending(self.store.db, self.signer, self.store.clock(),
                                                 skip=busy)
            except DbError as exc:  # rows stay in hq_outbox; try again next round
                log.error("could not read fan-out to send: %s", exc)
                continue
            for o in pending:
                # Not under self._lock: paho calls on_publish holding its own mutex, which
                # publish() takes too. A PUBACK may beat the bookkeeping: see _acked_early.
                info = self.client.publish(o.topic, o.payload, qos=QOS,
                                           properties=json_properties())
                if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    log.warning("fan-out to %s not queued (%s); sent after reconnect",
                                o.topic, mqtt.error_string(info.rc))
                    break  # keep the order: nothing after it goes out before it
                with self._lock:
                    early = info.mid in self._acked_early
                    self._acked_early.discard(info.mid)
                    if not early:
                        self._inflight[info.mid] = o.id
                if early:
                    self._mark_sent(o.id)
            # After the fan-out: a remote use is what a till waits for, a confirmation not.
            self._send_delivery()

    def _send_delivery(self) -> None:
        """Publish the confirmations and resend requests due (``hq.ingest.delivery``).

        Not tracked to their PUBACK: one lost costs a resend by the box, or another request
        after the wait, never an event.
        """
        assert self.signer is not None
        now = self.store.clock()
        try:
            due = delivery.take_due(self.store.db, now, self.store.timing)
        except DbError as exc:
            log.error("could not read confirmations to send: %s", exc)
            return
        for d in due:
            topic, payload = delivery.sealed(d, self.signer, self._versions.next(), now,
                                             self.opts.topics)
            info = self.client.publish(topic, payload, qos=QOS, properties=json_properties())
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                log.warning("%s to %s not queued (%s)", d.kind.value, d.device,
                            mqtt.error_string(info.rc))
                continue
            with self._lock:  # its PUBACK is not an hq_outbox row's (see _on_publish)
                if info.mid in self._acked_early:
                    self._acked_early.discard(info.mid)
                else:
                    self._delivery_mids.add(info.mid)
            if d.kind is DataKind.CONFIRMED:
                self.counters.confirmations += 1
            else:
                self.counters.resend_requests += 1
                log.info("asked %s to resend %s-%s", d.device, d.body["first"],
                         d.body["last"])

    def _on_publish(self, _c: mqtt.Client, _u: object, mid: int, rc: ReasonCode,
                    _p: Properties) -> None:
        with self._lock:
            if mid in self._delivery_mids:
                self._delivery_mids.discard(mid)
                return
            row = self._inflight.get(mid)
            if row is None and not rc.is_failure:
                self._acked_early.add(mid)
        if row is None:
            return
        if not rc.is_failure:
            # Still in flight until marked: else the sender's next round, reading the
            # unsent rows while this mark waits for the database, would send it again.
            self._mark_sent(row)
        with self._lock:
            if self._inflight.get(mid) == row:
                del self._inflight[mid]

    def _mark_sent(self, row: int) -> None:
        try:
            fanout.mark_sent(self.store.db, [row], self.store.clock())
            self.counters.fanout_sent += 1
        except DbError as exc:  # sent again later; the box ignores a repeated version
            log.error("could not mark fan-out %d sent: %s", row, exc)
