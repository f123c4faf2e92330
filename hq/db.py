"""HQ's database behind one small seam: SQLite by default, PostgreSQL by URL.

Everything above this module writes portable SQL with ``?`` placeholders and
``INSERT ... ON CONFLICT`` (SQLite >= 3.24 and PostgreSQL >= 9.5 both take it); this module
picks the driver from the URL, rewrites placeholders for psycopg, and fills the two
type spellings that differ (``{serial}`` and ``{float}``) in the schema.

URLs: ``sqlite:///relative/or/absolute.sqlite`` (three slashes, then the path),
``postgresql://user:pass@host/dbname`` (needs the ``hq-postgres`` extra: psycopg 3).

Schema (version 1):

- ``hq_event``: every event once; ``UNIQUE(device, seq)`` is the de-duplication.
  Decision fields are lifted into columns (``kind``, ``code_id``, ``campaign_id``,
  ``accepted``, ``reason``) so reports need no JSON functions.
- ``hq_device``: per device: store, highest seq seen, presence and reported config.
- ``hq_store``: every store HQ knows (fan-out targets for coupons valid at all stores).
- ``hq_gap``: a range of missing seqs per device, ``missing`` counting down as they fill.
- ``hq_code_use``: net uses of a code per store (accepted minus voided), with its limit
  and its eligible stores (comma-separated, empty for all).
- ``hq_conflict``: a code used over its limit across two or more stores.
- ``hq_reject``: a malformed message, with its reason, a short preview and (up to 1 MiB)
  the whole payload in base64, so nothing a box sent is lost.
- ``hq_version``: the last version HQ gave per ``(store, kind)`` (config, orders, remote uses).
- ``hq_outbox``: fan-out to publish: ``body`` at commit; ``version`` and the signed
  ``payload`` when first sent (in id order, by the one fan-out sender); ``sent_at`` on PUBACK.
- ``hq_issued``, ``hq_device_use``, ``hq_catch_up``: HQ's own record of what it issued,
  uses per device, and catch-ups given (``docs/security.md``).
- ``hq_store_registry``: every store's name, place, join link, opening hours and pickup
  places per slot (replaces ``web_store``, copied once); ``hq_assignment``: orders
  assigned to the nearest store (``hq.orders``).
- ``web_*``: the customer pages' stores (legacy), campaigns, customers, card claims, coupons and
  the pickup orders pushed for a customer, workshop sessions and sign-ups
  (``docs/web.md``).
- ``hq_delivery``: per device, what HQ holds without a gap, the confirmation it owes and
  the range it asks the box to resend (``hq.ingest.delivery``).
- ``dash_*``: the dashboard's aggregates per store and day, ``hq_operator`` and
  ``hq_session`` its operators and their sessions (``docs/dashboard.md``).
"""

from __future__ import annotations

import importlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from edge.credentials import redact

SCHEMA_VERSION: Final = 1

# The advisory lock id schema creation holds on PostgreSQL (any constant; 'se' 'sc').
_SCHEMA_LOCK: Final = 0x7365_7363

