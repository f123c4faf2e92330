"""What HQ does with each message from a box: store it once, and notice what is wrong.

A message's writes are one unit: an event batch's new events, the device's gaps, the coupon
use counts, any conflict and the fan-out it causes (rows in ``hq_outbox``) are committed
together, and only then does the ingest worker acknowledge the message (``hq.ingest.worker``). A
redelivered batch is a no-op because ``hq_event`` has ``UNIQUE(device, seq)``. Alone, each
message is its own transaction; inside :meth:`EventStore.group` (the worker's group commit)
several messages share one, each handled exactly as it would be alone, in order.

Fan-out rows get their version and signature only when they are sent
(:func:`hq.publishing.fanout.seal_pending`, called by the one fan-out sender), so versions
reach each store in the order they were given, whichever worker ingested the cause.

A malformed message never raises out of :meth:`EventStore.handle`: it becomes a row in
``hq_reject`` with a :class:`RejectReason` and a short preview, and is acknowledged, so the
broker does not redeliver it forever.
"""

from __future__ import annotations

import base64
import contextlib
import enum
import json
import math
import operator
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from edge.coalesce import Coalescer
from edge.events import EventType
from edge.hqdata import encode_workshops
from hq.db import Cursor, Database
from hq.events import UNSET, Received, ReceivedBatch, from_dicts, read_batch
from hq.ingest import delivery
from hq.ingest.delivery import DeliveryTiming
from hq.issuing.issued import issued
from hq.issuing.registry import DeviceRegistry
from hq.publishing import fanout
from hq.publishing.workshops import CATCH_UP_SESSIONS, live_sessions
from hq.reports import aggregates
from sync.contract import (
    MAX_BATCH_EVENTS,
    MAX_MESSAGE_BYTES,
    MAX_SEQ,
    ContractError,
    DataKind,
    EventBatch,
    OrderStatus,
    OrderUpdate,
    Presence,
    RemoteUse,
    Reported,
    Topics,
    encode_orders,
    encode_remote_uses,
    verify_device_message,
)

PREVIEW_BYTES = 120
MAX_REJECT_KEYS = 10_000  # (device, reason) pairs remembered for keeping payloads
RAW_KEEP_BYTES = 1 << 20  # a rejected payload up to 1 MiB is kept whole (base64)
MAX_ID_CHARS = 128
CATCH_UP_CHUNK = 500  # orders or uses per catch-up envelope
CATCH_UP_USES_S = 90 * 86400  # remote uses older than this are left out of a catch-up
# At most one catch-up per device per this long: each costs HQ a scan and the store a
# burst of envelopes, and a report asking for one can be replayed by anyone who can publish.
CATCH_UP_EVERY_S = 60.0


class RejectReason(enum.StrEnum):
    """Why a message (or one event in it) was not taken."""

    BAD_TOPIC = "bad_topic"  # not a device topic under our root, or an unknown leaf
    BAD_BATCH = "bad_batch"  # not an event batch: compression, JSON, version, shape
    TOPIC_MISMATCH = "topic_mismatch"  # batch or event names another store/device than its topic
    BAD_SEQ = "bad_seq"  # a sequence number below 1 or absurdly large
    BAD_EVENT = "bad_event"  # an event field out of range (time, id, type), or no events
    SEQ_REUSED = "seq_reused"  # a (device, seq) already stored with another event id
    BAD_PRESENCE = "bad_presence"
    BAD_REPORTED = "bad_reported"
    INTERNAL_ERROR = "internal_error"  # HQ failed on it (a bug): kept whole to re-ingest
    # Authentication (docs/security.md): checked before anything is parsed or stored.
    TOO_LARGE = "too_large"  # payload over MAX_MESSAGE_BYTES
    UNKNOWN_DEVICE = "unknown_device"  # no device registered under the topic's device id
    WRONG_STORE = "wrong_store"  # the device is registered for another store than the topic's
    UNSIGNED = "unsigned"  # no se-sig user property
    BAD_SIGNATURE = "bad_signature"  # not signed by the device's registered key
    TOO_MANY_EVENTS = "too_many_events"  # a batch over MAX_BATCH_EVENTS


class Handled(enum.StrEnum):
    """What :meth:`EventStore.handle` did with a message."""

    EVENTS = "events"
    PRESENCE = "presence"
    REPORTED = "reported"
    REJECTED = "rejected"


