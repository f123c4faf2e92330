"""The box's durable state: peewee models on one SQLite file, and the outbox.

Durability: WAL with ``synchronous=FULL`` (NORMAL in WAL mode may lose the last commits on
power loss), a busy timeout so a second process waits instead of failing, and
``BEGIN IMMEDIATE`` for every decision so concurrent writers serialise on the write lock
before they read the state they decide on.

Checkpoints: SQLite's default auto-checkpoint (every 1,000 WAL pages) runs inside whichever
commit crosses the line, and that commit's fsyncs of the main file are the worst tail of
the redemption latency (p99 8x the floor, ``bench/redeem_latency.py``). The ledger raises
the threshold to :data:`AUTOCHECKPOINT_PAGES` (so the WAL stays bounded when no daemon
runs) and offers :func:`checkpoint` on a separate connection, which the daemon runs in the
background between scans.

The models define the schema; the redemption hot path (``edge.rules``) runs prepared SQL on
the same connection, because peewee's query building costs more than the query itself
there (see ``bench/redeem_latency.py``).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import peewee as pw

from edge.events import Event, EventType, wire_text
from edge.keys import Purpose, TrustedKey

SCHEMA_VERSION = 5
AUTOCHECKPOINT_PAGES = 20_000  # ~80 MB of WAL at most, if nothing else checkpoints

DEFAULT_SETTINGS: dict[str, Any] = {
    "void_window_s": 15 * 60,
    # Voids per box in the last void_shift_s, then refused (HQ config void_shift_limit;
    # docs/security.md, "On the box"): bounds redeem-void-redeem-again at the counter.
    "void_shift_limit": 5,
    "void_shift_s": 8 * 3600,
    "pickup_late_grace_s": 2 * 3600,
    "clock_skew_s": 120,
    # Check-in margins around a workshop session HQ has not described yet (its own
    # early_s/late_s come with the session in a ``workshops`` message).
    "workshop_early_s": 1800,
    "workshop_late_s": 900,
    "config_version": 0,
}


class _Base(pw.Model):
    class Meta:
        legacy_table_names = False


class Setting(_Base):
    """A setting pushed by HQ config (void window, ...), JSON-encoded."""

    key = pw.TextField(primary_key=True)
    value = pw.TextField()


class TrustedKeyRow(_Base):
    """An HQ public key the box trusts."""

    key_id = pw.TextField(primary_key=True)
    public_key = pw.BlobField()
    purposes = pw.TextField()  # comma-separated Purpose values
    not_after = pw.IntegerField(null=True)

    class Meta:
        table_name = "trusted_key"


class Campaign(_Base):
    """A campaign's state as HQ last said: active, paused or revoked."""

    campaign_id = pw.TextField(primary_key=True)
    state = pw.TextField(default="active")
    name = pw.TextField(default="")


class RevokedCode(_Base):
    """A single code HQ revoked."""

    code_id = pw.TextField(primary_key=True)
    reason = pw.TextField(default="")


class CodeUse(_Base):
    """How many times this box has used a code (voids give uses back)."""

    code_id = pw.TextField(primary_key=True)
    uses = pw.IntegerField(default=0)


class RemoteUse(_Base):
    """Uses of a code at other stores, as fanned out by HQ."""

    code_id = pw.TextField()
    store_id = pw.TextField()
    uses = pw.IntegerField(default=1)
    last_at = pw.FloatField()

    class Meta:
        primary_key = pw.CompositeKey("code_id", "store_id")


class PickupOrder(_Base):
    """A pickup order known to this store."""

    order_id = pw.TextField(primary_key=True)
    store_id = pw.TextField()
    number = pw.TextField(index=True)
    window_start = pw.IntegerField()
    window_end = pw.IntegerField()
    items = pw.TextField(default="")
    customer = pw.TextField(default="")
    status = pw.TextField(default="waiting")  # waiting | collected | cancelled
    collected_at = pw.FloatField(null=True)