_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS hq_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS hq_event (id {serial}, device TEXT NOT NULL,"
    " store TEXT NOT NULL, seq BIGINT NOT NULL, event_id TEXT NOT NULL, type TEXT NOT NULL,"
    " at {float} NOT NULL, clock_trusted INTEGER NOT NULL, body TEXT NOT NULL,"
    " received_at {float} NOT NULL, kind TEXT, code_id TEXT, campaign_id TEXT,"
    " accepted INTEGER, reason TEXT, UNIQUE (device, seq))",
    "CREATE INDEX IF NOT EXISTS hq_event_store_type ON hq_event (store, type, at)",
    "CREATE INDEX IF NOT EXISTS hq_event_code ON hq_event (code_id)",
    "CREATE TABLE IF NOT EXISTS hq_device (device TEXT PRIMARY KEY, store TEXT NOT NULL,"
    " max_seq BIGINT NOT NULL DEFAULT 0, last_seen {float}, state TEXT, software TEXT,"
    " config_version BIGINT, backlog BIGINT, clock_trusted INTEGER, presence_at {float},"
    " reported_version BIGINT, reported_rejected BIGINT, reported_error TEXT,"
    " reported_at {float}, alarm INTEGER, data_versions TEXT)",
    "CREATE TABLE IF NOT EXISTS hq_store (store TEXT PRIMARY KEY, first_seen {float} NOT NULL)",
    "CREATE TABLE IF NOT EXISTS hq_gap (device TEXT NOT NULL, store TEXT NOT NULL,"
    " seq_from BIGINT NOT NULL, seq_to BIGINT NOT NULL, missing BIGINT NOT NULL,"
    " found_at {float} NOT NULL, filled_at {float}, PRIMARY KEY (device, seq_from))",
    "CREATE TABLE IF NOT EXISTS hq_code_use (code_id TEXT NOT NULL, store TEXT NOT NULL,"
    " campaign_id TEXT, uses BIGINT NOT NULL, max_uses BIGINT NOT NULL, last_at {float},"
    " last_event TEXT, eligible TEXT NOT NULL DEFAULT '', PRIMARY KEY (code_id, store))",
    "CREATE TABLE IF NOT EXISTS hq_conflict (code_id TEXT PRIMARY KEY, stores TEXT NOT NULL,"
    " uses BIGINT NOT NULL, max_uses BIGINT NOT NULL, found_at {float} NOT NULL,"
    " updated_at {float} NOT NULL)",
    "CREATE TABLE IF NOT EXISTS hq_reject (id {serial}, received_at {float} NOT NULL,"
    " topic TEXT NOT NULL, store TEXT, device TEXT, reason TEXT NOT NULL,"
    " detail TEXT NOT NULL, preview TEXT NOT NULL, raw TEXT)",
    "CREATE TABLE IF NOT EXISTS hq_version (store TEXT NOT NULL, kind TEXT NOT NULL,"
    " version BIGINT NOT NULL, at {float} NOT NULL, PRIMARY KEY (store, kind))",
    "CREATE TABLE IF NOT EXISTS hq_outbox (id {serial}, store TEXT NOT NULL,"
    " kind TEXT NOT NULL, topic TEXT NOT NULL, body TEXT NOT NULL, version BIGINT,"
    " payload TEXT, created_at {float} NOT NULL, sent_at {float})",
    "CREATE INDEX IF NOT EXISTS hq_outbox_unsent ON hq_outbox (sent_at, id)",
    # The pickup orders pushed to each store, as last pushed: the catch-up for a box that
    # had no broker session (new, replaced, or offline past its session expiry).
    "CREATE TABLE IF NOT EXISTS hq_order (store TEXT NOT NULL, order_id TEXT NOT NULL,"
    " body TEXT NOT NULL, window_end BIGINT NOT NULL, updated_at {float} NOT NULL,"
    " PRIMARY KEY (store, order_id))",
    # -- trust between boxes and HQ (docs/security.md) ------------------------- begin --
    # What HQ issued, recorded when issued (hq.issuing.issued.record_issued): fan-out and
    # conflicts take a coupon's eligible stores and max uses from here, never from a box.
    "CREATE TABLE IF NOT EXISTS hq_issued (code_id TEXT PRIMARY KEY, kind TEXT NOT NULL,"
    " campaign_id TEXT, eligible TEXT NOT NULL DEFAULT '', max_uses BIGINT NOT NULL,"
    " valid_from BIGINT, valid_until BIGINT, key_id TEXT, issued_at {float} NOT NULL)",
    # Net uses of a code per device (hq_code_use has them per store): the other boxes of
    # the same store are told of one box's uses, and a conflict needs no second store.
    "CREATE TABLE IF NOT EXISTS hq_device_use (code_id TEXT NOT NULL, device TEXT NOT NULL,"
    " store TEXT NOT NULL, uses BIGINT NOT NULL, last_at {float},"
    " PRIMARY KEY (code_id, device))",
    "CREATE INDEX IF NOT EXISTS hq_device_use_store ON hq_device_use (store, code_id)",
    # When each device was last answered a catch-up: at most one per interval.
    "CREATE TABLE IF NOT EXISTS hq_catch_up (device TEXT PRIMARY KEY, last_at {float} NOT NULL)",
    # A database from before per-device counts: its coupon uses so far, once (both SQLite
    # and PostgreSQL test the uncorrelated NOT EXISTS once, before any scan).
    "INSERT INTO hq_device_use(code_id, device, store, uses, last_at) SELECT code_id, device,"
    " MAX(store), SUM(CASE WHEN type='void' THEN -1 ELSE 1 END), MAX(at) FROM hq_event"
    " WHERE kind='coupon' AND code_id IS NOT NULL AND ((type='decision' AND accepted=1)"
    " OR type='void') AND NOT EXISTS (SELECT 1 FROM hq_meta WHERE key='device_use')"
    " GROUP BY code_id, device",
    "INSERT INTO hq_meta(key, value) VALUES ('device_use', 'counted') ON CONFLICT (key)"
    " DO NOTHING",
    # -- trust between boxes and HQ ----------------------------------------------- end --
    # -- web: HQ's customer pages (hq/web/, docs/web.md) ------------------------------
    # Legacy: the pages' store list before hq_store_registry; its rows are copied there
    # once (below) and it is no longer read or written (docs/hq.md, "Store registry").
    "CREATE TABLE IF NOT EXISTS web_store (store TEXT PRIMARY KEY, name TEXT NOT NULL,"
    " address TEXT NOT NULL DEFAULT '', lat {float}, lon {float},"
    " join_url TEXT NOT NULL DEFAULT '', updated_at {float} NOT NULL)",
    # A campaign whose coupons the pages hand out: kind 'card' (the packaging-card welcome
    # gift) or 'link' (a livestream or group link). issued counts against budget (0: none).
    "CREATE TABLE IF NOT EXISTS web_campaign (campaign_id TEXT PRIMARY KEY,"
    " kind TEXT NOT NULL, name TEXT NOT NULL, benefit_kind INTEGER NOT NULL,"
    " benefit_value BIGINT NOT NULL, benefit_item TEXT NOT NULL, starts BIGINT NOT NULL,"
    " ends BIGINT NOT NULL, coupon_days BIGINT NOT NULL, stores TEXT NOT NULL,"
    " claim_store_only INTEGER NOT NULL, per_customer BIGINT NOT NULL,"
    " budget BIGINT NOT NULL, issued BIGINT NOT NULL DEFAULT 0, created_at {float} NOT NULL)",
    # Claims of a link campaign per customer: the per-customer limit holds in one UPDATE.
    "CREATE TABLE IF NOT EXISTS web_campaign_customer (campaign_id TEXT NOT NULL,"
    " customer TEXT NOT NULL, claims BIGINT NOT NULL, PRIMARY KEY (campaign_id, customer))",
    # A customer (the first-party cookie id) who gave a phone; consent only when ticked.
    "CREATE TABLE IF NOT EXISTS web_customer (customer TEXT PRIMARY KEY,"
    " created_at {float} NOT NULL, phone TEXT, marketing_consent INTEGER NOT NULL DEFAULT 0,"
    " consent_at {float})",
    # A packaging card claimed once: PRIMARY KEY (device, serial) is the once.
    "CREATE TABLE IF NOT EXISTS web_card_claim (device TEXT NOT NULL, serial BIGINT NOT NULL,"
    " store TEXT NOT NULL, issued_at BIGINT NOT NULL, receipt_ref TEXT NOT NULL,"
    " claimed_at {float} NOT NULL, customer TEXT NOT NULL, coupon_id TEXT,"
    " PRIMARY KEY (device, serial))",
    # Every coupon the pages minted, with its attribution (card or campaign link) and the
    # idempotency key of the request that minted it (a retry finds it instead of minting).
    "CREATE TABLE IF NOT EXISTS web_coupon (coupon_id TEXT PRIMARY KEY,"
    " code TEXT NOT NULL, customer TEXT NOT NULL, campaign_id TEXT NOT NULL,"
    " source TEXT NOT NULL, store TEXT NOT NULL, card_device TEXT, card_serial BIGINT,"
    " idem_key TEXT NOT NULL UNIQUE, issued_at {float} NOT NULL,"
    " valid_until BIGINT NOT NULL, stores TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS web_coupon_customer ON web_coupon (customer, issued_at)",
    # A pickup order HQ pushed for a web customer (the orders file's ``web_customer``; never
    # sent to the box), with the signed pickup code the customer's page shows as a QR.
    # Written in the push's version transaction; status comes from hq_order and hq_event.
    "CREATE TABLE IF NOT EXISTS web_order (store TEXT NOT NULL, order_id TEXT NOT NULL,"
    " customer TEXT NOT NULL, number TEXT NOT NULL, code TEXT NOT NULL,"
    " window_start BIGINT NOT NULL, window_end BIGINT NOT NULL, created_at {float} NOT NULL,"
    " PRIMARY KEY (store, order_id))",
    "CREATE INDEX IF NOT EXISTS web_order_customer ON web_order (customer, window_start)",
    # A workshop session (hq/web/workshops.py): ``taken`` seats of ``capacity``, held by one
    # conditional UPDATE (taken + party <= capacity) so no race oversells it; ``changes``
    # counts the session's changes (every sign-up, promotion and cancellation bumps it
    # first, so they serialise on the row and their pushes to the box leave in order).
    "CREATE TABLE IF NOT EXISTS web_workshop (session_id TEXT PRIMARY KEY,"
    " store TEXT NOT NULL, title TEXT NOT NULL, starts BIGINT NOT NULL, ends BIGINT NOT NULL,"
    " capacity BIGINT NOT NULL, party_max BIGINT NOT NULL, note TEXT NOT NULL DEFAULT '',"
    " early_s BIGINT NOT NULL, late_s BIGINT NOT NULL, status TEXT NOT NULL DEFAULT 'open',"
    " taken BIGINT NOT NULL DEFAULT 0, changes BIGINT NOT NULL DEFAULT 0,"
    " created_at {float} NOT NULL)",
    "CREATE INDEX IF NOT EXISTS web_workshop_store ON web_workshop (store, starts)",
    # A sign-up: status 'ticket' (a seat, ``code`` the signed ticket), 'waitlist' (in id
    # order) or 'cancelled'. ``idem_key`` makes a resubmitted form find its sign-up.
    "CREATE TABLE IF NOT EXISTS web_ticket (id {serial}, ticket_id TEXT NOT NULL UNIQUE,"
    " session_id TEXT NOT NULL, customer TEXT NOT NULL, holder TEXT NOT NULL,"
    " party BIGINT NOT NULL, status TEXT NOT NULL, code TEXT, idem_key TEXT NOT NULL UNIQUE,"
    " created_at {float} NOT NULL, ticketed_at {float}, cancelled_at {float})",
    "CREATE INDEX IF NOT EXISTS web_ticket_session ON web_ticket (session_id, status, id)",
    "CREATE INDEX IF NOT EXISTS web_ticket_customer ON web_ticket (customer, created_at)",
    # -- end web ----------------------------------------------------------------------
    # -- store registry and order assignment (hq/storeregistry.py, hq/orders/) --------
    # One record per store, read by the customer pages and the assigner: name, address,
    # coordinates, group join link, opening hours (Monday first, '' = takes no pickups)
    # and pickup places per one-hour slot.
    "CREATE TABLE IF NOT EXISTS hq_store_registry (store TEXT PRIMARY KEY,"
    " name TEXT NOT NULL, address TEXT NOT NULL DEFAULT '', lat {float}, lon {float},"
    " join_url TEXT NOT NULL DEFAULT '', hours TEXT NOT NULL DEFAULT '',"
    " pickup_per_slot BIGINT NOT NULL DEFAULT 0, updated_at {float} NOT NULL)",
    # A database from before the registry: web_store's stores, once, without hours.
    "INSERT INTO hq_store_registry(store, name, address, lat, lon, join_url, updated_at)"
    " SELECT store, name, address, lat, lon, join_url, updated_at FROM web_store"
    " WHERE NOT EXISTS (SELECT 1 FROM hq_meta WHERE key='store_registry')"
    " ON CONFLICT (store) DO NOTHING",
    "INSERT INTO hq_meta(key, value) VALUES ('store_registry', 'from web_store')"
    " ON CONFLICT (key) DO NOTHING",
    # An order assigned to a store (edge-hq orders assign): the order as pushed (body),
    # its slot's place (counted per store and slot: the capacity used), its pickup code,
    # and pushed_at once the store's push went out. The key makes assignment once per order.
    "CREATE TABLE IF NOT EXISTS hq_assignment (order_id TEXT PRIMARY KEY,"
    " store TEXT NOT NULL, slot BIGINT NOT NULL, distance_m {float} NOT NULL,"
    " body TEXT NOT NULL, web_customer TEXT NOT NULL DEFAULT '', code TEXT NOT NULL,"
    " assigned_at {float} NOT NULL, pushed_at {float})",
    "CREATE INDEX IF NOT EXISTS hq_assignment_slot ON hq_assignment (slot, store)",
    # The row every assignment run updates first: runs take turns (on PostgreSQL too).
    "INSERT INTO hq_meta(key, value) VALUES ('assign_turn', '0') ON CONFLICT (key)"
    " DO NOTHING",
    # -- end of store registry and order assignment --
    # -- delivery (hq/ingest/delivery.py): what HQ confirmed to each device, what it asks --
    # ``held``: every seq 1..held is in hq_event; ``last_seq``: the device's newest seq as
    # its presence or report said; ``due``: a confirmation of ``held`` should go out;
    # ``confirmed``/``confirmed_at``: the last one sent; ``ask_from``..``ask_to``: the range
    # HQ lacks, asked for next at ``ask_at`` (``asks`` so far, the last at ``asked_at``);
    # ``unconfirmed``: events the box holds sent but unconfirmed (its presence).
    "CREATE TABLE IF NOT EXISTS hq_delivery (device TEXT PRIMARY KEY, store TEXT NOT NULL,"
    " held BIGINT NOT NULL DEFAULT 0, last_seq BIGINT NOT NULL DEFAULT 0,"
    " due INTEGER NOT NULL DEFAULT 0, confirmed BIGINT, confirmed_at {float},"
    " ask_from BIGINT, ask_to BIGINT, ask_at {float}, asks INTEGER NOT NULL DEFAULT 0,"
    " asked_at {float}, unconfirmed BIGINT)",
    # -- end of delivery --
    # -- dashboard (hq/reports/aggregates.py, docs/dashboard.md) ------------------------
    # Per store and local day (YYYYMMDD): the funnel's steps and totals, kept at ingest (and
    # at a card claim) in the same transaction as the facts; ``edge-hq dashboard rebuild``.
    "CREATE TABLE IF NOT EXISTS dash_day (store TEXT NOT NULL, day INTEGER NOT NULL,"
    " printed BIGINT NOT NULL DEFAULT 0, claimed BIGINT NOT NULL DEFAULT 0,"
    " welcome BIGINT NOT NULL DEFAULT 0, came_back BIGINT NOT NULL DEFAULT 0,"
    " redeemed BIGINT NOT NULL DEFAULT 0, rejected BIGINT NOT NULL DEFAULT 0,"
    " voided BIGINT NOT NULL DEFAULT 0, pickups BIGINT NOT NULL DEFAULT 0,"
    " PRIMARY KEY (store, day))",
    # The chain's pages read a day range over every store: this index covers them.
    "CREATE INDEX IF NOT EXISTS dash_day_day ON dash_day (day, store, printed, claimed,"
    " welcome, came_back, redeemed, rejected, voided, pickups)",
    # The same per store and month (YYYYMM): a year of the chain is 24,000 rows, not 730,000.
    "CREATE TABLE IF NOT EXISTS dash_month (store TEXT NOT NULL, month INTEGER NOT NULL,"
    " printed BIGINT NOT NULL DEFAULT 0, claimed BIGINT NOT NULL DEFAULT 0,"
    " welcome BIGINT NOT NULL DEFAULT 0, came_back BIGINT NOT NULL DEFAULT 0,"
    " redeemed BIGINT NOT NULL DEFAULT 0, rejected BIGINT NOT NULL DEFAULT 0,"
    " voided BIGINT NOT NULL DEFAULT 0, pickups BIGINT NOT NULL DEFAULT 0,"
    " PRIMARY KEY (store, month))",
    "CREATE INDEX IF NOT EXISTS dash_month_month ON dash_month (month, store, printed,"
    " claimed, welcome, came_back, redeemed, rejected, voided, pickups)",
    # The chain's days: dash_day summed over stores, in 16 rows a day (a store's row is its
    # id's last character mod 16), so two ingest workers rarely wait on one row.
    "CREATE TABLE IF NOT EXISTS dash_chain_day (day INTEGER NOT NULL, shard INTEGER NOT NULL,"
    " printed BIGINT NOT NULL DEFAULT 0, claimed BIGINT NOT NULL DEFAULT 0,"
    " welcome BIGINT NOT NULL DEFAULT 0, came_back BIGINT NOT NULL DEFAULT 0,"
    " redeemed BIGINT NOT NULL DEFAULT 0, rejected BIGINT NOT NULL DEFAULT 0,"
    " voided BIGINT NOT NULL DEFAULT 0, pickups BIGINT NOT NULL DEFAULT 0,"
    " PRIMARY KEY (day, shard))",
    # The breakdowns: redemptions by campaign and by channel, rejections by reason.
    "CREATE TABLE IF NOT EXISTS dash_detail (store TEXT NOT NULL, day INTEGER NOT NULL,"
    " metric TEXT NOT NULL, dim TEXT NOT NULL, n BIGINT NOT NULL,"
    " PRIMARY KEY (store, day, metric, dim))",
    "CREATE INDEX IF NOT EXISTS dash_detail_metric ON dash_detail (metric, day, dim, store, n)",
    # Accepted redemptions per web customer: the second one is the customer coming back.
    "CREATE TABLE IF NOT EXISTS dash_customer (customer TEXT PRIMARY KEY,"
    " redemptions BIGINT NOT NULL)",
    # -- end of dashboard --
    # -- operators of HQ's dashboard (hq/web/operators.py) -------------------------------
    # role 'admin' (everything) or 'manager' (their ``store`` only); an argon2id hash.
    "CREATE TABLE IF NOT EXISTS hq_operator (name TEXT PRIMARY KEY, role TEXT NOT NULL,"
    " store TEXT, pw_hash TEXT NOT NULL, created_at {float} NOT NULL)",
    # A signed-in session: the cookie carries a random id; only its SHA-256 is kept.
    "CREATE TABLE IF NOT EXISTS hq_session (id_hash TEXT PRIMARY KEY, operator TEXT NOT NULL,"
    " created_at {float} NOT NULL, expires_at {float} NOT NULL)",
    # -- end of operators --
)

