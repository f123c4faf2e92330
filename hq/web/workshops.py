"""Workshop sessions and sign-ups: seats held atomically, a waitlist, signed tickets.

Every change to a session is one transaction that first bumps the session row
(``changes = changes + 1``): on PostgreSQL that takes the row's lock, on SQLite
``BEGIN IMMEDIATE`` already serialises writers, so sign-ups, promotions and cancellations
of one session never interleave and the session state each one queues for the box
(``hq_outbox``, kind ``workshops``) leaves in commit order. A seat is taken by one
conditional UPDATE (``taken + party <= capacity``), so no race oversells a session; a
sign-up that does not fit joins the waitlist, which moves up (first fit, in sign-up order)
when a seat is freed. A ticket is signed (``hq.issuing.minting.mint_ticket``) in the
transaction that gives its seat; a cancellation revokes it by naming it in the session
state the box receives.
"""

from __future__ import annotations

import enum
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge import tokens
from edge.hqdata import SessionStatus
from edge.keys import SigningKey
from hq.db import Cursor, Database
from hq.issuing.minting import mint_ticket, new_coupon_id
from hq.publishing.workshops import queue_session
from sync.contract import Topics

DEFAULT_EARLY_S = 30 * 60  # check-in opens this long before the start (edge-hq workshop add)
DEFAULT_LATE_S = 15 * 60  # and closes this long after the end
MAX_HOLDER = 20  # characters of the name a customer gives (it travels in the ticket)
_SESSION_COLUMNS = ("session_id, store, title, starts, ends, capacity, party_max, note,"
                    " early_s, late_s, status, taken")
_SIGNUP_COLUMNS = "ticket_id, session_id, customer, holder, party, status, code, created_at, id"


class SignupStatus(enum.StrEnum):
    """Where a sign-up stands."""

    TICKET = "ticket"  # holds seats; ``code`` is the signed ticket
    WAITLIST = "waitlist"  # waits for seats, in sign-up order
    CANCELLED = "cancelled"  # the customer cancelled: seats freed, ticket revoked


class SignupRefused(ValueError):
    """A sign-up that cannot be taken; ``code`` names why (a words key's last part)."""

    def __init__(self, code: str, message: str) -> None:
        """Carry the reason code and a sentence."""
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Session:
    """A workshop session HQ defined."""

    session_id: str
    store: str
    title: str
    starts: int
    ends: int
    capacity: int
    party_max: int
    note: str = ""
    early_s: int = DEFAULT_EARLY_S
    late_s: int = DEFAULT_LATE_S
    status: SessionStatus = SessionStatus.OPEN
    taken: int = 0

    def link(self, base_url: str) -> str:
        """The session's sign-up link for the store's group (``/w/{session_id}``)."""
        return base_url.rstrip("/") + f"/w/{self.session_id}"


@dataclass(frozen=True, slots=True)
class Signup:
    """One customer's sign-up for a session."""

    ticket_id: str
    session_id: str
    customer: str
    holder: str
    party: int
    status: SignupStatus
    code: str | None
    created_at: float
    position: int = 0  # on the waitlist: 1 = next in line; 0 otherwise


def _session(row: tuple[Any, ...]) -> Session:
    sid, store, title, starts, ends, cap, pmax, note, early, late, status, taken = row
    return Session(str(sid), str(store), str(title), int(starts), int(ends), int(cap),
                   int(pmax), str(note), int(early), int(late), SessionStatus(status),
                   int(taken))


def _signup(row: tuple[Any, ...], position: int = 0) -> Signup:
    tid, sid, customer, holder, party, status, code, at, _id = row
    return Signup(str(tid), str(sid), str(customer), str(holder), int(party),
                  SignupStatus(status), None if code is None else str(code), float(at),
                  position)


def add_session(db: Database, session: Session, topics: Topics,
                now: float | None = None) -> None:
    """Define a session and queue its state for the store's box.

    Raises:
        ValueError: bad times, capacity or party limit, or the id is taken.
        hq.db.DbError: the database failed.
    """
    if session.ends <= session.starts:
        raise ValueError("a session ends after it starts")
    if not 1 <= session.capacity <= 100_000 or not 1 <= session.party_max <= 100:
        raise ValueError("capacity is 1-100000 seats and the party limit 1-100 people")
    if not session.session_id.isascii() or not session.session_id.replace("-", "").isalnum():
        raise ValueError(f"session id {session.session_id!r}: letters, digits and '-' only")
    now = time.time() if now is None else now
    with db.tx() as cur:
        cur.execute("SELECT 1 FROM web_workshop WHERE session_id=?", (session.session_id,))
        if cur.fetchone():
            raise ValueError(f"session {session.session_id} exists already")
        cur.execute(f"INSERT INTO web_workshop({_SESSION_COLUMNS}, created_at) VALUES"
                    " (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (session.session_id, session.store, session.title, session.starts,
                     session.ends, session.capacity, session.party_max, session.note,
                     session.early_s, session.late_s, session.status.value, 0, now))
        queue_session(cur, topics, session.session_id, now)