class Decision(_Base):
    """Every scan decision, accepted or rejected: the ledger of record."""

    id = pw.AutoField()
    at = pw.FloatField()
    kind = pw.TextField(null=True)
    code_id = pw.TextField(null=True, index=True)
    campaign_id = pw.TextField(null=True)
    accepted = pw.BooleanField()
    reason = pw.TextField(null=True)
    till = pw.TextField(default="")
    source = pw.TextField(default="")
    clock_trusted = pw.BooleanField()
    facts = pw.TextField(default="{}")
    event_id = pw.TextField(unique=True)
    voided_at = pw.FloatField(null=True)
    void_reason = pw.TextField(null=True)


class IssuedCard(_Base):
    """A packaging card this device minted; ``serial`` never repeats."""

    serial = pw.AutoField()
    issued_at = pw.FloatField()
    receipt_ref = pw.TextField(default="")
    url = pw.TextField()

    class Meta:
        table_name = "card"


class TrustedTime(_Base):
    """The latest time the box knew to be right (single row, id 1)."""

    id = pw.IntegerField(primary_key=True)
    at = pw.FloatField()
    source = pw.TextField()


class Outbox(_Base):
    """Events waiting for (or done with) delivery to HQ.

    ``seq`` is an AUTOINCREMENT rowid: SQLite never reuses it, and a rolled-back
    transaction rolls back its increment too, so the sequence is gapless per device.
    """

    seq = pw.AutoField()
    event_id = pw.TextField(unique=True)
    type = pw.TextField()
    at = pw.FloatField()
    clock_trusted = pw.BooleanField()
    body = pw.TextField()


MODELS: list[type[pw.Model]] = [
    Setting, TrustedKeyRow, Campaign, RevokedCode, CodeUse, RemoteUse, PickupOrder,
    Decision, IssuedCard, TrustedTime, Outbox,
]


def _migrate_1(db: pw.SqliteDatabase) -> None:
    with db.bind_ctx(MODELS):
        db.create_tables(MODELS)
    # AUTOINCREMENT (not plain rowid reuse) for the two sequences that must never repeat.
    db.execute_sql("DROP TABLE outbox")
    db.execute_sql(
        "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL"
        " UNIQUE, type TEXT NOT NULL, at REAL NOT NULL, clock_trusted INTEGER NOT NULL,"
        " body TEXT NOT NULL, sent_at REAL)"
    )
    db.execute_sql("CREATE INDEX outbox_unsent ON outbox(seq) WHERE sent_at IS NULL")
    db.execute_sql("DROP TABLE card")
    db.execute_sql(
        "CREATE TABLE card (serial INTEGER PRIMARY KEY AUTOINCREMENT, issued_at REAL NOT NULL,"
        " receipt_ref TEXT NOT NULL DEFAULT '', url TEXT NOT NULL)"
    )


def _migrate_2(db: pw.SqliteDatabase) -> None:
    # Each event's wire text (edge.events.wire_text), written once when it is appended, so
    # the drain sends stored text. A table of its own, not an outbox column: marking rows
    # sent rewrites them, and a row three times the size made that three times slower.
    # Kept until sent; Outbox.check prunes it. Unsent rows from before this step get theirs.
    conn = db.connection()
    conn.execute("CREATE TABLE outbox_wire (seq INTEGER PRIMARY KEY, wire TEXT NOT NULL)")
    rows = conn.execute("SELECT seq, event_id, type, at, clock_trusted, body FROM outbox"
                        " WHERE sent_at IS NULL")
    conn.executemany("INSERT INTO outbox_wire(seq, wire) VALUES (?, ?)",  # streamed
                     ((r[0], wire_text(Event(r[0], r[1], r[2], r[3], bool(r[4]),
                                             json.loads(r[5])))) for r in rows))


