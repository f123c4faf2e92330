"""The drain's side of the ledger outbox: batches to publish, acknowledgements, growth policy.

Batches are read in ``seq`` order from a run of unsent rows after a cursor
(``Ledger.unsent_run``), so a batch is always the unsent rows of one ``seq`` range;
marking it sent adds that range to the ledger's acknowledged ranges, done only once the
broker has acknowledged the message that carried it (``sync.service``).

Growth: rows HQ confirmed are pruned by age (event time) and count (``SyncPolicy``);
unsent rows, and sent rows HQ has not confirmed, are never dropped. When the unsent
backlog (or, for the row limit, unsent and unconfirmed together) crosses the policy's
limits an ``outbox_alarm`` event is recorded (and again when it clears) and the service's
state carries the flag.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

from edge import clock
from edge.events import ORIGIN_MARK, Event, EventType, origin_text
from edge.events import SCHEMA_VERSION as EVENT_SCHEMA_VERSION
from edge.ledger import Ledger
from edge.rules import Identity
from edge.storeconfig import SyncPolicy
from sync.contract import batch_head, finish_batch

log = logging.getLogger(__name__)

ALARM_SETTING: Final = "outbox_alarm"
ORIGIN_MARK_BYTES: Final = ORIGIN_MARK.encode("ascii")

# One statement per batch: the stored wire texts of the next rows of an unsent run, already
# wrapped in the batch envelope, as bytes (no str decode and re-encode in Python).
_BATCH_SQL = (
    "SELECT MIN(seq), MAX(seq), COUNT(*), CAST(?1 || group_concat(wire, ',') || ']}' AS BLOB)"
    " FROM (SELECT seq, wire FROM outbox_wire WHERE seq >= ?2 AND seq < ?3 ORDER BY seq"
    " LIMIT ?4)")
# The same from the outbox rows themselves, for a run where a stored text is missing (none
# should be: schema 2 backfilled them), so a missing text can never leave a gap in a batch.
# edge.events.wire_text as a printf format (event_id is hex and type an enum value, so
# neither needs escaping; %!.17g round-trips a double, as float repr does).
_FALLBACK_SQL = (
    "SELECT MIN(seq), MAX(seq), COUNT(*), CAST(?1 || group_concat(j, ',') || ']}' AS BLOB)"
    " FROM (SELECT o.seq AS seq, COALESCE(w.wire, printf(?5, o.event_id, o.seq, o.type, o.at,"
    "  CASE WHEN o.clock_trusted THEN 'true' ELSE 'false' END, o.body)) AS j"
    " FROM outbox o LEFT JOIN outbox_wire w ON w.seq = o.seq"
    " WHERE o.seq >= ?2 AND o.seq < ?3 ORDER BY o.seq LIMIT ?4)")
_FALLBACK_FORMAT = (f'{{"v":{EVENT_SCHEMA_VERSION},"id":"%s","seq":%d{ORIGIN_MARK},'
                    '"type":"%s","at":%!.17g,"clock_trusted":%s,"body":%s}')
T = TypeVar("T")
_NO_STOP: Final = 1 << 62
SEAL_PER_COMMIT: Final = 50  # prepared batches written per transaction
# Prepared batches read ahead by the drain in one statement: up to this many, or this many
# bytes (a statement per batch cost a plain batch more than its publish).
AHEAD_ROWS: Final = 32
AHEAD_BYTES: Final = 1 << 20


@dataclass(frozen=True, slots=True)
class Batch:
    """Unsent events ``first..last`` (by seq), encoded for the wire."""

    first: int
    last: int
    count: int
    payload: bytes
    content_type: str


@dataclass(frozen=True, slots=True)
class Health:
    """The outbox against its policy."""

    backlog: int
    oldest_unsent_age_s: float
    alarm: bool
    pruned: int
    why: str = ""
    unconfirmed: int = 0  # sent (the broker acknowledged them), not yet confirmed by HQ


class Outbox:
    """Reads batches from and records acknowledgements into one ledger's outbox."""

    def __init__(self, ledger: Ledger, identity: Identity, compress: bool = True) -> None:
        """Drain ``ledger`` for ``identity``; ``compress`` allows zlib batches."""
        self.ledger = ledger
        self.identity = identity
        self.compress = compress
        self._head = batch_head(identity.store_id, identity.device_id)
        self._origin = origin_text(identity.store_id, identity.device_id).encode("utf-8")
        # What a prepared batch must have been made with to be sent as it is.
        self._made_for = f"{self._head}|{'zlib' if compress else 'plain'}"
        # Prepared batches read ahead, by first seq: every one stored for this outbox with
        # a first in ``_ahead_span`` when they were read (see _prepared).
        self._ahead: dict[int, tuple[int, int, str, bytes]] = {}
        self._ahead_span = (1, 0)

    def next_batch(self, after_seq: int, limit: int) -> Batch | None:
        """The next unsent events after ``after_seq`` (at most ``limit``), or ``None``.

        Each event's wire text was stored when it was appended (``edge.events.wire_text``);
        SQLite joins a batch's texts in seq order and only the origin is filled in here, so
        no Python object is made per event (``bench/sync_drain.py``); a batch :meth:`seal`
        prepared while offline is sent as stored. ``Event.to_wire`` stays the definition of
        the wire form; ``tests/test_sync_outbox.py`` holds the stored text byte-equal to it.
        """
        while True:
            first, stop = self.ledger.unsent_run(after_seq)
            end = _NO_STOP if stop is None else stop
            batch = self._prepared(first, end, limit) or self._build(first, end, limit)
            if batch is not None or stop is None:
                return batch
            after_seq = stop - 1  # a run with no rows (none should be): look past it

    def _prepared(self, first: int, stop: int, limit: int) -> Batch | None:
        """The batch :meth:`seal` prepared at ``first``, if it is still whole and fits.

        Read with the next ones in one statement, kept until the drain passes them. A kept
        row is never stale: a prepared batch's bytes are a function of its seq range and
        this outbox's identity and compression, and whether it is still whole is checked
        here against the ranges now; one prepared after the read is built instead.
        """
        lo, hi = self._ahead_span
        if not lo <= first <= hi:
            self._read_ahead(first)
        row = self._ahead.get(first)
        if row is None or row[0] >= stop or row[1] > limit:
            return None  # none, part of it acknowledged meanwhile, or over the batch size
        return Batch(first, row[0], row[1], row[3], row[2])

    def _read_ahead(self, first: int) -> None:
        self._ahead, size = {}, 0
        for row in self.ledger.conn.execute(
                "SELECT first, last, count, content_type, payload FROM outbox_batch"
                " WHERE first >= ? AND made_for = ? ORDER BY first LIMIT ?",
                (first, self._made_for, AHEAD_ROWS)):
            self._ahead[row[0]] = row[1:]
            size += len(row[4])
            if size >= AHEAD_BYTES:
                break
        # Every row up to the last one read is known; with none, nothing is (ask again).
        self._ahead_span = (first, max(self._ahead)) if self._ahead else (1, 0)

    def forget_prepared(self) -> None:
        """Drop the batches read ahead (more were prepared meanwhile: read them afresh)."""
        self._ahead, self._ahead_span = {}, (1, 0)

    def _build(self, first: int, stop: int, limit: int) -> Batch | None:
        """The batch of the run ``first``..``stop`` from the stored wire texts."""
        want = min(limit, stop - first)
        lo, hi, count, joined = self.ledger.conn.execute(
            _BATCH_SQL, (self._head, first, stop, limit)).fetchone()
        if not count and not self._more_rows(first - 1, stop):
            return None  # nothing waits
        if lo != first or count != hi - lo + 1 or (count < want and self._more_rows(hi, stop)):
            # A stored text is missing somewhere in this run: build the batch from the rows.
            lo, hi, count, joined = self.ledger.conn.execute(
                _FALLBACK_SQL, (self._head, first, stop, limit, _FALLBACK_FORMAT)).fetchone()
            if not count:
                return None
        payload, ctype = finish_batch(joined.replace(ORIGIN_MARK_BYTES, self._origin),
                                      self.compress)
        return Batch(lo, hi, count, payload, ctype)

    def seal(self, limit: int, most: int = 2000,
             presign: Callable[[Batch], None] | None = None) -> int:
        """Prepare the payloads of up to ``most`` batches of unsent events; how many.

        Run while the box is offline: the backlog it builds up is then sent after the
        outage as stored bytes (read, no encoding or compression on the drain's path).
        Only batches that cannot grow are made (``limit`` events, or a run that ends at an
        acknowledged range); the newest events stay for the drain. Batches made for
        another identity or compression, or over the size, are dropped first.
        ``presign(batch)`` is called for each batch prepared (the service signs it then,
        off the drain's path).
        """
        conn = self.ledger.conn
        with self.ledger.immediate():
            conn.execute("DELETE FROM outbox_batch WHERE made_for != ? OR count > ?",
                         (self._made_for, limit))
        after = conn.execute("SELECT COALESCE(MAX(last), 0) FROM outbox_batch").fetchone()[0]
        sealed = 0
        rows: list[tuple[int, int, int, str, str, bytes]] = []
        while sealed + len(rows) < most:
            first, stop = self.ledger.unsent_run(after)
            batch = self._build(first, _NO_STOP if stop is None else stop, limit)
            if batch is None and stop is not None:
                after = stop - 1  # a run with no rows: look past it
                continue
            if batch is None or (batch.count < limit and (stop is None or batch.last < stop - 1)):
                break  # the newest events: more may join them
            rows.append((batch.first, batch.last, batch.count, self._made_for,
                         batch.content_type, batch.payload))
            if presign is not None:
                presign(batch)
            after = batch.last
            if len(rows) == SEAL_PER_COMMIT:
                sealed += self._store_sealed(rows)
                rows = []
        return sealed + self._store_sealed(rows)

    def _store_sealed(self, rows: list[tuple[int, int, int, str, str, bytes]]) -> int:
        if rows:  # short transactions: a redemption waits at most for one of them
            with self.ledger.immediate() as conn:
                conn.executemany("INSERT OR IGNORE INTO outbox_batch(first, last, count,"
                                 " made_for, content_type, payload) VALUES (?,?,?,?,?,?)", rows)
        return len(rows)

    def _more_rows(self, hi: int | None, stop: int) -> bool:
        """Whether the outbox has rows of the run past ``hi`` that had no stored text."""
        return self.ledger.conn.execute(
            "SELECT 1 FROM outbox WHERE seq > ? AND seq < ? LIMIT 1",
            (hi or 0, stop)).fetchone() is not None

    def events(self, after_seq: int, limit: int) -> list[Event]:
        """The same rows as :meth:`next_batch`, as ``Event`` objects (for checks and tools)."""
        return self.ledger.pending_events(limit, after_seq)

    def mark_acked(self, ranges: list[tuple[int, int]]) -> int:
        """Mark the events in these seq ranges sent, in one transaction.

        Returns how many were not marked before.
        """
        return self.ledger.mark_sent(ranges)

    def backlog(self) -> int:
        """How many events wait to be sent."""
        return self.ledger.backlog()

    def check(self, policy: SyncPolicy, now: float | None = None) -> Health:
        """Prune sent rows by the policy and judge the unsent backlog.

        Records an ``outbox_alarm`` event when the alarm turns on or off (the state is kept
        in the ``outbox_alarm`` setting, so a restart does not repeat it).
        """
        now = time.time() if now is None else now
        conn = self.ledger.conn
        with self.ledger.immediate():
            pruned = _prune(conn, now - policy.outbox_max_age_s, policy.outbox_max_rows)
        # Read outside the write transaction, so the drain's sent marks never wait on it.
        backlog = self.ledger.backlog()
        row = conn.execute("SELECT at FROM outbox WHERE seq = ?",
                           (self.ledger.unsent_run()[0],)).fetchone()
        oldest = None if row is None else row[0]
        age = max(0.0, now - oldest) if oldest is not None else 0.0
        unconfirmed = self.ledger.unconfirmed()
        why = _alarm_reason(policy, backlog, age, unconfirmed)
        if bool(why) != bool(self.ledger.setting(ALARM_SETTING)):
            with self.ledger.immediate():
                reading = clock.read(now, self.ledger.trusted_time(),
                                     self.ledger.setting("clock_skew_s"))
                self.ledger.append_event(
                    conn, EventType.OUTBOX_ALARM, reading.now, reading.trusted,
                    {"alarm": bool(why), "reason": why, "backlog": backlog,
                     "oldest_unsent_age_s": round(age, 1), "alarm_backlog": policy.alarm_backlog,
                     "outbox_max_rows": policy.outbox_max_rows,
                     "outbox_max_age_s": policy.outbox_max_age_s})
                self.ledger.put_setting(conn, ALARM_SETTING, bool(why))
            (log.warning if why else log.info)(
                "outbox alarm %s: %s", "ON" if why else "off", why or f"backlog {backlog}")
        return Health(backlog, age, bool(why), pruned, why, unconfirmed)


