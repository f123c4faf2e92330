"""Delivery: HQ confirms to each device what it committed, and asks for what it lacks.

The box keeps every event until HQ confirms it (``edge.delivery``): the broker's PUBACK is
not enough, because a broker may lose what it acknowledged (a crash, or a restart that
forgets the shared subscription, until ingest subscribes again). So, per device, in
``hq_delivery``:

* ``held``: every seq from 1 to ``held`` is in ``hq_event`` (the device's highest seq, or
  the seq before its first open gap). Worked out in the transaction of each batch
  (:func:`note_events`), which also marks a confirmation ``due``.
* ``last_seq``: the device's newest seq as its presence or report last said
  (:func:`note_last_seq`): a tail HQ lacks opens no gap, this is how HQ learns of it.
* ``ask_from``..``ask_to``: what HQ lacks (the first open gap, or the tail up to
  ``last_seq``), asked for at ``ask_at`` and again with a doubling wait while it stays
  missing (a database restored from a backup asks every box this way: each box's presence,
  retained at the broker, tells its newest seq when ingest subscribes).

The one fan-out sender (``hq.ingest.worker``) takes what is due (:func:`take_due`),
coalesced (one confirmation per device, of its latest ``held``) and at most one per
``confirm_every_s`` per device, and publishes it signed on the device's ``hq`` topic.
Confirmations and resend requests of a device share one version sequence, a millisecond
clock (:class:`Versions`): it keeps rising across a database restored from a backup, where
a database counter would go back and the box would ignore the restored HQ as stale.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from edge.keys import SigningKey
from hq.db import Cursor, Database
from sync.contract import Confirmed, DataKind, HqData, ResendRequest, Topics, seal

CONFIRM_EVERY_S: Final = 1.0  # at most one confirmation per device per this long
ASK_AFTER_S: Final = 5.0  # a gap may heal by itself (two workers commit out of order)
ASK_MAX_S: Final = 600.0  # the longest wait between two requests for the same range
TAKE_LIMIT: Final = 500  # messages per sender round


@dataclass(frozen=True, slots=True)
class DeliveryTiming:
    """How fast HQ confirms and asks (tests shorten these)."""

    confirm_every_s: float = CONFIRM_EVERY_S
    ask_after_s: float = ASK_AFTER_S
    ask_max_s: float = ASK_MAX_S


@dataclass(frozen=True, slots=True)
class Delivery:
    """A confirmation or resend request to send to one device."""

    store: str
    device: str
    kind: DataKind
    body: dict[str, int | str]


class Versions:
    """Versions for delivery messages: a millisecond clock that never repeats or goes back."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        """Versions from ``clock`` (Unix seconds)."""
        self._clock = clock
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        """The next version."""
        with self._lock:
            now_ms = int(self._clock() * 1000)
            self._last = max(self._last + 1, now_ms)
            return self._last


def note_events(cur: Cursor, store: str, device: str, max_seq: int, now: float,
                timing: DeliveryTiming) -> Callable[[], None]:
    """After a batch of ``device`` (in its transaction): what HQ holds, a confirmation due.

    One upsert in the usual case (no gap, nothing asked): this runs for every batch.
    Returns the rest, which reads the upsert's row and plans a resend request: run it in
    the same transaction before anything else touches the device's delivery or gaps (in
    pipeline mode the server stores the batch meanwhile; ``EventStore`` defers it so).
    """
    mine = cur.another()  # its row is read later: other statements may run on ``cur``
    mine.execute("INSERT INTO hq_delivery(device, store, held, due) VALUES (?, ?, COALESCE("
                 "(SELECT MIN(seq_from) FROM hq_gap WHERE device=? AND missing>0) - 1, ?), 1)"
                 " ON CONFLICT (device) DO UPDATE SET held=excluded.held, due=1"
                 " RETURNING held, last_seq, ask_from, ask_to", (device, store, device, max_seq))
    return lambda: _plan_ask(cur, device, max_seq, now, timing, tuple(mine.fetchone()))


def note_last_seq(cur: Cursor, store: str, device: str, last_seq: int, max_seq: int,
                  now: float, timing: DeliveryTiming, unconfirmed: int | None = None) -> None:
    """A presence or report said the device's newest seq (in its transaction).

    Also makes a confirmation due: a box that reconnects learns what HQ holds. Not when a
    presence says nothing waits on HQ (``unconfirmed`` 0) and HQ holds the device's newest
    seq: every decision's presence would otherwise cost the box a signed no-op to verify.
    """
    _upsert(cur, store, device)
    held = _held(cur, device, max_seq)
    settled = unconfirmed == 0 and held >= last_seq
    cur.execute("UPDATE hq_delivery SET last_seq=CASE WHEN last_seq>? THEN last_seq ELSE ?"
                " END, held=?, due=CASE WHEN ? THEN due ELSE 1 END,"
                " unconfirmed=COALESCE(?, unconfirmed) WHERE device=?",
                (last_seq, last_seq, held, settled, unconfirmed, device))
    _plan_ask(cur, device, max_seq, now, timing)


def _upsert(cur: Cursor, store: str, device: str) -> None:
    cur.execute("INSERT INTO hq_delivery(device, store) VALUES (?,?)"
                " ON CONFLICT (device) DO NOTHING", (device, store))


def _held(cur: Cursor, device: str, max_seq: int) -> int:
    """Every seq up to this is in ``hq_event``: before the first open gap, else ``max_seq``."""
    cur.execute("SELECT MIN(seq_from) FROM hq_gap WHERE device=? AND missing>0", (device,))
    row = cur.fetchone()
    return max_seq if row is None or row[0] is None else int(row[0]) - 1


def _plan_ask(cur: Cursor, device: str, max_seq: int, now: float, timing: DeliveryTiming,
              row: tuple[Any, ...] | None = None) -> None:
    """Ask for the first range HQ lacks; a new range waits ``ask_after_s`` first.

    ``row``: the device's ``(held, last_seq, ask_from, ask_to)`` if the caller has it.
    """
    if row is None:
        cur.execute("SELECT held, last_seq, ask_from, ask_to FROM hq_delivery WHERE device=?",
                    (device,))
        row = tuple(cur.fetchone())
    held, last_seq, ask_from, ask_to = row
    want: tuple[int, int] | None = None
    if held < max_seq:  # a gap: up to its end
        cur.execute("SELECT seq_to FROM hq_gap WHERE device=? AND seq_from=?",
                    (device, held + 1))
        row = cur.fetchone()
        want = (held + 1, int(row[0]) if row else max_seq)
    elif held < last_seq:  # a tail HQ never received
        want = (held + 1, int(last_seq))
    if want is None:
        if ask_from is not None:  # else nothing is asked: ask_to and ask_at NULL, asks 0
            cur.execute("UPDATE hq_delivery SET ask_from=NULL, ask_to=NULL, ask_at=NULL,"
                        " asks=0 WHERE device=?", (device,))
    elif want != (ask_from, ask_to):
        cur.execute("UPDATE hq_delivery SET ask_from=?, ask_to=?, ask_at=?, asks=0"
                    " WHERE device=?", (want[0], want[1], now + timing.ask_after_s, device))


def take_due(db: Database, now: float, timing: DeliveryTiming,
             limit: int = TAKE_LIMIT) -> list[Delivery]:
    """Confirmations and resend requests due now, marked as sent (one transaction).

    A confirmation lost on the way costs nothing lasting: the box resends what stays
    unconfirmed, and each batch or presence makes another one due.

    Raises:
        hq.db.DbError: the database failed.
    """
    out: list[Delivery] = []
    with db.tx() as cur:
        cur.execute("SELECT device, store, held FROM hq_delivery WHERE due=1 AND"
                    " (confirmed_at IS NULL OR confirmed_at<=?) ORDER BY device LIMIT ?",
                    (now - timing.confirm_every_s, limit))
        for device, store, held in cur.fetchall():
            out.append(Delivery(str(store), str(device), DataKind.CONFIRMED,
                                Confirmed(str(device), int(held)).to_dict()))
            cur.execute("UPDATE hq_delivery SET due=0, confirmed=?, confirmed_at=?"
                        " WHERE device=?", (held, now, device))
        cur.execute("SELECT device, store, ask_from, ask_to, asks FROM hq_delivery WHERE"
                    " ask_from IS NOT NULL AND ask_at<=? ORDER BY ask_at LIMIT ?",
                    (now, limit))
        for device, store, first, last, asks in cur.fetchall():
            out.append(Delivery(str(store), str(device), DataKind.RESEND,
                                ResendRequest(str(device), int(first), int(last)).to_dict()))
            wait = min(timing.ask_after_s * 2 ** min(int(asks) + 1, 20), timing.ask_max_s)
            cur.execute("UPDATE hq_delivery SET asks=asks+1, asked_at=?, ask_at=?"
                        " WHERE device=?", (now, now + wait, device))
    return out


def sealed(d: Delivery, signer: SigningKey, version: int, now: float,
           topics: Topics) -> tuple[str, bytes]:
    """``(topic, payload)``: ``d`` signed by the fan-out signer, for the device's topic."""
    env = seal(signer, HqData(d.kind, d.store, version, now, dict(d.body)))
    return topics.hq(d.store, d.device), env.encode()