def _migrate_3(db: pw.SqliteDatabase) -> None:
    # What the broker acknowledged is kept as seq ranges (``outbox_acked``) instead of a
    # ``sent_at`` per row: marking a batch sent was an UPDATE of every row (and of the
    # partial index of unsent rows), 250 ms per 100,000 events, more than the whole drain
    # may take (``bench/sync_drain.py``); extending a range is one row. The ranges are
    # disjoint and never adjacent; every seq up to the newest is either a row not yet
    # acknowledged or inside a range (pruning deletes only those, and keeps the ranges).
    conn = db.connection()
    conn.execute("CREATE TABLE outbox_acked (first INTEGER PRIMARY KEY, last INTEGER NOT NULL)")
    # Every seq ever given that is not an unsent row was sent (pruned rows included, even
    # those schema 2 pruned past an unsent one): the ranges are the gaps between unsent rows.
    top = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence"
                       " WHERE name = 'outbox'").fetchone()[0]
    ranges, done = [], 0
    for (seq,) in conn.execute("SELECT seq FROM outbox WHERE sent_at IS NULL ORDER BY seq"):
        if seq > done + 1:
            ranges.append((done + 1, seq - 1))
        done = seq
    if top > done:
        ranges.append((done + 1, top))
    conn.executemany("INSERT INTO outbox_acked(first, last) VALUES (?, ?)", ranges)
    conn.execute("DROP INDEX outbox_unsent")
    conn.execute("ALTER TABLE outbox DROP COLUMN sent_at")
    # Batch payloads prepared while the box is offline (sync.outbox.Outbox.seal), so that
    # the drain after an outage sends stored bytes; ``made_for`` names the batch head and
    # compression they were made with. Dropped once their first event is acknowledged.
    conn.execute("CREATE TABLE outbox_batch (first INTEGER PRIMARY KEY, last INTEGER NOT NULL,"
                 " count INTEGER NOT NULL, made_for TEXT NOT NULL, content_type TEXT NOT NULL,"
                 " payload BLOB NOT NULL)")


def _migrate_4(db: pw.SqliteDatabase) -> None:
    # HQ's confirmation: every event up to ``seq`` is committed at HQ (not just acknowledged
    # by the broker, which may lose what it acknowledged). Only confirmed events may be
    # pruned. ``version`` is the last confirmation or resend request applied (they share
    # one sequence, so an old one replayed or re-delivered changes nothing). One row.
    # Nothing is confirmed after this step: HQ's next confirmation (it answers the box's
    # presence) says what it holds of what schema 3 counted as sent.
    conn = db.connection()
    conn.execute("CREATE TABLE outbox_confirmed (id INTEGER PRIMARY KEY CHECK (id = 1),"
                 " seq INTEGER NOT NULL, version INTEGER NOT NULL, at REAL)")
    conn.execute("INSERT INTO outbox_confirmed(id, seq, version, at) VALUES (1, 0, 0, NULL)")


def _migrate_5(db: pw.SqliteDatabase) -> None:
    # Workshops (edge.workshops): the sessions HQ described (``workshops`` data, each row
    # HQ's whole state of a session), the tickets HQ says were cancelled, and this box's
    # check-ins (one per ticket; a void deletes it). Check-ins are decisions too (kind
    # ``ticket``); this table keeps the party size and session a count needs in one place.
    conn = db.connection()
    conn.execute("CREATE TABLE workshop_session (session_id TEXT PRIMARY KEY, title TEXT NOT NULL,"
                 " starts INTEGER NOT NULL, ends INTEGER NOT NULL, capacity INTEGER NOT NULL,"
                 " party_max INTEGER NOT NULL, signed_up INTEGER NOT NULL, tickets INTEGER NOT"
                 " NULL, early_s INTEGER NOT NULL, late_s INTEGER NOT NULL, status TEXT NOT NULL)")
    conn.execute("CREATE INDEX workshop_session_starts ON workshop_session(starts)")
    conn.execute("CREATE TABLE workshop_revoked (ticket_id TEXT PRIMARY KEY,"
                 " session_id TEXT NOT NULL)")
    conn.execute("CREATE TABLE workshop_checkin (ticket_id TEXT PRIMARY KEY, session_id TEXT NOT"
                 " NULL, party INTEGER NOT NULL, holder TEXT NOT NULL, at REAL NOT NULL,"
                 " decision_id INTEGER NOT NULL)")
    conn.execute("CREATE INDEX workshop_checkin_session ON workshop_checkin(session_id)")


