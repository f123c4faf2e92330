"""What HQ tells a store's box about its workshop sessions (``workshops`` data).

One function builds a session's whole state from HQ's records (``web_workshop``,
``web_ticket``) and one queues it in ``hq_outbox`` inside the caller's transaction, for the
fan-out sender to version, sign and publish: the web service after every change to a
session (``hq.web.workshops``), and ingest's catch-up for a box that lost its broker
session (``hq.ingest.eventstore``). Body schema: ``edge.hqdata.WorkshopSession``,
``docs/mqtt.md`` "Workshops body".
"""

from __future__ import annotations

from edge.hqdata import SessionStatus, WorkshopSession, encode_workshops
from hq.db import Cursor
from hq.publishing.fanout import enqueue
from sync.contract import DataKind, Topics

CATCH_UP_SESSIONS = 50  # sessions per catch-up envelope (each names its cancelled tickets)


def session_state(cur: Cursor, session_id: str) -> WorkshopSession:
    """The session's whole current state as the box receives it.

    ``revoked`` names only cancelled tickets that were signed: a waitlist entry had none.
    """
    cur.execute("SELECT title, starts, ends, capacity, party_max, taken, early_s, late_s,"
                " status FROM web_workshop WHERE session_id=?", (session_id,))
    title, starts, ends, cap, pmax, taken, early, late, status = cur.fetchone()
    cur.execute("SELECT COUNT(*) FROM web_ticket WHERE session_id=? AND status='ticket'",
                (session_id,))
    tickets = int(cur.fetchone()[0])
    cur.execute("SELECT ticket_id FROM web_ticket WHERE session_id=? AND status='cancelled'"
                " AND code IS NOT NULL ORDER BY id", (session_id,))
    revoked = tuple(str(r[0]) for r in cur.fetchall())
    return WorkshopSession(session_id, str(title), int(starts), int(ends), int(cap),
                           int(pmax), int(taken), tickets, int(early), int(late),
                           SessionStatus(status), revoked)


def queue_session(cur: Cursor, topics: Topics, session_id: str, now: float) -> None:
    """Queue the session's state for its store's box, in the caller's transaction."""
    cur.execute("SELECT store FROM web_workshop WHERE session_id=?", (session_id,))
    store = str(cur.fetchone()[0])
    enqueue(cur, topics.data(store), store, DataKind.WORKSHOPS,
            encode_workshops([session_state(cur, session_id)]), now)


def live_sessions(cur: Cursor, store: str, now: float) -> list[WorkshopSession]:
    """The store's sessions whose check-in has not closed yet (a catch-up's part)."""
    cur.execute("SELECT session_id FROM web_workshop WHERE store=? AND ends + late_s >= ?"
                " ORDER BY starts, session_id", (store, int(now)))
    return [session_state(cur, str(r[0])) for r in cur.fetchall()]
