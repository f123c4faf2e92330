"""The ingest worker: a shared MQTT 5 subscription into the HQ database.

Several workers may run with the same ``--group``: the broker splits the events among
them (``$share/GROUP/...``). Each worker keeps a persistent session (``clean_start`` off, a
session expiry) under a *stable* client id, so batches published while it is down wait for
it at the broker. A message is acknowledged (PUBACK, paho ``manual_ack``) only after its
transaction committed: a crash between the two means a redelivery, which the
``UNIQUE(device, seq)`` constraint makes a no-op.

Fan-out envelopes are committed to ``hq_outbox`` in the same transaction as the event
that caused them, then published; the row is marked sent on the broker's PUBACK, and a
worker publishes whatever is left unsent when it (re)connects.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from hq.broker import (
    BrokerError,
    BrokerOptions,
    connect_properties,
    json_properties,
    make_client,
    set_nodelay,
)
from hq.db import DbError
from hq.eventstore import EventStore, Handled, Outgoing
from sync.contract import QOS

log = logging.getLogger("hq.ingest")

DEFAULT_GROUP = "hq-ingest"
DEFAULT_SESSION_EXPIRY_S = 7 * 24 * 3600  # a week of HQ downtime before the broker forgets


@dataclass(slots=True)
class Counters:
    """What a worker has done since it started (for logs and tests)."""

    messages: int = 0
    new_events: int = 0
    duplicates: int = 0
    rejected: int = 0
    fanout_sent: int = 0
    db_errors: int = 0


class IngestWorker:
    """One ingest worker: connects, subscribes, stores, acknowledges, fans out."""

    def __init__(self, store: EventStore, opts: BrokerOptions, client_id: str,
                 group: str = DEFAULT_GROUP,
                 session_expiry_s: int = DEFAULT_SESSION_EXPIRY_S) -> None:
        """Ingest into ``store`` from the broker in ``opts`` as ``client_id``."""
        self.store = store
        self.opts = opts
        self.group = group
        self.session_expiry_s = session_expiry_s
        self.counters = Counters()
        self.client = make_client(opts, client_id, manual_ack=True)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self._subscribed = threading.Event()
        self._inflight: dict[int, int] = {}  # paho mid -> hq_outbox id
        self._lock = threading.Lock()

    # -- life cycle --------------------------------------------------------------------

    def start(self) -> None:
        """Connect and run paho's network thread.

        Raises:
            BrokerError: the broker cannot be reached.
        """
        try:
            self.client.connect(self.opts.host, self.opts.port, keepalive=30,
                                clean_start=False,
                                properties=connect_properties(self.session_expiry_s))
        except OSError as exc:
            raise BrokerError(f"cannot reach broker {self.opts.host}:{self.opts.port}: "
                              f"{exc}") from None
        self.client.loop_start()

    def wait_subscribed(self, timeout_s: float = 10.0) -> bool:
        """Whether the subscription was acknowledged within ``timeout_s``."""
        return self._subscribed.wait(timeout_s)

    def stop(self) -> None:
        """Disconnect (the session stays at the broker until it expires)."""
        self.client.disconnect()
        self.client.loop_stop()

    # -- callbacks (paho's network thread) ---------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _u: object, flags: mqtt.ConnectFlags,
                    rc: ReasonCode, _p: Properties | None) -> None:
        if rc.is_failure:
            log.error("broker refused ingest worker: %s", rc)
            return
        set_nodelay(client)
        topics = self.opts.topics
        opts = SubscribeOptions(qos=QOS)
        # Events are shared among the group's workers; presence and reports are small,
        # retained, and idempotent to store, so every worker takes them (shared
        # subscriptions get no retained messages).
        client.subscribe([(topics.all_events(self.group), opts), (topics.all_status(), opts),
                          (topics.all_reported(), opts)])
        log.info("ingest connected (session present: %s)", flags.session_present)
        try:
            self._send(self.store.pending_outgoing())
        except DbError as exc:  # they stay in hq_outbox for the next connect
            log.error("could not read unsent fan-out: %s", exc)

    def _on_subscribe(self, _c: mqtt.Client, _u: object, _mid: int, rcs: list[ReasonCode],
                      _p: Properties | None) -> None:
        failed = [str(rc) for rc in rcs if rc.is_failure]
        if failed:  # e.g. a broker without shared subscriptions
            log.error("broker refused ingest subscriptions: %s", ", ".join(failed))
            return
        log.info("subscribed (group %s)", self.group)
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        content_type = getattr(msg.properties, "ContentType", None) if msg.properties else None
        try:
            outcome = self.store.handle(msg.topic, bytes(msg.payload), content_type,
                                        bool(msg.retain))
        except DbError as exc:
            # Not acknowledged: the broker redelivers it on the next session resume.
            self.counters.db_errors += 1
            log.error("database failed on a message from %s, not acknowledged: %s",
                      msg.topic, exc)
            return
        except Exception:  # a bug must not stop the network thread; keep it unacknowledged
            self.counters.db_errors += 1
            log.exception("unexpected failure on a message from %s, not acknowledged",
                          msg.topic)
            return
        client.ack(msg.mid, msg.qos)
        self.counters.messages += 1
        self.counters.new_events += outcome.new
        self.counters.duplicates += outcome.duplicates
        if outcome.handled is Handled.REJECTED:
            self.counters.rejected += 1
            log.warning("rejected a message on %s: %s", msg.topic, outcome.reject)
        for code in outcome.conflicts:
            log.warning("conflict: coupon %s used over its limit at several stores", code)
        self._send(outcome.outgoing)

    def _send(self, outgoing: list[Outgoing]) -> None:
        for o in outgoing:
            info = self.client.publish(o.topic, o.payload, qos=QOS, properties=json_properties())
            if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                with self._lock:
                    self._inflight[info.mid] = o.id
            else:  # stays unsent in hq_outbox; published again on the next connect
                log.warning("fan-out to %s not queued: %s", o.topic, mqtt.error_string(info.rc))

    def _on_publish(self, _c: mqtt.Client, _u: object, mid: int, rc: ReasonCode,
                    _p: Properties) -> None:
        with self._lock:
            row = self._inflight.pop(mid, None)
        if row is None or rc.is_failure:
            return
        try:
            self.store.mark_sent([row])
            self.counters.fanout_sent += 1
        except DbError as exc:  # sent again later; the box ignores a repeated version
            log.error("could not mark fan-out %d sent: %s", row, exc)