# Index i migrates schema version i to i + 1. Append; never edit a shipped step.
MIGRATIONS: list[Callable[[pw.SqliteDatabase], None]] = [_migrate_1, _migrate_2, _migrate_3,
                                                         _migrate_4, _migrate_5]
assert len(MIGRATIONS) == SCHEMA_VERSION


class LedgerError(Exception):
    """The ledger cannot be used (newer schema, corrupt file...)."""


class LedgerFull(LedgerError):
    """The ledger's filesystem is full: the transaction was rolled back, nothing recorded.

    SQLite never corrupts a database on ENOSPC (``SQLITE_FULL``); the write that failed is
    undone and everything committed before it stays. Retrying once space is freed works on
    the same connection. ``path`` is the ledger, for the message and a free-space check.
    """

    def __init__(self, path: Path, detail: str) -> None:
        """Carry the ledger's path and SQLite's words."""
        super().__init__(f"disk full: {path} cannot record anything more ({detail})")
        self.path = path


class LedgerDamaged(LedgerError):
    """The ledger fails SQLite's ``PRAGMA quick_check``: nothing may be decided on it.

    A damaged page could hide a redemption (a code accepted again) or an event never sent;
    the box refuses to decide on such a file rather than use what is left of it.
    ``problems`` are quick_check's first lines.
    """

    def __init__(self, path: Path, problems: list[str]) -> None:
        """Carry the ledger's path and what quick_check found."""
        super().__init__(f"ledger {path} is damaged (quick_check: {'; '.join(problems)}): "
                         "nothing is decided on it; restore the latest backup "
                         "(edge restore, docs/operations.md)")
        self.path = path
        self.problems = problems


class LedgerReadOnly(LedgerError):
    """The ledger cannot be written (a read-only filesystem): nothing can be recorded.

    An SD card the kernel remounted read-only after I/O errors looks like this. No verdict
    may be shown that is not recorded, so nothing is decided.
    """

    def __init__(self, path: Path) -> None:
        """Carry the ledger's path."""
        super().__init__(f"ledger {path} is on a read-only filesystem (or not writable): "
                         "nothing can be recorded, so nothing is decided; check the disk "
                         "(edge doctor), the daemon starts again once it is writable")
        self.path = path


def read_only(path: Path) -> bool:
    """Whether the ledger at ``path`` cannot be written.

    A read-only mount, or no write permission on the file or its folder (where SQLite
    keeps the ``-wal`` and ``-shm`` files).
    """
    folder = path.parent
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return True
    except OSError:
        return False
    return not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK))


def check_intact(path: Path, limit: int = 5) -> None:
    """Run ``PRAGMA quick_check`` on the ledger at ``path`` (if there is one yet).

    Reads every page once, so its time grows with the ledger: for a start, not for every
    command.

    Raises:
        LedgerDamaged: quick_check found problems, or SQLite finds the file malformed or not
            a database at all.
        LedgerFull: the disk is too full to read a WAL ledger (its ``-shm`` file).
        sqlite3.OperationalError: the file cannot be read otherwise (permissions, I/O): not
            a verdict on its pages.
    """
    if not path.exists():
        return
    conn = sqlite3.connect(str(path), timeout=10)
    try:
        rows = [str(r[0]) for r in conn.execute(f"PRAGMA quick_check({int(limit)})")]
    except sqlite3.OperationalError as exc:
        if no_space(path.parent):
            raise LedgerFull(path, str(exc)) from exc
        raise
    except sqlite3.DatabaseError as exc:  # SQLITE_CORRUPT, SQLITE_NOTADB
        raise LedgerDamaged(path, [str(exc)]) from exc
    finally:
        conn.close()
    if rows != ["ok"]:
        raise LedgerDamaged(path, rows)


def no_space(folder: Path) -> bool:
    """Whether the filesystem holding ``folder`` has (next to) no room left (< 64 KiB)."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 64 * 1024


def is_full(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite saying the database or its disk is full."""
    return (isinstance(exc, sqlite3.OperationalError)
            and getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL)


