"""The persistent print queue: slips wait here until the printer takes them, across restarts.

Its own SQLite file (``<home>/printq.sqlite``; WAL, ``synchronous=FULL``), apart from the
ledger: a stuck printer never holds the ledger's write lock, and the queue may be deleted
without losing a decision.

A job's life::

    queued --mark_printing--> printing --mark_printed--> printed
      ^                          |
      +--mark_failed(retry=True)-+--mark_failed(retry=False)--> failed_permanently

The exactly-once rule: a job is marked ``printing`` (committed to disk) *before* the first
byte goes to the printer, and it goes back to ``queued`` only when the driver knows that
not one byte of it was written (connect refused, printer reported offline or out of paper,
a write timeout before any byte was accepted). If a write fails after some bytes went out,
or the process dies while a job is ``printing`` (found on the next open), the slip may be
on paper, whole or in part: the job becomes ``failed_permanently`` with the reason, and is
never sent again by itself. The cashier sees it and reprints (:meth:`reprint_last`) if the
slip is missing; a reprint is a new job that points at the original.
"""

from __future__ import annotations

import enum
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edge.printdoc import Document, DocumentError

QUEUE_NAME = "printq.sqlite"
INTERRUPTED = ("interrupted while printing (the box stopped mid-job): not sent again, so "
               "that no slip prints twice; reprint it if it is missing")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS job(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    doc TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    printed_at REAL,
    reprint_of INTEGER
);
CREATE INDEX IF NOT EXISTS job_state ON job(state, id);
"""


class QueueError(Exception):
    """Base of the print queue's errors."""


class QueueStorageError(QueueError):
    """The queue file cannot be opened or written (disk full, read-only, corrupt)."""


class JobStateError(QueueError):
    """A job is not in the state the call needs (e.g. marking a queued job printed)."""


class JobState(enum.StrEnum):
    """Where a job is in its life (see the module docstring)."""

    QUEUED = "queued"
    PRINTING = "printing"
    PRINTED = "printed"
    FAILED_PERMANENTLY = "failed_permanently"