def cancel_session(db: Database, session_id: str, topics: Topics,
                   now: float | None = None) -> bool:
    """Call a session off: no more sign-ups, and its box refuses every ticket for it.

    Returns whether it was open. The tickets stay as they are (their pages say the session
    is cancelled); the box learns it from the session's state, queued here.

    Raises:
        ValueError: no such session.
        hq.db.DbError: the database failed.
    """
    now = time.time() if now is None else now
    with db.tx() as cur:
        cur.execute("UPDATE web_workshop SET changes = changes + 1 WHERE session_id=?",
                    (session_id,))
        if cur.rowcount != 1:
            raise ValueError(f"no session {session_id}")
        cur.execute("UPDATE web_workshop SET status=? WHERE session_id=? AND status=?",
                    (SessionStatus.CANCELLED.value, session_id, SessionStatus.OPEN.value))
        was_open = cur.rowcount == 1
        queue_session(cur, topics, session_id, now)
    return was_open


def new_session_id(starts: int) -> str:
    """A fresh session id: ``W`` + the start date + 4 random base32 characters."""
    return "W" + time.strftime("%m%d", time.localtime(starts)) + new_coupon_id("")[:4]


def get_session(db: Database, session_id: str) -> Session | None:
    """A session by id."""
    rows = db.query(f"SELECT {_SESSION_COLUMNS} FROM web_workshop WHERE session_id=?",
                    (session_id,))
    return _session(rows[0]) if rows else None


def list_sessions(db: Database, store: str | None = None) -> list[Session]:
    """Every session (of ``store``), earliest first."""
    where, params = ("WHERE store=?", (store,)) if store else ("", ())
    return [_session(r) for r in db.query(
        f"SELECT {_SESSION_COLUMNS} FROM web_workshop {where} ORDER BY starts, session_id",
        params)]