# PRAGMA cache_size (negative: KiB): 512 KiB instead of SQLite's 2 MiB, which a year of
# redemptions fills; the daemon's RSS target is 80 MB with a camera on (bench/daemon.py).
CACHE_SIZE: Final = -512


class Ledger:
    """One open ledger file. Not shared between threads; open one per process/thread."""

    def __init__(self, path: Path | str) -> None:
        """Open (creating and migrating if needed) the ledger at ``path``."""
        self.path = Path(path)
        self.db = pw.SqliteDatabase(
            str(self.path),
            pragmas={"journal_mode": "wal", "synchronous": "full", "busy_timeout": 10000,
                     "foreign_keys": 1, "wal_autocheckpoint": AUTOCHECKPOINT_PAGES,
                     "cache_size": CACHE_SIZE},
            timeout=10,
            autoconnect=True,
        )
        try:
            self.db.connect(reuse_if_open=True)
        except (pw.OperationalError, sqlite3.OperationalError) as exc:
            # WAL mode needs its -shm and -wal files: on a full disk creating them fails
            # as "disk I/O error", which says nothing about space. Say it when it is so.
            if no_space(self.path.parent):
                raise LedgerFull(self.path, str(exc)) from exc
            raise
        self.conn: sqlite3.Connection = self.db.connection()
        self._migrate()

    def close(self) -> None:
        """Checkpoint what this process wrote, then close the connection."""
        # Another process may hold the database busy: then its close will checkpoint.
        with contextlib.suppress(sqlite3.Error):
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        self.db.close()

    def _migrate(self) -> None:
        with self.immediate():
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise LedgerError(
                    f"{self.path} has schema {version}, newer than this software's "
                    f"{SCHEMA_VERSION}: upgrade store-edge"
                )
            for step in MIGRATIONS[version:]:
                step(self.db)
            if version != SCHEMA_VERSION:
                self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def immediate(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that holds the write lock from its first statement.

        Raises:
            LedgerFull: the disk is full (at a write or at the commit); rolled back.
        """
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
            self.conn.execute("COMMIT")
        except BaseException as exc:
            # SQLite may have rolled back already (SQLITE_FULL can end the transaction);
            # a failed COMMIT leaves it open. Either way the connection is clean after this.
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            if is_full(exc):
                raise LedgerFull(self.path, str(exc)) from exc
            raise

    # -- settings ----------------------------------------------------------------

    def setting(self, key: str) -> Any:
        """A setting's value, or its default."""
        row = self.conn.execute("SELECT value FROM setting WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else DEFAULT_SETTINGS.get(key)

    def put_setting(self, conn: sqlite3.Connection, key: str, value: Any) -> None:
        """Store a setting inside the caller's transaction."""
        conn.execute("INSERT OR REPLACE INTO setting(key, value) VALUES (?, ?)",
                     (key, json.dumps(value)))

    # -- trust -------------------------------------------------------------------

    def trusted_key(self, key_id: str) -> TrustedKey | None:
        """A trusted key by id."""
        row = self.conn.execute(
            "SELECT key_id, public_key, purposes, not_after FROM trusted_key WHERE key_id=?",
            (key_id,)).fetchone()
        return _trusted_key(row) if row else None

    def trusted_keys(self) -> list[TrustedKey]:
        """Every trusted key."""
        rows = self.conn.execute(
            "SELECT key_id, public_key, purposes, not_after FROM trusted_key ORDER BY key_id")
        return [_trusted_key(r) for r in rows]

    def put_trusted_key(self, conn: sqlite3.Connection, key: TrustedKey) -> None:
        """Add or replace a trusted key inside the caller's transaction."""
        conn.execute(
            "INSERT OR REPLACE INTO trusted_key(key_id, public_key, purposes, not_after)"
            " VALUES (?, ?, ?, ?)",
            (key.key_id, key.public_key, ",".join(sorted(key.purposes)), key.not_after))

    # -- time --------------------------------------------------------------------

    def trusted_time(self) -> float:
        """The latest time known to be right (0 if never)."""
        row = self.conn.execute("SELECT at FROM trusted_time WHERE id=1").fetchone()
        return float(row[0]) if row else 0.0

    def trusted_time_source(self, conn: sqlite3.Connection) -> tuple[float, str]:
        """``(at, source)`` of the trusted time (``(0.0, "")`` if never set)."""
        row = conn.execute("SELECT at, source FROM trusted_time WHERE id=1").fetchone()
        return (float(row[0]), str(row[1])) if row else (0.0, "")

    def correct_trusted_time(self, conn: sqlite3.Connection, at: float, source: str) -> None:
        """Set the trusted time to ``at``, even if earlier.

        Only for HQ-signed time correcting one that ran ahead (``edge.storeconfig``).
        """
        conn.execute("INSERT INTO trusted_time(id, at, source) VALUES (1, ?, ?)"
                     " ON CONFLICT(id) DO UPDATE SET at=excluded.at, source=excluded.source",
                     (at, source))

    def advance_trusted_time(self, conn: sqlite3.Connection, at: float, source: str) -> bool:
        """Move the trusted time forward to ``at`` (never back). Returns whether it moved."""
        cur = conn.execute(
            "INSERT INTO trusted_time(id, at, source) VALUES (1, ?, ?)"
            " ON CONFLICT(id) DO UPDATE SET at=excluded.at, source=excluded.source"
            " WHERE excluded.at > trusted_time.at", (at, source))
        return cur.rowcount > 0

    # -- outbox ------------------------------------------------------------------

    def append_event(self, conn: sqlite3.Connection, type_: EventType, at: float,
                     clock_trusted: bool, body: dict[str, Any]) -> tuple[int, str]:
        """Add an event inside the caller's transaction; returns (seq, event_id)."""
        event_id = uuid.uuid4().hex
        body_json = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        cur = conn.execute(
            "INSERT INTO outbox(event_id, type, at, clock_trusted, body) VALUES (?, ?, ?, ?, ?)",
            (event_id, type_.value, at, int(clock_trusted), body_json))
        seq = cur.lastrowid
        assert seq is not None
        # The seq is part of the wire text and only known now (same transaction).
        conn.execute("INSERT INTO outbox_wire(seq, wire) VALUES (?, ?)",
                     (seq, wire_text(Event(seq, event_id, type_.value, float(at),
                                           clock_trusted, body))))
        return seq, event_id

    def outbox_bounds(self) -> tuple[int, int] | None:
        """The lowest and highest seq in the outbox, or ``None`` when it is empty."""
        lo, hi = self.conn.execute(  # two subqueries: SQLite answers each from the rowid end
            "SELECT (SELECT MIN(seq) FROM outbox), (SELECT MAX(seq) FROM outbox)").fetchone()
        return None if lo is None else (int(lo), int(hi))

    def unsent_run(self, after_seq: int = 0) -> tuple[int, int | None]:
        """The first run of seqs after ``after_seq`` not acknowledged: ``(first, stop)``.

        Every seq from ``first`` up to ``stop`` (exclusive; ``None``: no acknowledged range
        follows) that exists is an unsent row, and they exist from ``first`` on unless
        ``first`` is past the newest event (then nothing waits). One small query; the
        ranges are few because they coalesce.
        """
        first = after_seq + 1
        for lo, hi in self.conn.execute(
                "SELECT first, last FROM outbox_acked WHERE last >= ? ORDER BY first", (first,)):
            if lo > first:
                return first, lo
            first = hi + 1
        return first, None

    def pending_events(self, limit: int = 100, after_seq: int = 0) -> list[Event]:
        """Unsent events in sequence order."""
        events: list[Event] = []
        while len(events) < limit:
            first, stop = self.unsent_run(after_seq)
            rows = self.conn.execute(
                "SELECT seq, event_id, type, at, clock_trusted, body FROM outbox"
                " WHERE seq >= ? AND seq < ? ORDER BY seq LIMIT ?",
                (first, stop if stop is not None else 1 << 62, limit - len(events))).fetchall()
            events += [Event(r[0], r[1], r[2], r[3], bool(r[4]), json.loads(r[5])) for r in rows]
            if stop is None:
                break
            after_seq = stop - 1  # past the next acknowledged range
        return events

    def mark_sent(self, ranges: list[tuple[int, int]]) -> int:
        """Record that HQ's broker acknowledged the events in these seq ranges (inclusive).

        One transaction; returns how many seqs were not marked before.
        """
        with self.immediate() as conn:
            return mark_sent_in(conn, ranges)

    def last_seq(self) -> int:
        """The sequence number of the newest event in the outbox (0 when it is empty)."""
        bounds = self.outbox_bounds()
        return 0 if bounds is None else bounds[1]

    def newest_seq(self) -> int:
        """The seq of the newest event ever written, pruned or not (0 before the first)."""
        row = self.conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'"
                                ).fetchone()
        return 0 if row is None else int(row[0])

    def confirmed(self) -> tuple[int, int]:
        """HQ's confirmation: ``(seq, version)``; every event up to ``seq`` is at HQ."""
        row = self.conn.execute("SELECT seq, version FROM outbox_confirmed WHERE id = 1"
                                ).fetchone()
        return int(row[0]), int(row[1])

    def unconfirmed(self) -> int:
        """How many events the broker acknowledged that HQ has not confirmed yet."""
        bounds = self.outbox_bounds()
        if bounds is None:
            return 0
        lo = max(bounds[0], self.confirmed()[0] + 1)
        return int(self.conn.execute(
            "SELECT COALESCE(SUM(MIN(last, ?2) - MAX(first, ?1) + 1), 0) FROM outbox_acked"
            " WHERE last >= ?1 AND first <= ?2", (lo, bounds[1])).fetchone()[0])

    def continue_after(self, seq: int) -> int:
        """Number the next event after ``seq`` at least: for a box restored from a backup.

        The box this ledger replaces may have given seqs past the backup's newest, and HQ
        may hold them (``seq`` is HQ's highest for the device). They must never be given
        again, so the AUTOINCREMENT counter jumps to ``seq`` and the seqs jumped over count
        as acknowledged (they were the old box's to send, and it did), which keeps the
        outbox's rule: every seq up to the newest is an unsent row or in an acked range.
        Unsent rows of the backup stay unsent: HQ drops the copies it has and keeps the
        rest. Returns the seq the next event will get.
        """
        with self.immediate() as conn:
            top = int(conn.execute("SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence"
                                   " WHERE name = 'outbox'").fetchone()[0])
            if seq > top:
                if not conn.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'outbox'",
                                    (seq,)).rowcount:
                    conn.execute("INSERT INTO sqlite_sequence(name, seq) VALUES ('outbox', ?)",
                                 (seq,))
                touching = conn.execute("SELECT first FROM outbox_acked WHERE last = ?",
                                        (top,)).fetchone()
                if touching:  # ranges never touch: extend the one that ends at the old top
                    conn.execute("UPDATE outbox_acked SET last = ? WHERE first = ?",
                                 (seq, touching[0]))
                else:
                    conn.execute("INSERT INTO outbox_acked(first, last) VALUES (?, ?)",
                                 (top + 1, seq))
            return max(seq, top) + 1

    def backlog(self) -> int:
        """How many events wait to be sent (from the ranges: no row is counted)."""
        bounds = self.outbox_bounds()
        if bounds is None:
            return 0
        lo, hi = bounds
        covered = self.conn.execute(
            "SELECT COALESCE(SUM(MIN(last, ?2) - MAX(first, ?1) + 1), 0) FROM outbox_acked"
            " WHERE last >= ?1 AND first <= ?2", (lo, hi)).fetchone()[0]
        return hi - lo + 1 - int(covered)