@dataclass(slots=True)
class Outcome:
    """The result of one message."""

    handled: Handled
    new: int = 0
    duplicates: int = 0
    gaps_opened: int = 0
    seqs_filled: int = 0
    conflicts: list[str] = field(default_factory=list)
    fanout: int = 0  # fan-out rows committed to hq_outbox
    reject: RejectReason | None = None
    catch_up_skipped: bool = False  # a resync asked again within CATCH_UP_EVERY_S


@dataclass(frozen=True, slots=True)
class Sender:
    """Whom a message is from, as its topic and signature tell (:meth:`EventStore.sender`)."""

    store: str | None  # None: not a device topic
    device: str | None
    leaf: str
    refused: RejectReason | None = None  # why HQ refuses it on those grounds, if it does
    detail: str = ""


@dataclass(slots=True)
class _UseChange:
    code_id: str
    campaign_id: str | None
    delta: int
    at: float
    event_id: str


class EventStore:
    """HQ's handling of box messages over one :class:`~hq.db.Database`."""

    def __init__(self, db: Database, topics: Topics, devices: DeviceRegistry,
                 clock: Callable[[], float] = time.time,
                 timing: DeliveryTiming | None = None) -> None:
        """Store into ``db``, with ``topics`` naming the stores' data topics.

        ``devices``: the registry a message's signature is checked against. ``timing``: how
        fast confirmations go out and missing events are asked for.
        """
        self.db = db
        self.topics = topics
        self.devices = devices
        self.clock = clock
        # Every rejection keeps its row; the payload itself only for the first of a device
        # and reason each minute (a flooding device cannot fill the disk with copies).
        self._raw_kept: Coalescer[tuple[str, RejectReason]] = Coalescer()
        self.timing = timing or DeliveryTiming()
        self._group = threading.local()  # the open group transaction of this thread, if any
        # Stores whose hq_store row a committed transaction of ours wrote: not written
        # again (a round trip per message on PostgreSQL). Rows are never deleted.
        self._stores_known: set[str] = set()

    # -- transactions ---------------------------------------------------------------

    @contextlib.contextmanager
    def group(self) -> Iterator[None]:
        """One transaction for every message this thread handles inside (group commit).

        Each message is handled as alone, seeing the ones before it; all commit together on
        exit or, on any exception, none does (the caller then handles them one by one).

        Raises:
            hq.db.DbError: the database failed (nothing of the group is stored).
        """
        kept: list[tuple[str, RejectReason]] = []
        tally = aggregates.Tally()
        stores: set[str] = set()
        # Pipelined (PostgreSQL): the server stores one message while this thread checks
        # the next; what reads a message's results waits in ``later`` until then.
        with self.db.tx(pipelined=True) as cur:
            self._group.cur, self._group.kept, self._group.tally = cur, kept, tally
            self._group.stores, self._group.later = stores, []
            try:
                yield
                self._run_later()
                # The dashboard's figures of every message in the group: a few upserts
                # per group, not per message, in the same transaction.
                tally.write(cur)
            except BaseException:
                # Rolled back: the payloads these rejects kept are not kept after all, so
                # the same rejects handled again keep theirs.
                for key in kept:
                    self._raw_kept.forget(key)
                raise
            finally:
                self._group.cur = self._group.kept = self._group.tally = None
                self._group.stores = self._group.later = None
        self._stores_known |= stores  # committed

    def _later(self, rest: Callable[[], None]) -> None:
        """Run ``rest`` (a message's last step): now, or before a group's next statement."""
        later = getattr(self._group, "later", None)
        if later is None:
            rest()
        else:
            later.append(rest)

    def _run_later(self) -> None:
        later = getattr(self._group, "later", None)
        while later:
            later.pop(0)()

    @contextlib.contextmanager
    def _tx(self, later_first: bool = True) -> Iterator[Cursor]:
        """The open group's cursor, else a transaction of its own.

        In a group, the previous message's last step runs first, unless ``later_first`` is
        False: then the caller runs it (``_run_later``) before its statements that need it.
        """
        cur = getattr(self._group, "cur", None)
        if cur is not None:
            if later_first:
                self._run_later()
            yield cur
            return
        stores: set[str] = set()
        with self.db.tx() as cur:
            self._group.stores = stores
            try:
                yield cur
            finally:
                self._group.stores = None
        self._stores_known |= stores  # committed

    # -- dispatch ------------------------------------------------------------------

    def handle(self, topic: str, payload: bytes, content_type: str | None = None,
               retained: bool = False, signature: str | None = None,
               sender: Sender | None = None) -> Outcome:
        """Store one message from a box, or record why it was rejected.

        ``retained`` (a retained status or report replayed on subscribe) is stored but does
        not count as the device being seen now. ``signature``: the message's ``se-sig``
        user property; nothing is parsed or stored unless it is the registered device's.
        ``sender``: :meth:`sender` of this very message if the caller has it (the ingest
        worker checks signatures on paho's thread); else it is worked out here.

        Raises:
            hq.db.DbError: the database failed (the caller must not acknowledge).
        """
        if sender is None:
            sender = self.sender(topic, payload, content_type, signature)
        store, device, leaf = sender.store, sender.device, sender.leaf
        if sender.refused is not None or store is None or device is None:
            return self._reject(topic, store, device, sender.refused or RejectReason.BAD_TOPIC,
                                sender.detail, payload)
        if leaf == "events":
            try:
                batch = read_batch(payload, content_type)
            except ContractError as exc:
                return self._reject(topic, store, device, RejectReason.BAD_BATCH, str(exc),
                                    payload)
            if len(batch.events) > MAX_BATCH_EVENTS:
                return self._reject(topic, store, device, RejectReason.TOO_MANY_EVENTS,
                                    f"{len(batch.events)} events in one batch; at most "
                                    f"{MAX_BATCH_EVENTS}", payload)
            mismatch = _mismatch(batch, store, device)
            if mismatch:
                return self._reject(topic, store, device, RejectReason.TOPIC_MISMATCH, mismatch,
                                    payload)
            bad = [e.seq for e in batch.events if not 1 <= e.seq <= MAX_SEQ]
            if bad:
                return self._reject(topic, store, device, RejectReason.BAD_SEQ,
                                    f"sequence numbers run from 1 to {MAX_SEQ}, got {bad[:5]}",
                                    payload)
            problem = _bad_events(batch.events)
            if problem:
                return self._reject(topic, store, device, RejectReason.BAD_EVENT, problem,
                                    payload)
            return self.ingest_batch(store, device, batch)
        if leaf == "status":
            try:
                presence = Presence.decode(payload)
            except ContractError as exc:
                return self._reject(topic, store, device, RejectReason.BAD_PRESENCE, str(exc),
                                    payload)
            self.record_presence(store, device, presence, seen=not retained)
            return Outcome(Handled.PRESENCE)
        if leaf == "reported":
            try:
                reported = Reported.decode(payload)
            except ContractError as exc:
                return self._reject(topic, store, device, RejectReason.BAD_REPORTED, str(exc),
                                    payload)
            queued = self.record_reported(store, device, reported, seen=not retained)
            return Outcome(Handled.REPORTED, fanout=max(queued, 0),
                           catch_up_skipped=queued < 0)
        raise AssertionError(f"unhandled leaf {leaf!r}")  # the leaves are checked above

    def sender(self, topic: str, payload: bytes, content_type: str | None,
               signature: str | None) -> Sender:
        """Whom a message is from, and whether HQ refuses it for that (no database).

        Its topic must be a device topic, its size within bounds, and its signature the
        key registered for that device and store: checked before anything is parsed or
        decompressed, so a stranger's message costs one dictionary lookup and, at most, one
        signature check. Safe on any thread (the ingest worker calls it on paho's, where
        the hashing and Ed25519 run without the interpreter lock).
        """
        try:
            store, device, leaf = self.topics.parse_device_topic(topic)
        except ContractError as exc:
            return Sender(None, None, "", RejectReason.BAD_TOPIC, str(exc))
        if leaf not in ("events", "status", "reported"):
            return Sender(store, device, leaf, RejectReason.BAD_TOPIC,
                          f"unknown device topic leaf {leaf!r}")
        if len(payload) > MAX_MESSAGE_BYTES:
            return Sender(store, device, leaf, RejectReason.TOO_LARGE,
                          f"{len(payload)} bytes; a box message is at most "
                          f"{MAX_MESSAGE_BYTES}")
        for fresh in (False, True):  # refused: look again if the registry file changed
            if fresh and not self.devices.refresh():
                break
            reason, detail = self._check_signature(topic, store, device, content_type, payload,
                                                   signature)
            if reason is None:
                return Sender(store, device, leaf)
        return Sender(store, device, leaf, reason, detail)

    def _check_signature(self, topic: str, store: str, device: str, content_type: str | None,
                         payload: bytes, signature: str | None
                         ) -> tuple[RejectReason | None, str]:
        registered = self.devices.lookup(device)
        if registered is None:
            return (RejectReason.UNKNOWN_DEVICE,
                    f"device {device!r} is not registered at HQ (edge-hq register-device)")
        if registered.store != store:
            return (RejectReason.WRONG_STORE, f"device {device!r} is registered for store "
                    f"{registered.store!r}, not {store!r}")
        if not signature:
            return RejectReason.UNSIGNED, "no se-sig user property: not signed"
        if not verify_device_message(registered.public_key, topic, content_type, payload,
                                     signature):
            return (RejectReason.BAD_SIGNATURE,
                    f"not signed by the key registered for device {device!r}")
        return None, ""

    # -- events --------------------------------------------------------------------

    def ingest_batch(self, store: str, device: str, batch: EventBatch | ReceivedBatch
                     ) -> Outcome:
        """Store a batch's new events; gaps, use counts, conflicts and fan-out with them.

        The batch as read off the wire (``hq.events.read_batch``), or in the contract's
        dict form; either is stored as it is, unchecked (``handle`` checks).
        """
        now = self.clock()
        out = Outcome(Handled.EVENTS)
        received = (batch.events if isinstance(batch, ReceivedBatch)
                    else from_dicts(batch.events, batch.strict))
        events = sorted(received, key=_SEQ)
        with self._tx(later_first=False) as cur:
            # The device row is asked for before the previous message's last step reads
            # its delivery row: in pipeline mode the server sends both back at once, a
            # round trip less per message. The device row is not what that step touches.
            touched = self._send_touch(cur, store, device, now)
            self._run_later()
            max_seq = touched()
            if _follows(events, max_seq):
                # The usual batch: the device's next seqs, each once. Nothing stored to
                # look up, no gap opened or filled.
                fresh = events
                rows = [_row(store, device, e, now) for e in events]
                changes = [c for e in events if (c := _use_change(e)) is not None]
                out.new = len(events)
                max_seq = events[-1].seq
            else:
                rows, fresh, changes, max_seq = self._sort_out(cur, store, device, events,
                                                               max_seq, now, out)
            if rows:
                cur.executemany(
                    "INSERT INTO hq_event(device, store, seq, event_id, type, at, clock_trusted,"
                    " body, received_at, kind, code_id, campaign_id, accepted, reason)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
                # the dashboard's figures commit with the events they count
                aggregates.count_events(cur, store, fresh, getattr(self._group, "tally", None))
            cur.execute("UPDATE hq_device SET max_seq=? WHERE device=?", (max_seq, device))
            told: dict[str, dict[tuple[str, str], RemoteUse]] = {}
            for change in changes:
                self._apply_use(cur, store, device, change, now, out, told)
            # One envelope per store told, whatever the batch held (a batch of 1,000 uses of
            # codes valid everywhere is not 1,000 envelopes per store); the latest count of
            # each (code, place) wins.
            for target in sorted(told):
                lines = list(told[target].values())
                for i in range(0, len(lines), CATCH_UP_CHUNK):
                    self._enqueue(cur, target, DataKind.REMOTE_USES,
                                  encode_remote_uses(lines[i:i + CATCH_UP_CHUNK]), now)
                    out.fanout += 1
            # Even a batch of duplicates (a resend) owes the device a confirmation.
            self._later(delivery.note_events(cur, store, device, max_seq, now, self.timing))
        return out

    def _sort_out(self, cur: Cursor, store: str, device: str, events: list[Received],
                  max_seq: int, now: float, out: Outcome
                  ) -> tuple[list[tuple[Any, ...]], list[Received], list[_UseChange], int]:
        """A batch that is not simply the device's next seqs: duplicates, gaps, late seqs.

        Returns the rows to insert, their events, the use changes and the new highest seq;
        counts into ``out``.
        """
        changes: list[_UseChange] = []
        # The device row is locked now, so the seqs already stored cannot change under
        # us: one range query finds the duplicates, one executemany stores the rest. A
        # batch wholly past the device's highest seq (after a gap) has none to find.
        stored: dict[int, str] = {}
        if events[0].seq <= max_seq:
            cur.execute("SELECT seq, event_id FROM hq_event WHERE device=? AND seq>=? AND"
                        " seq<=?", (device, events[0].seq, events[-1].seq))
            stored = {int(r[0]): str(r[1]) for r in cur.fetchall()}
        rows = []
        fresh: list[Received] = []
        for e in events:
            seq = e.seq
            if seq in stored:
                out.duplicates += 1
                if stored[seq] != e.id:
                    self._insert_reject(
                        cur, now, self.topics.events(store, device), store, device,
                        RejectReason.SEQ_REUSED, f"seq {seq} is event {stored[seq]} here, "
                        f"but {e.id} in this batch", e.id.encode())
                continue
            stored[seq] = e.id
            out.new += 1
            rows.append(_row(store, device, e, now))
            fresh.append(e)
            if seq > max_seq + 1:
                cur.execute("INSERT INTO hq_gap(device, store, seq_from, seq_to, missing,"
                            " found_at) VALUES (?,?,?,?,?,?)",
                            (device, store, max_seq + 1, seq - 1, seq - 1 - max_seq, now))
                out.gaps_opened += 1
            if seq > max_seq:
                max_seq = seq
            else:  # a late seq: it fills (part of) a gap opened before
                cur.execute("UPDATE hq_gap SET missing=missing-1, filled_at=CASE WHEN"
                            " missing=1 THEN ? ELSE filled_at END WHERE device=? AND"
                            " seq_from<=? AND seq_to>=? AND missing>0",
                            (now, device, seq, seq))
                out.seqs_filled += cur.rowcount
            change = _use_change(e)
            if change is not None:
                changes.append(change)
        return rows, fresh, changes, max_seq

    def _touch_device(self, cur: Cursor, store: str, device: str, now: float,
                      seen: bool = True) -> int:
        """Create or update the device row first: it is the lock that orders its batches.

        Returns the device's highest seq stored. One upsert (a round trip counts on
        PostgreSQL: this runs for every message).
        """
        return self._send_touch(cur, store, device, now, seen)()

    def _send_touch(self, cur: Cursor, store: str, device: str, now: float,
                    seen: bool = True) -> Callable[[], int]:
        """:meth:`_touch_device`, its result read when the returned function is called."""
        mine = cur.another()  # its row is read later: other statements may run on ``cur``
        if seen:
            mine.execute("INSERT INTO hq_device(device, store, max_seq, last_seen) VALUES"
                         " (?,?,0,?) ON CONFLICT (device) DO UPDATE SET store=excluded.store,"
                         " last_seen=excluded.last_seen RETURNING max_seq", (device, store, now))
        else:  # still the row lock, without claiming the device was heard from now
            mine.execute("INSERT INTO hq_device(device, store, max_seq) VALUES (?,?,0)"
                         " ON CONFLICT (device) DO UPDATE SET store=excluded.store"
                         " RETURNING max_seq", (device, store))
        if store not in self._stores_known:
            cur.execute("INSERT INTO hq_store(store, first_seen) VALUES (?, ?)"
                        " ON CONFLICT (store) DO NOTHING", (store, now))
            pending = getattr(self._group, "stores", None)
            if pending is not None:  # known once its transaction commits
                pending.add(store)
        return lambda: int(mine.fetchone()[0])

    # -- coupon uses, conflicts, fan-out ---------------------------------------------

    def _apply_use(self, cur: Cursor, store: str, device: str, c: _UseChange, now: float,
                   out: Outcome, told: dict[str, dict[tuple[str, str], RemoteUse]]) -> None:
        """Count a use (or void) per store and per device; conflicts and fan-out.

        The limits are HQ's own (``hq_issued``), never the facts the box reported. Over-use
        is a conflict however few stores it took; the other stores are told the store's
        count, the store's other boxes this device's count (``RemoteUse.device``), in
        ``told`` (store -> lines), sent once per batch by the caller.
        """
        rec = issued(cur, c.code_id)
        eligible = ",".join(rec.eligible)
        cur.execute(
            "INSERT INTO hq_code_use(code_id, store, campaign_id, uses, max_uses, last_at,"
            " last_event, eligible) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (code_id, store)"
            " DO UPDATE SET uses=hq_code_use.uses+excluded.uses, last_at=excluded.last_at,"
            " last_event=excluded.last_event, max_uses=excluded.max_uses,"
            " eligible=excluded.eligible",
            (c.code_id, store, c.campaign_id, c.delta, rec.max_uses, c.at, c.event_id,
             eligible))
        cur.execute(
            "INSERT INTO hq_device_use(code_id, device, store, uses, last_at) VALUES"
            " (?,?,?,?,?) ON CONFLICT (code_id, device) DO UPDATE SET"
            " uses=hq_device_use.uses+excluded.uses, store=excluded.store,"
            " last_at=excluded.last_at", (c.code_id, device, store, c.delta, c.at))
        cur.execute("SELECT store, device, uses FROM hq_device_use WHERE code_id=?"
                    " ORDER BY store, device", (c.code_id,))
        rows = [(str(r[0]), str(r[1]), max(int(r[2]), 0)) for r in cur.fetchall()]
        total = sum(u for _s, _d, u in rows)
        here = sum(u for s, _d, u in rows if s == store)
        mine = next(u for s, d, u in rows if d == device and s == store)
        if total > rec.max_uses:
            users = sorted({s for s, _d, u in rows if u > 0})
            cur.execute("INSERT INTO hq_conflict(code_id, stores, uses, max_uses, found_at,"
                        " updated_at) VALUES (?,?,?,?,?,?) ON CONFLICT (code_id) DO UPDATE SET"
                        " stores=excluded.stores, uses=excluded.uses,"
                        " max_uses=excluded.max_uses, updated_at=excluded.updated_at",
                        (c.code_id, ",".join(users), total, rec.max_uses, now, now))
            out.conflicts.append(c.code_id)
        targets = rec.eligible or tuple(self._known_stores(cur))
        use = RemoteUse(c.code_id, store, here, c.at)
        for target in set(targets) - {store}:
            told.setdefault(target, {})[(use.code_id, use.place)] = use
        if any(d != device for d in self.devices.devices_of(store)):
            mine_use = RemoteUse(c.code_id, store, mine, c.at, device)
            told.setdefault(store, {})[(mine_use.code_id, mine_use.place)] = mine_use

    def _known_stores(self, cur: Cursor) -> list[str]:
        cur.execute("SELECT store FROM hq_store ORDER BY store")
        return [str(r[0]) for r in cur.fetchall()]

    def _enqueue(self, cur: Cursor, store: str, kind: DataKind, body: dict[str, Any],
                 now: float) -> None:
        fanout.enqueue(cur, self.topics.data(store), store, kind, body, now)

    def add_stores(self, stores: Iterable[str]) -> None:
        """Make stores known (fan-out targets for coupons valid everywhere)."""
        now = self.clock()
        with self.db.tx() as cur:
            for s in stores:
                cur.execute("INSERT INTO hq_store(store, first_seen) VALUES (?, ?)"
                            " ON CONFLICT (store) DO NOTHING", (s, now))

    # -- presence and reports ----------------------------------------------------------

    def record_presence(self, store: str, device: str, p: Presence, seen: bool = True) -> None:
        """Keep a device's latest presence (online/offline, versions, backlog)."""
        now = self.clock()
        with self._tx() as cur:
            max_seq = self._touch_device(cur, store, device, now, seen)
            # A retained presence counts too: after a restore from a backup it is how HQ
            # learns what each box wrote since.
            delivery.note_last_seq(cur, store, device, p.last_seq, max_seq, now, self.timing,
                                   p.unconfirmed)
            # ``alarm`` came after v1; Presence.decode reads an older message as False.
            cur.execute("UPDATE hq_device SET state=?, software=?, config_version=?, backlog=?,"
                        " clock_trusted=?, presence_at=?, alarm=? WHERE device=?",
                        (p.state.value, p.software, p.config_version, p.backlog,
                         int(p.clock_trusted), p.at or now, int(p.alarm), device))

    def record_reported(self, store: str, device: str, r: Reported, seen: bool = True) -> int:
        """Keep the config version a device last reported applied (or refused).

        A live report asking for a resync (the broker held no session for the box) queues
        its catch-up in the same transaction; a retained one replayed on subscribe does
        not (it was answered when it was new), nor does one within ``CATCH_UP_EVERY_S`` of
        the device's last catch-up. Returns the catch-up rows queued, -1 when skipped so.
        """
        now = self.clock()
        with self._tx() as cur:
            max_seq = self._touch_device(cur, store, device, now, seen)
            delivery.note_last_seq(cur, store, device, r.last_seq, max_seq, now, self.timing)
            # ``data_versions`` came after v1; Reported.decode reads an older message as {}.
            cur.execute("UPDATE hq_device SET reported_version=?, reported_rejected=?,"
                        " reported_error=?, reported_at=?, data_versions=? WHERE device=?",
                        (r.applied_version, r.last_rejected_version, r.last_error,
                         r.at or now, json.dumps(r.data_versions), device))
            if not (r.resync and seen):
                return 0
            cur.execute("SELECT last_at FROM hq_catch_up WHERE device=?", (device,))
            last = cur.fetchone()
            if last is not None and now - float(last[0]) < CATCH_UP_EVERY_S:
                return -1
            cur.execute("INSERT INTO hq_catch_up(device, last_at) VALUES (?,?) ON CONFLICT"
                        " (device) DO UPDATE SET last_at=excluded.last_at", (device, now))
            return self._enqueue_catch_up(cur, store, device, now)

    def _enqueue_catch_up(self, cur: Cursor, store: str, device: str, now: float) -> int:
        """Queue what a box without a session missed; returns the envelopes queued.

        The store's orders whose window has not ended (those HQ saw collected there marked
        so), the uses at other stores of codes valid there, the uses by the store's
        other boxes (last 90 days), and its workshop sessions still open for check-in.
        """
        cur.execute("SELECT code_id FROM hq_event WHERE store=? AND kind='pickup' AND"
                    " code_id IS NOT NULL AND ((type=? AND accepted=1) OR type=?)"
                    " GROUP BY code_id HAVING SUM(CASE WHEN type=? THEN 1 ELSE -1 END) > 0",
                    (store, EventType.DECISION.value, EventType.VOID.value,
                     EventType.DECISION.value))
        collected = {str(r[0]) for r in cur.fetchall()}
        cur.execute("SELECT body FROM hq_order WHERE store=? AND window_end>=? ORDER BY order_id",
                    (store, int(now)))
        orders = []
        for (body,) in cur.fetchall():
            order = OrderUpdate.from_dict(json.loads(body))
            if "P:" + order.order_id in collected and order.status is OrderStatus.WAITING:
                order = OrderUpdate(order.order_id, order.number, order.window_start,
                                    order.window_end, order.items, order.customer,
                                    OrderStatus.COLLECTED)
            orders.append(order)
        cur.execute("SELECT code_id, store, uses, last_at, eligible FROM hq_code_use WHERE"
                    " store<>? AND uses>0 AND last_at>=? ORDER BY code_id, store",
                    (store, now - CATCH_UP_USES_S))
        uses = [RemoteUse(str(c), str(s), int(u), float(at)) for c, s, u, at, eligible
                in cur.fetchall() if not eligible or store in str(eligible).split(",")]
        cur.execute("SELECT code_id, device, uses, last_at FROM hq_device_use WHERE store=?"
                    " AND device<>? AND uses>0 AND last_at>=? ORDER BY code_id, device",
                    (store, device, now - CATCH_UP_USES_S))
        uses += [RemoteUse(str(c), store, int(u), float(at), str(d))
                 for c, d, u, at in cur.fetchall()]
        queued = 0
        for i in range(0, len(orders), CATCH_UP_CHUNK):
            self._enqueue(cur, store, DataKind.ORDERS,
                          encode_orders(orders[i:i + CATCH_UP_CHUNK]), now)
            queued += 1
        for i in range(0, len(uses), CATCH_UP_CHUNK):
            self._enqueue(cur, store, DataKind.REMOTE_USES,
                          encode_remote_uses(uses[i:i + CATCH_UP_CHUNK]), now)
            queued += 1
        # Workshop sessions still open for check-in, with their cancelled tickets: a box
        # that missed them would check a cancelled ticket in.
        sessions = live_sessions(cur, store, now)
        for i in range(0, len(sessions), CATCH_UP_SESSIONS):
            self._enqueue(cur, store, DataKind.WORKSHOPS,
                          encode_workshops(sessions[i:i + CATCH_UP_SESSIONS]), now)
            queued += 1
        return queued

    # -- rejects -----------------------------------------------------------------------

    def record_failure(self, topic: str, payload: bytes, error: Exception) -> Outcome:
        """Keep a message HQ failed on (not the database: a bug) so it can be re-ingested.

        Raises:
            hq.db.DbError: the database failed too.
        """
        store: str | None = None
        device: str | None = None
        with contextlib.suppress(ContractError):  # else recorded without store or device
            store, device, _leaf = self.topics.parse_device_topic(topic)
        return self._reject(topic, store, device, RejectReason.INTERNAL_ERROR,
                            f"{type(error).__name__}: {error}", payload)

    def _reject(self, topic: str, store: str | None, device: str | None, reason: RejectReason,
                detail: str, payload: bytes) -> Outcome:
        now = self.clock()
        if reason is not RejectReason.INTERNAL_ERROR:  # those are kept whole to re-ingest
            self._raw_kept.due(now)  # forget ended minutes (memory stays bounded)
            if len(self._raw_kept) > MAX_REJECT_KEYS:
                self._raw_kept = Coalescer()
            key = (device or topic[:300], reason)
            if not self._raw_kept.admit(key, now):
                detail = f"{detail[:400]} (payload not kept: repeated within a minute)"
                payload = payload[:PREVIEW_BYTES]
            elif (kept := getattr(self._group, "kept", None)) is not None:
                kept.append(key)
        with self._tx() as cur:
            self._insert_reject(cur, now, topic, store, device, reason, detail, payload)
        return Outcome(Handled.REJECTED, reject=reason)

    @staticmethod
    def _insert_reject(cur: Cursor, now: float, topic: str, store: str | None,
                       device: str | None, reason: RejectReason, detail: str,
                       payload: bytes) -> None:
        raw: str | None = (base64.b64encode(payload).decode("ascii")
                           if len(payload) <= RAW_KEEP_BYTES else None)
        cur.execute("INSERT INTO hq_reject(received_at, topic, store, device, reason, detail,"
                    " preview, raw) VALUES (?,?,?,?,?,?,?,?)",
                    (now, topic[:300], store, device, reason.value, detail[:500],
                     preview(payload), raw))


def preview(payload: bytes) -> str:
    """A short, printable trace of a payload: its size and first bytes."""
    head = payload[:PREVIEW_BYTES].decode("utf-8", "backslashreplace")
    head = head.encode("unicode_escape").decode("ascii")
    return f"<{len(payload)} bytes> {head}"


def _follows(events: list[Received], max_seq: int) -> bool:
    """Whether ``events`` (sorted by seq) are exactly the seqs after ``max_seq``, each once."""
    first, last = events[0].seq, events[-1].seq
    return (first == max_seq + 1 and last - first == len(events) - 1
            and len({e.seq for e in events}) == len(events))


def _row(store: str, device: str, e: Received, now: float) -> tuple[Any, ...]:
    """An ``hq_event`` row, with the decision fields lifted into columns."""
    f = e.lifted
    accepted, kind, code_id, campaign_id, reason = (f.accepted, f.kind, f.code_id,
                                                    f.campaign_id, f.reason)
    # Inline None-or-str (``_text``): this runs for every event HQ stores.
    return (device, store, e.seq, e.id, e.type, float(e.at), 1 if e.clock_trusted else 0,
            e.body, now, None if kind is None else str(kind),
            None if code_id is None else str(code_id),
            None if campaign_id is None else str(campaign_id),
            None if accepted is None else int(bool(accepted)),
            None if reason is None else str(reason))


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _bad_events(events: list[Received]) -> str:
    """Why these events cannot be stored as they are, or "" if they can."""
    if not events:
        return "the batch holds no events"
    for e in events:
        at = e.at
        if isinstance(at, bool) or not math.isfinite(at):
            return f"event seq {e.seq}: time {at!r} is not a finite number"
        if not 0 < len(e.id) <= MAX_ID_CHARS or not 0 < len(e.type) <= MAX_ID_CHARS:
            return f"event seq {e.seq}: id or type empty or over {MAX_ID_CHARS} characters"
    return ""


def _mismatch(batch: ReceivedBatch, store: str, device: str) -> str:
    if batch.store != store or batch.device != device:
        return (f"batch says store {batch.store!r} device {batch.device!r}, topic says "
                f"{store!r} {device!r}")
    for e in batch.events:
        if (e.store is not UNSET and e.store != store) or (
                e.device is not UNSET and e.device != device):
            return (f"event {e.id} says store {_said(e.store)!r} device "
                    f"{_said(e.device)!r}")
    return ""


def _said(value: object) -> object:
    """A field as an event said it, None when it did not (as the dict form's ``get``)."""
    return None if value is UNSET else value


_COUNTED_KINDS: Final = ("coupon", "ticket")
_SEQ: Final = operator.attrgetter("seq")


def _use_change(e: Received) -> _UseChange | None:
    """The use change an event makes, if any: +1 accepted, -1 voided.

    Coupons and workshop tickets (a check-in is a ticket's one use: counted and fanned out
    the same way, so the store's other tills refuse a ticket checked in at one of them).
    """
    f = e.lifted
    if f.kind not in _COUNTED_KINDS or not isinstance(f.code_id, str):
        return None
    if e.type == EventType.DECISION and f.accepted is True:
        delta = 1
    elif e.type == EventType.VOID:
        delta = -1
    else:
        return None
    # The coupon's limits are not taken from the event's facts: see hq.issuing.issued.
    return _UseChange(f.code_id, _text(f.campaign_id), delta, float(e.at), e.id)