_TYPES: Final = {
    "sqlite": {"serial": "INTEGER PRIMARY KEY AUTOINCREMENT", "float": "REAL"},
    "postgresql": {"serial": "BIGSERIAL PRIMARY KEY", "float": "DOUBLE PRECISION"},
}


class DbError(Exception):
    """The HQ database cannot be opened or used; the message says why."""


class Cursor(Protocol):
    """What a transaction hands out: DB-API cursor essentials."""

    @property
    def rowcount(self) -> int:
        """Rows the last statement changed."""
        ...

    def execute(self, sql: str, params: Sequence[Any] = ...) -> Any:
        """Run one statement."""
        ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> Any:
        """Run one statement for each row."""
        ...

    @property
    def has_rows(self) -> bool:
        """Whether the last statement returns rows (a query, or RETURNING)."""
        ...

    def fetchone(self) -> Any:
        """One row or None."""
        ...

    def fetchall(self) -> list[Any]:
        """Every row."""
        ...

    def another(self) -> Cursor:
        """A second cursor in the same transaction, holding its own statement's rows."""
        ...


@dataclass(frozen=True, slots=True)
class DbUrl:
    """A parsed database URL."""

    dialect: str  # "sqlite" | "postgresql"
    target: str  # file path for SQLite, the whole URL for PostgreSQL

    @classmethod
    def parse(cls, url: str) -> DbUrl:
        """Parse ``sqlite:///path`` or ``postgresql://...``.

        Raises:
            DbError: another scheme, or no path.
        """
        if url.startswith("sqlite:///"):
            path = url[len("sqlite:///"):]
            if not path:
                raise DbError(f"database URL {redact(url)!r} names no file")
            return cls("sqlite", path)
        if url.startswith(("postgresql://", "postgres://")):
            return cls("postgresql", url)
        raise DbError(f"database URL {redact(url)!r}: use sqlite:///PATH or postgresql://...")