def mark_sent_in(conn: sqlite3.Connection, ranges: list[tuple[int, int]]) -> int:
    """Add acknowledged seq ranges inside the caller's transaction; returns seqs newly marked.

    Each range is merged with the ones it overlaps or touches, so the table stays a few
    rows (one, while the drain keeps up) whatever the number of batches. Seqs past the
    newest event are ignored.
    """
    # Never past the newest event: a range over seqs not yet written would mark them sent.
    newest = conn.execute("SELECT MAX(seq) FROM outbox").fetchone()[0] or 0
    changed = 0
    for first, last in sorted(ranges):
        last = min(last, newest)
        if last < first:
            continue
        rows = conn.execute("SELECT first, last FROM outbox_acked WHERE first <= ? AND last >= ?",
                            (last + 1, first - 1)).fetchall()
        changed += last - first + 1 - sum(max(0, min(hi, last) - max(lo, first) + 1)
                                          for lo, hi in rows)
        if rows:
            conn.executemany("DELETE FROM outbox_acked WHERE first = ?", [(lo,) for lo, _ in rows])
            first, last = min(first, *(lo for lo, _ in rows)), max(last, *(hi for _, hi in rows))
        conn.execute("INSERT INTO outbox_acked(first, last) VALUES (?, ?)", (first, last))
    return changed