@dataclass(frozen=True, slots=True)
class Job:
    """One queued slip."""

    id: int
    kind: str
    doc_json: str
    state: JobState
    attempts: int
    last_error: str
    created_at: float
    updated_at: float
    printed_at: float | None
    reprint_of: int | None

    @property
    def doc(self) -> Document:
        """The document to print.

        Raises:
            DocumentError: the stored JSON is damaged.
        """
        return Document.from_json(self.doc_json)

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready summary (no document), for the local API and the UI."""
        return {"id": self.id, "kind": self.kind, "state": self.state.value,
                "attempts": self.attempts, "last_error": self.last_error,
                "created_at": self.created_at, "printed_at": self.printed_at,
                "reprint_of": self.reprint_of}


_COLS = ("id, kind, doc, state, attempts, last_error, created_at, updated_at, printed_at, "
         "reprint_of")


def _job(row: tuple[object, ...]) -> Job:
    (jid, kind, doc, state, attempts, err, created, updated, printed, reprint_of) = row
    return Job(int(str(jid)), str(kind), str(doc), JobState(str(state)), int(str(attempts)),
               str(err), float(str(created)), float(str(updated)),
               None if printed is None else float(str(printed)),
               None if reprint_of is None else int(str(reprint_of)))


class PrintQueue:
    """The queue on one SQLite file. Thread-safe (one lock around the connection).

    Opening it recovers from a crash: jobs left ``printing`` become ``failed_permanently``
    (see the module docstring for why they are not retried).
    """

    def __init__(self, path: Path, now: Callable[[], float] = time.time) -> None:
        """Open or create the queue at ``path``.

        Raises:
            QueueStorageError: the file cannot be opened or is not a queue.
        """
        self.path = path
        self._now = now
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(str(path), isolation_level=None,
                                         check_same_thread=False, timeout=10)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA cache_size=-256")  # a small queue; keeps RSS down
            self._conn.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise QueueStorageError(f"print queue {path}: {exc}") from None
        self.recovered = self._write(
            "UPDATE job SET state=?, last_error=?, updated_at=? WHERE state=?",
            (JobState.FAILED_PERMANENTLY, INTERRUPTED, self._now(), JobState.PRINTING))

    @classmethod
    def in_home(cls, home: Path) -> PrintQueue:
        """The queue of a box home (``<home>/printq.sqlite``)."""
        return cls(home / QUEUE_NAME)

    def _write(self, sql: str, args: tuple[object, ...]) -> int:
        with self._lock:
            try:
                cur = self._conn.execute(sql, args)
            except sqlite3.Error as exc:
                raise QueueStorageError(f"print queue {self.path}: {exc}") from None
            return cur.rowcount

    def _read(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with self._lock:
            try:
                return list(self._conn.execute(sql, args))
            except sqlite3.Error as exc:
                raise QueueStorageError(f"print queue {self.path}: {exc}") from None

    def enqueue(self, doc: Document, reprint_of: int | None = None) -> int:
        """Add a job; it is on disk when this returns.

        Raises:
            QueueStorageError: it could not be written (the caller must say so: the slip
                will not print).
        """
        now = self._now()
        with self._lock:
            try:
                cur = self._conn.execute(
                    "INSERT INTO job(kind, doc, state, created_at, updated_at, reprint_of) "
                    "VALUES (?,?,?,?,?,?)",
                    (doc.job_kind, doc.to_json(), JobState.QUEUED, now, now, reprint_of))
            except sqlite3.Error as exc:
                raise QueueStorageError(f"print queue {self.path}: {exc}") from None
            assert cur.lastrowid is not None
            return cur.lastrowid

    def get(self, job_id: int) -> Job:
        """One job.

        Raises:
            JobStateError: no such job.
        """
        rows = self._read(f"SELECT {_COLS} FROM job WHERE id=?", (job_id,))
        if not rows:
            raise JobStateError(f"no print job {job_id}")
        return _job(rows[0])

    def next_job(self) -> Job | None:
        """The oldest queued job whose document is readable, or None.

        A job whose stored document is damaged is failed permanently with the reason (it
        could never print) and the next one is returned.
        """
        while True:
            rows = self._read(f"SELECT {_COLS} FROM job WHERE state=? ORDER BY id LIMIT 1",
                              (JobState.QUEUED,))
            if not rows:
                return None
            job = _job(rows[0])
            try:
                job.doc  # noqa: B018 - parse now, so a damaged job cannot block the queue
            except DocumentError as exc:
                self._transition(job.id, JobState.QUEUED, JobState.FAILED_PERMANENTLY,
                                 f"stored document is damaged: {exc}")
                continue
            return job

    def _transition(self, job_id: int, old: JobState, new: JobState, error: str | None = None,
                    attempt: bool = False) -> None:
        now = self._now()
        sets = "state=?, updated_at=?"
        args: list[object] = [new, now]
        if error is not None:
            sets += ", last_error=?"
            args.append(error)
        if attempt:
            sets += ", attempts=attempts+1"
        if new is JobState.PRINTED:
            sets += ", printed_at=?"
            args.append(now)
        if self._write(f"UPDATE job SET {sets} WHERE id=? AND state=?",
                       (*args, job_id, old)) != 1:
            raise JobStateError(f"print job {job_id} is not {old.value} "
                                f"(it is {self._state(job_id)})")

    def _state(self, job_id: int) -> str:
        rows = self._read("SELECT state FROM job WHERE id=?", (job_id,))
        return str(rows[0][0]) if rows else "missing"

    def mark_printing(self, job_id: int) -> None:
        """Record that the job's bytes are about to be sent (call before the first byte).

        Raises:
            JobStateError: the job is not queued.
        """
        self._transition(job_id, JobState.QUEUED, JobState.PRINTING, attempt=True)

    def mark_printed(self, job_id: int) -> None:
        """Record that every byte of the job was written to the printer.

        Raises:
            JobStateError: the job is not printing.
        """
        self._transition(job_id, JobState.PRINTING, JobState.PRINTED, "")

    def mark_failed(self, job_id: int, error: str, retry: bool) -> None:
        """Record a failed attempt.

        ``retry`` True puts the job back in the queue: only when no byte of it reached the
        printer. False ends it as ``failed_permanently`` (some bytes may be on paper, or it
        can never print); it is then only printed again by :meth:`reprint_last`.

        Raises:
            JobStateError: the job is not printing.
        """
        self._transition(job_id, JobState.PRINTING,
                         JobState.QUEUED if retry else JobState.FAILED_PERMANENTLY, error)

    def waiting(self) -> int:
        """How many jobs are queued or printing."""
        rows = self._read("SELECT COUNT(*) FROM job WHERE state IN (?, ?)",
                          (JobState.QUEUED, JobState.PRINTING))
        return int(str(rows[0][0]))

    def recent(self, limit: int = 20) -> list[Job]:
        """The newest jobs, newest first."""
        return [_job(r) for r in self._read(
            f"SELECT {_COLS} FROM job ORDER BY id DESC LIMIT ?", (limit,))]

    def reprint_last(self, n: int = 1) -> list[int]:
        """Queue again the last ``n`` finished jobs (printed or failed), oldest first.

        Jobs still queued or printing are skipped: they will print anyway.

        Raises:
            ValueError: ``n`` is not 1-50.
            QueueStorageError: the new jobs could not be written.
        """
        if not 1 <= n <= 50:
            raise ValueError(f"reprint count must be 1-50, not {n}")
        rows = self._read(f"SELECT {_COLS} FROM job WHERE state IN (?, ?) ORDER BY id DESC "
                          "LIMIT ?", (JobState.PRINTED, JobState.FAILED_PERMANENTLY, n))
        ids = []
        for job in reversed([_job(r) for r in rows]):
            try:
                doc = job.doc
            except DocumentError:
                continue  # a damaged job cannot be reprinted either; it says why already
            ids.append(self.enqueue(doc, reprint_of=job.reprint_of or job.id))
        return ids

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._conn.close()