def default_url(home: Path) -> str:
    """HQ's default database: ``hq.sqlite`` in the HQ home folder."""
    return f"sqlite:///{home / 'hq.sqlite'}"


def _set_wal(conn: sqlite3.Connection, wait_s: float = 30.0) -> None:
    """Put the database in WAL mode, waiting out other processes doing the same.

    Changing the journal mode needs the exclusive lock, and SQLite answers "database is
    locked" at once, without its busy handler, when two connections that both read the
    header race for it (processes opening a fresh database together: about one start in
    ten with eight of them). So retry, briefly, up to ``wait_s``.
    """
    deadline = time.monotonic() + wait_s
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class Database:
    """One connection, used by one thread at a time (a lock makes that so)."""

    def __init__(self, url: str) -> None:
        """Open (creating the schema if needed) the database at ``url``.

        Raises:
            DbError: bad URL, psycopg missing for PostgreSQL, or the database fails to open.
        """
        self.url = DbUrl.parse(url)
        self.dialect = self.url.dialect
        self._lock = threading.RLock()
        self._conn: Any
        if self.dialect == "sqlite":
            Path(self.url.target).parent.mkdir(parents=True, exist_ok=True)
            try:
                self._conn = sqlite3.connect(self.url.target, isolation_level=None,
                                             check_same_thread=False, timeout=30)
                _set_wal(self._conn)
                # PUBACK follows COMMIT, so COMMIT must reach the disk: synchronous=FULL.
                self._conn.execute("PRAGMA synchronous=FULL")
            except sqlite3.Error as exc:
                raise DbError(f"{self.url.target}: {exc}") from None
        else:
            try:
                psycopg = importlib.import_module("psycopg")
            except ImportError:
                raise DbError("PostgreSQL needs psycopg: pip install 'store-edge[hq-postgres]'"
                              ) from None
            try:
                self._conn = psycopg.connect(self.url.target)
            except Exception as exc:  # psycopg.Error; the module is optional
                raise DbError(f"cannot connect to PostgreSQL: {exc}") from None
        self._create()

    def _sql(self, sql: str) -> str:
        return sql if self.dialect == "sqlite" else sql.replace("?", "%s")

    def _create(self) -> None:
        with self.tx() as cur:
            if self.dialect == "postgresql":
                # Processes starting together (ingest workers, the web service) would each
                # run the schema's migration INSERTs and deadlock on PostgreSQL: one at a
                # time, until this transaction ends (SQLite's BEGIN IMMEDIATE already is).
                cur.execute("SELECT pg_advisory_xact_lock(?)", (_SCHEMA_LOCK,))
            for stmt in _SCHEMA:
                cur.execute(stmt.format(**_TYPES[self.dialect]))
            cur.execute("INSERT INTO hq_meta(key, value) VALUES ('schema', ?)"
                        " ON CONFLICT (key) DO NOTHING", (str(SCHEMA_VERSION),))
            cur.execute("SELECT value FROM hq_meta WHERE key='schema'")
            found = int(cur.fetchone()[0])
        if found > SCHEMA_VERSION:
            raise DbError(f"HQ database has schema {found}, newer than this software's "
                          f"{SCHEMA_VERSION}: upgrade store-edge")

    @contextmanager
    def tx(self, pipelined: bool = False) -> Iterator[Cursor]:
        """A write transaction; commits on exit, rolls back on an exception.

        ``pipelined``: on PostgreSQL, statements are sent without waiting for the server
        (psycopg's pipeline mode) until a row or a row count is read, so the server works
        while the caller prepares what comes next. A statement's error may then surface
        at a later statement; the transaction fails either way. No effect on SQLite.

        Raises:
            DbError: the database refused a statement or the commit.
        """
        with self._lock:
            raw = self._conn.cursor()
            cur = _Translating(raw, self._sql)
            try:
                if self.dialect == "sqlite":
                    # the write lock from the first statement: workers serialise here
                    raw.execute("BEGIN IMMEDIATE")
                    yield cur
                elif pipelined:
                    with self._conn.pipeline() as pipe:
                        cur.sync = pipe.sync
                        yield cur
                else:
                    yield cur
            except BaseException as exc:
                if self.dialect == "sqlite":
                    raw.execute("ROLLBACK")
                else:
                    self._conn.rollback()
                if isinstance(exc, sqlite3.Error) or type(exc).__module__.startswith("psycopg"):
                    raise DbError(str(exc)) from exc
                raise
            try:
                if self.dialect == "sqlite":
                    raw.execute("COMMIT")
                else:
                    self._conn.commit()
            except Exception as exc:
                raise DbError(f"commit failed: {exc}") from exc

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a query (none for a statement that returns no rows), in its own tx."""
        with self.tx() as cur:
            cur.execute(sql, params)
            return [tuple(r) for r in cur.fetchall()] if cur.has_rows else []

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()


class _Translating:
    """A cursor that rewrites ``?`` placeholders for the driver."""

    def __init__(self, raw: Any, translate: Any) -> None:
        self._raw = raw
        self._translate = translate
        # In pipeline mode: waits for every result sent (a row count is not read by a
        # fetch, so nothing else would wait for it).
        self.sync: Callable[[], None] | None = None

    @property
    def rowcount(self) -> int:
        if self.sync is not None:
            self.sync()
        return int(self._raw.rowcount)

    @property
    def has_rows(self) -> bool:
        if self.sync is not None:
            self.sync()
        return self._raw.description is not None

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._raw.execute(self._translate(sql), tuple(params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> Any:
        return self._raw.executemany(self._translate(sql), rows)

    def fetchone(self) -> Any:
        return self._raw.fetchone()  # psycopg waits for the row in pipeline mode

    def fetchall(self) -> list[Any]:
        return list(self._raw.fetchall())

    def another(self) -> _Translating:
        other = _Translating(self._raw.connection.cursor(), self._translate)
        other.sync = self.sync
        return other