def _prune(conn: sqlite3.Connection, cutoff: float, max_rows: int) -> int:
    """Delete confirmed rows older than ``cutoff`` or past ``max_rows``; rows deleted.

    Only rows inside acknowledged ranges and confirmed by HQ are touched. Within each range
    the oldest rows go first, up to the first one younger than the cutoff (event times only
    go backwards when the clock does; a row behind a younger one waits for it), so a check
    costs what it deletes, not what the outbox holds.
    """
    acked = conn.execute("SELECT first, last FROM outbox_acked ORDER BY first").fetchall()
    # Only what HQ confirmed it committed may go: the broker's PUBACK is not enough (a
    # broker may lose what it acknowledged; then the box must still hold it to resend).
    confirmed = conn.execute("SELECT seq FROM outbox_confirmed WHERE id = 1").fetchone()[0]
    ranges = [(first, min(last, confirmed)) for first, last in acked if first <= confirmed]
    pruned = 0
    for first, last in ranges:
        young = conn.execute("SELECT seq FROM outbox WHERE seq >= ? AND seq <= ? AND at >= ?"
                             " ORDER BY seq LIMIT 1", (first, last, cutoff)).fetchone()
        end = last if young is None else young[0] - 1
        if end >= first:
            pruned += conn.execute("DELETE FROM outbox WHERE seq >= ? AND seq <= ?",
                                   (first, end)).rowcount
    low, high = conn.execute(
        "SELECT (SELECT MIN(seq) FROM outbox), (SELECT MAX(seq) FROM outbox)").fetchone()
    count_over = None
    if low is not None and high - low + 1 > max_rows:  # else fewer rows: no counting scan
        count_over = conn.execute("SELECT seq FROM outbox ORDER BY seq DESC LIMIT 1 OFFSET ?",
                                  (max_rows,)).fetchone()
    if count_over is not None:  # more rows than the policy allows: the oldest sent ones go
        for first, last in ranges:
            if first <= count_over[0]:
                pruned += conn.execute("DELETE FROM outbox WHERE seq >= ? AND seq <= ?",
                                       (first, min(last, count_over[0]))).rowcount
    # Stored wire texts are needed until their events are confirmed (a resend sends them),
    # prepared batches only until their events are sent.
    conn.executemany("DELETE FROM outbox_wire WHERE seq >= ? AND seq <= ?", ranges)
    conn.executemany("DELETE FROM outbox_batch WHERE first >= ? AND first <= ?", acked)
    # The ranges stay: they say the pruned seqs were sent (and coalesced, they are few).
    return pruned


