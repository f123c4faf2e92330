"""Workshop sessions the store holds, their cancelled tickets, and this box's check-ins.

HQ describes each session in ``workshops`` data (``edge.hqdata.WorkshopSession``, applied
by ``edge.storeconfig.apply_workshops``): times, capacity, seats signed up, the check-in
margins and every ticket cancelled so far. A ticket itself (``edge.tokens.Ticket``) carries
its session's times, so the box can check a ticket in even before it heard of the session;
what it cannot know then is a cancellation, which is why HQ sends those with the session.
The check-in decision is ``edge.rules``'s; this module is the tables behind it.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from edge.ledger import Ledger

if TYPE_CHECKING:  # edge.hqdata imports edge.rules, which imports this module
    from edge.hqdata import WorkshopSession

CANCELLED: Final = "cancelled"  # edge.hqdata.SessionStatus.CANCELLED's value


@dataclass(frozen=True, slots=True)
class Window:
    """When a ticket may be checked in: ``opens``..``closes`` (margins included)."""

    opens: float
    closes: float
    early_s: int
    late_s: int


def upsert_sessions(conn: sqlite3.Connection, sessions: list[WorkshopSession]) -> int:
    """Store HQ's state of each session inside the caller's transaction; returns lines."""
    for s in sessions:
        conn.execute(
            "INSERT INTO workshop_session(session_id, title, starts, ends, capacity, party_max,"
            " signed_up, tickets, early_s, late_s, status) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
            " ON CONFLICT(session_id) DO UPDATE SET title=excluded.title,"
            " starts=excluded.starts, ends=excluded.ends, capacity=excluded.capacity,"
            " party_max=excluded.party_max, signed_up=excluded.signed_up,"
            " tickets=excluded.tickets, early_s=excluded.early_s, late_s=excluded.late_s,"
            " status=excluded.status",
            (s.session_id, s.title, s.starts, s.ends, s.capacity, s.party_max, s.signed_up,
             s.tickets, s.early_s, s.late_s, s.status.value))
        # The list is the whole set so far: a cancellation is never taken back (a new
        # sign-up gets a new ticket), so adding is enough and a re-delivery is harmless.
        conn.executemany("INSERT OR IGNORE INTO workshop_revoked(ticket_id, session_id)"
                         " VALUES (?, ?)", [(t, s.session_id) for t in s.revoked])
    return len(sessions)


def session_row(conn: sqlite3.Connection, session_id: str) -> dict[str, Any] | None:
    """The session as HQ last described it, or ``None`` if it never did."""
    row = conn.execute("SELECT title, starts, ends, early_s, late_s, status, party_max"
                       " FROM workshop_session WHERE session_id=?", (session_id,)).fetchone()
    if row is None:
        return None
    return dict(zip(("title", "starts", "ends", "early_s", "late_s", "status", "party_max"),
                    row, strict=True))


def window(ledger: Ledger, session: dict[str, Any] | None, starts: int, ends: int) -> Window:
    """The check-in window of a ticket for ``starts``..``ends``.

    The margins are the session's (HQ's config when it published it), else the box's
    defaults (``workshop_early_s``/``workshop_late_s``).
    """
    early = int(session["early_s"]) if session else int(ledger.setting("workshop_early_s"))
    late = int(session["late_s"]) if session else int(ledger.setting("workshop_late_s"))
    return Window(starts - early, ends + late, early, late)


def is_revoked(conn: sqlite3.Connection, ticket_id: str,
               session: dict[str, Any] | None) -> bool:
    """Whether HQ said this ticket (or its whole session) is cancelled."""
    if session is not None and session["status"] == CANCELLED:
        return True
    return conn.execute("SELECT 1 FROM workshop_revoked WHERE ticket_id=?",
                        (ticket_id,)).fetchone() is not None


def record_checkin(conn: sqlite3.Connection, ticket_id: str, session_id: str, party: int,
                   holder: str, at: float, decision_id: int) -> None:
    """Note an accepted check-in inside the decision's transaction."""
    conn.execute("INSERT INTO workshop_checkin(ticket_id, session_id, party, holder, at,"
                 " decision_id) VALUES (?,?,?,?,?,?)",
                 (ticket_id, session_id, party, holder, at, decision_id))


def undo_checkin(conn: sqlite3.Connection, decision_id: int) -> None:
    """Forget the check-in a voided decision made (the ticket may be checked in again)."""
    conn.execute("DELETE FROM workshop_checkin WHERE decision_id=?", (decision_id,))


def sessions(ledger: Ledger, start: float, end: float) -> list[dict[str, Any]]:
    """Sessions starting in ``[start, end)``, earliest first, with this box's check-ins.

    Each: ``session_id, title, starts, ends, capacity, signed_up`` (seats, as HQ last
    said), ``tickets``, ``status``, ``checked_in`` (people) and ``checked_in_tickets``.
    """
    rows = ledger.conn.execute(
        "SELECT s.session_id, s.title, s.starts, s.ends, s.capacity, s.signed_up, s.tickets,"
        " s.status, COALESCE(SUM(c.party), 0), COUNT(c.ticket_id) FROM workshop_session s"
        " LEFT JOIN workshop_checkin c ON c.session_id = s.session_id"
        " WHERE s.starts >= ? AND s.starts < ? GROUP BY s.session_id ORDER BY s.starts,"
        " s.session_id", (start, end))
    cols = ("session_id", "title", "starts", "ends", "capacity", "signed_up", "tickets",
            "status", "checked_in", "checked_in_tickets")
    return [dict(zip(cols, r, strict=True)) for r in rows]