class Workshops:
    """Sign-ups against HQ's database; tickets signed with HQ's issuing key."""

    def __init__(self, db: Database, key: SigningKey, topics: Topics,
                 clock: Callable[[], float] = time.time) -> None:
        """Work on ``db``, sign with ``key``, queue box data under ``topics``."""
        self.db = db
        self.key = key
        self.topics = topics
        self.clock = clock

    def signup(self, ticket_id: str, customer: str | None = None) -> Signup | None:
        """A sign-up by ticket id (only ``customer``'s, when given), with its place in line."""
        with self.db.tx() as cur:
            return self._signup(cur, ticket_id, customer)

    def _signup(self, cur: Cursor, ticket_id: str, customer: str | None) -> Signup | None:
        cur.execute(f"SELECT {_SIGNUP_COLUMNS} FROM web_ticket WHERE ticket_id=?", (ticket_id,))
        row = cur.fetchone()
        if row is None or (customer is not None and row[2] != customer):
            return None
        position = 0
        if row[5] == SignupStatus.WAITLIST.value:
            cur.execute("SELECT COUNT(*) FROM web_ticket WHERE session_id=? AND status=?"
                        " AND id <= ?", (row[1], SignupStatus.WAITLIST.value, row[8]))
            position = int(cur.fetchone()[0])
        return _signup(tuple(row), position)

    def signups_of(self, customer: str) -> list[Signup]:
        """A customer's sign-ups, newest first."""
        rows = self.db.query(f"SELECT {_SIGNUP_COLUMNS} FROM web_ticket WHERE customer=?"
                             " ORDER BY created_at DESC", (customer,))
        return [s for r in rows if (s := self.signup(str(r[0]))) is not None]

    def sign_up(self, session_id: str, customer: str, holder: str, party: int,
                idem: str) -> Signup:
        """Sign ``customer`` up for ``party`` seats: a ticket if they fit, else the waitlist.

        A form resubmitted (same ``idem``) or a customer already signed up (not cancelled)
        gets the sign-up they have.

        Raises:
            SignupRefused: ``unknown`` session, ``closed`` (cancelled or started),
                ``party`` outside 1..the session's limit, ``holder`` empty or too long.
            hq.db.DbError: the database failed (nothing changed).
        """
        holder = holder.strip()
        if not 1 <= len(holder) <= MAX_HOLDER:
            raise SignupRefused("holder", f"a name of 1-{MAX_HOLDER} characters is needed")
        now = self.clock()
        with self.db.tx() as cur:
            cur.execute(f"SELECT {_SIGNUP_COLUMNS} FROM web_ticket WHERE idem_key=?", (idem,))
            if (row := cur.fetchone()) is not None:
                if row[2] == customer:
                    return self._signup(cur, str(row[0]), customer) or _signup(tuple(row))
                idem = new_idem()  # another customer's key (copied form): never theirs
            # The session's row first: its lock orders this against every other change.
            cur.execute("UPDATE web_workshop SET changes = changes + 1 WHERE session_id=?",
                        (session_id,))
            if cur.rowcount != 1:
                raise SignupRefused("unknown", f"no session {session_id}")
            cur.execute(f"SELECT {_SESSION_COLUMNS} FROM web_workshop WHERE session_id=?",
                        (session_id,))
            session = _session(tuple(cur.fetchone()))
            if session.status is not SessionStatus.OPEN or now >= session.starts:
                raise SignupRefused("closed", f"session {session_id} takes no more sign-ups")
            if not 1 <= party <= session.party_max:
                raise SignupRefused("party", f"a party of 1-{session.party_max} people")
            cur.execute("SELECT ticket_id FROM web_ticket WHERE session_id=? AND customer=?"
                        " AND status<>?", (session_id, customer, SignupStatus.CANCELLED.value))
            if (mine := cur.fetchone()) is not None:
                found = self._signup(cur, str(mine[0]), customer)
                assert found is not None
                return found
            ticket_id = new_coupon_id("T")
            seated = self._take_seats(cur, session_id, party)
            code = (self._mint(cur, session, ticket_id, holder, party, now) if seated
                    else None)
            cur.execute("INSERT INTO web_ticket(ticket_id, session_id, customer, holder, party,"
                        " status, code, idem_key, created_at, ticketed_at) VALUES"
                        " (?,?,?,?,?,?,?,?,?,?)",
                        (ticket_id, session_id, customer, holder, party,
                         (SignupStatus.TICKET if seated else SignupStatus.WAITLIST).value,
                         code, idem, now, now if seated else None))
            if seated:
                queue_session(cur, self.topics, session_id, now)
            found = self._signup(cur, ticket_id, customer)
            assert found is not None
            return found

    def cancel(self, ticket_id: str, customer: str) -> Signup | None:
        """Cancel ``customer``'s sign-up: free its seats, move the waitlist up, revoke it.

        ``None`` when the customer has no such sign-up; cancelling twice changes nothing.

        Raises:
            hq.db.DbError: the database failed (nothing changed).
        """
        now = self.clock()
        with self.db.tx() as cur:
            cur.execute("SELECT session_id, customer FROM web_ticket WHERE ticket_id=?",
                        (ticket_id,))
            row = cur.fetchone()
            if row is None or row[1] != customer:
                return None
            session_id = row[0]
            cur.execute("UPDATE web_workshop SET changes = changes + 1 WHERE session_id=?",
                        (session_id,))
            # Read the state under the session's lock: a cancellation racing this one may
            # have just moved this sign-up off the waitlist (its seats must be freed too).
            cur.execute("SELECT status, party FROM web_ticket WHERE ticket_id=?", (ticket_id,))
            status, party = cur.fetchone()
            cur.execute("UPDATE web_ticket SET status=?, cancelled_at=? WHERE ticket_id=?"
                        " AND status<>?", (SignupStatus.CANCELLED.value, now, ticket_id,
                                           SignupStatus.CANCELLED.value))
            if cur.rowcount == 1 and status == SignupStatus.TICKET.value:
                cur.execute("UPDATE web_workshop SET taken = taken - ? WHERE session_id=?",
                            (int(party), session_id))
                self._promote(cur, str(session_id), now)
                queue_session(cur, self.topics, str(session_id), now)
            return self._signup(cur, ticket_id, customer)

    # -- in a sign-up's or a cancellation's transaction -----------------------------------

    def _take_seats(self, cur: Cursor, session_id: str, party: int) -> bool:
        """Take ``party`` seats if they are free: one conditional UPDATE, race-proof."""
        cur.execute("UPDATE web_workshop SET taken = taken + ? WHERE session_id=?"
                    " AND taken + ? <= capacity", (party, session_id, party))
        return cur.rowcount == 1

    def _mint(self, cur: Cursor, session: Session, ticket_id: str, holder: str, party: int,
              now: float) -> str:
        ticket = tokens.Ticket(self.key.key_id, ticket_id, session.session_id, session.store,
                               party, session.starts, session.ends, holder)
        return mint_ticket(cur, self.key, ticket, now)

    def _promote(self, cur: Cursor, session_id: str, now: float) -> None:
        """Give freed seats to the waitlist: in sign-up order, each entry that fits."""
        cur.execute(f"SELECT {_SESSION_COLUMNS} FROM web_workshop WHERE session_id=?",
                    (session_id,))
        session = _session(tuple(cur.fetchone()))
        if session.status is not SessionStatus.OPEN or now >= session.starts:
            return
        cur.execute("SELECT ticket_id, holder, party FROM web_ticket WHERE session_id=? AND"
                    " status=? ORDER BY id", (session_id, SignupStatus.WAITLIST.value))
        for ticket_id, holder, party in cur.fetchall():
            if not self._take_seats(cur, session_id, int(party)):
                continue
            code = self._mint(cur, session, str(ticket_id), str(holder), int(party), now)
            cur.execute("UPDATE web_ticket SET status=?, code=?, ticketed_at=? WHERE"
                        " ticket_id=?", (SignupStatus.TICKET.value, code, now, ticket_id))


def new_idem() -> str:
    """An idempotency key for a sign-up form."""
    return secrets.token_urlsafe(16)