class OutboxThread:
    """Outbox writes (sent marks, or the policy check) on a thread and connection of their own.

    Each commit waits for an fsync (``synchronous=FULL``): about 10 ms here, more on an SD
    card. Done on the event loop it would stall publishing and reading acks for that long;
    on this thread (sqlite3 releases the GIL while it waits) the drain keeps going.
    Batches are read on the loop: a reader thread was measured slower (its handoffs and
    the GIL cost more than the overlap gained, on two cores).
    """

    def __init__(self, path: Path) -> None:
        """Write to the ledger at ``path`` (opened on first use, on the writer's thread)."""
        self._path = path
        self._ledger: Ledger | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="outbox")

    def _own(self) -> Ledger:
        if self._ledger is None:
            self._ledger = Ledger(self._path)
        return self._ledger

    def _mark(self, ranges: list[tuple[int, int]]) -> int:
        return self._own().mark_sent(ranges)

    def _check(self, identity: Identity, policy: SyncPolicy, now: float) -> Health:
        return Outbox(self._own(), identity).check(policy, now)

    async def check(self, identity: Identity, policy: SyncPolicy, now: float) -> Health:
        """:meth:`Outbox.check` on this thread.

        With a large backlog its pruning can take tens of ms, which on the event loop would
        hold up the drain (and on the marks' thread, the marks).
        """
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._check,
                                                                identity, policy, now)

    def _seal(self, identity: Identity, compress: bool, limit: int,
              presign: Callable[[Batch], None] | None) -> int:
        return Outbox(self._own(), identity, compress).seal(limit, presign=presign)

    async def seal(self, identity: Identity, compress: bool, limit: int,
                   presign: Callable[[Batch], None] | None = None) -> int:
        """:meth:`Outbox.seal` on this thread."""
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, self._seal, identity, compress, limit, presign)

    async def run(self, fn: Callable[[Ledger], T]) -> T:
        """``fn(ledger)`` on this thread and its connection (after the marks queued before)."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, lambda: fn(
            self._own()))

    async def mark(self, ranges: list[tuple[int, int]]) -> int:
        """Mark ``ranges`` sent; returns how many events were not marked before."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._mark, ranges)

    def close(self) -> None:
        """Finish queued marks and close the connection (blocks briefly)."""
        def close() -> None:
            if self._ledger is not None:
                self._ledger.close()
                self._ledger = None
        self._pool.submit(close).result()
        self._pool.shutdown(wait=True)


def _alarm_reason(policy: SyncPolicy, backlog: int, age: float, unconfirmed: int = 0) -> str:
    if backlog >= policy.outbox_max_rows:
        return f"{backlog} unsent events reach the outbox limit of {policy.outbox_max_rows}"
    if backlog + unconfirmed >= policy.outbox_max_rows:  # kept: HQ has not confirmed them
        return (f"{backlog + unconfirmed} events not confirmed by HQ reach the outbox limit "
                f"of {policy.outbox_max_rows}")
    if backlog >= policy.alarm_backlog:
        return f"{backlog} unsent events reach the alarm threshold of {policy.alarm_backlog}"
    if backlog and age > policy.outbox_max_age_s:
        return (f"the oldest unsent event is {age / 3600:.1f} h old, over "
                f"{policy.outbox_max_age_s / 3600:.1f} h")
    return ""