def confirm_in(conn: sqlite3.Connection, seq: int, version: int, at: float) -> int:
    """Record HQ's confirmation of every event up to ``seq``, in the caller's transaction.

    A confirmation never moves back (a resend request does that) and never past the newest
    event; the confirmed events count as sent too (HQ has them, whatever became of their
    PUBACKs). Returns the confirmed seq now.
    """
    newest = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM outbox").fetchone()[0]
    seq = min(seq, newest)
    if seq >= 1:
        mark_sent_in(conn, [(1, seq)])
    conn.execute("UPDATE outbox_confirmed SET seq = MAX(seq, ?), version = ?, at = ?"
                 " WHERE id = 1", (seq, version, at))
    return int(conn.execute("SELECT seq FROM outbox_confirmed WHERE id = 1").fetchone()[0])


def unsend_in(conn: sqlite3.Connection, first: int, last: int) -> int:
    """Make the held events ``first..last`` unsent again, so the drain sends them again.

    Takes back HQ's confirmation of them too (a resend request says HQ lacks them). Seqs
    the outbox no longer holds (pruned) stay acknowledged: there is nothing to send. Returns
    how many events became unsent.
    """
    lo, hi = conn.execute(
        "SELECT (SELECT MIN(seq) FROM outbox), (SELECT MAX(seq) FROM outbox)").fetchone()
    if lo is None:
        return 0
    conn.execute("UPDATE outbox_confirmed SET seq = MIN(seq, ?) WHERE id = 1", (first - 1,))
    first, last = max(first, lo), min(last, hi)
    if last < first:
        return 0
    rows = conn.execute("SELECT first, last FROM outbox_acked WHERE first <= ? AND last >= ?",
                        (last, first)).fetchall()
    unsent = 0
    for a, b in rows:  # cut [first, last] out of each range it overlaps
        conn.execute("DELETE FROM outbox_acked WHERE first = ?", (a,))
        unsent += min(b, last) - max(a, first) + 1
        if a < first:
            conn.execute("INSERT INTO outbox_acked(first, last) VALUES (?, ?)", (a, first - 1))
        if b > last:
            conn.execute("INSERT INTO outbox_acked(first, last) VALUES (?, ?)", (last + 1, b))
    # Prepared batches of the range would be sent as they are: fine, they hold the same
    # events. Those that straddle its ends no longer match a run; the drain builds anew.
    return unsent


def checkpoint(path: Path | str) -> tuple[int, int]:
    """Copy committed WAL pages into the database file, on a connection of its own.

    PASSIVE: never blocks writers and never waits for readers, so it can run in a thread
    while decisions commit. Returns (WAL pages, pages checkpointed).
    """
    conn = sqlite3.connect(str(path), timeout=1)
    try:
        row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(row[1]), int(row[2])
    finally:
        conn.close()


def _trusted_key(row: tuple[Any, ...]) -> TrustedKey:
    purposes = frozenset(Purpose(p) for p in row[2].split(",") if p)
    return TrustedKey(row[0], bytes(row[1]), purposes, row[3])
