"""The workshop report: per session and store, sign-ups, check-ins and no-shows.

Sign-ups, waitlist and cancellations are HQ's own records (``web_ticket``); check-ins are
the boxes' events (``hq_event``: accepted ``decision`` events of kind ``ticket``, less
``void`` events of the same code), joined by the ticket's code id ``W:`` + ticket id. A
no-show is a ticket still held, not checked in, once its session has ended. Plain portable
SQL (SQLite and PostgreSQL).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from hq.db import Database


@dataclass(frozen=True, slots=True)
class SessionFigures:
    """One session's figures."""

    store: str
    session_id: str
    title: str
    starts: int
    ends: int
    capacity: int
    tickets: int  # sign-ups holding a ticket now
    seats: int  # people those tickets are for
    waitlist: int
    cancelled: int
    checked_in: int  # tickets checked in at the till (net of voids)
    people_in: int  # people checked in
    no_shows: int  # tickets held, not checked in, session over (0 before it ends)


@dataclass(frozen=True, slots=True)
class StoreFigures:
    """A store's totals over its sessions."""

    store: str
    sessions: int
    tickets: int
    checked_in: int
    no_shows: int


def build(db: Database, since: float = 0.0, now: float | None = None,
          until: float | None = None, store: str | None = None) -> list[SessionFigures]:
    """Figures per session starting in ``[since, until)``, by store then start.

    ``store`` narrows it to one store (a manager's scope).
    """
    now = time.time() if now is None else now
    # The sessions chosen, and (joined on them) only their sign-ups: a store's or a range's
    # page reads its own tickets, not the chain's.
    where, params = "w.starts >= ?", list[object]([since])
    if until is not None:
        where, params = where + " AND w.starts < ?", [*params, until]
    if store is not None:
        where, params = where + " AND w.store = ?", [*params, store]
    sessions = db.query(
        "SELECT session_id, store, title, starts, ends, capacity FROM web_workshop w"
        f" WHERE {where} ORDER BY store, starts, session_id", tuple(params))
    counts: dict[tuple[str, str], tuple[int, int]] = {
        (str(r[0]), str(r[1])): (int(r[2]), int(r[3])) for r in db.query(
            "SELECT t.session_id, t.status, COUNT(*), COALESCE(SUM(t.party), 0)"
            " FROM web_ticket t JOIN web_workshop w ON w.session_id = t.session_id"
            f" WHERE {where} GROUP BY t.session_id, t.status", tuple(params))}
    # Net check-ins per ticket: accepted decisions minus voids (a void gives the seat back).
    net: dict[str, int] = {}
    in_store, store_param = ("", ()) if store is None else (" AND store = ?", (store,))
    for code_id, kind, n in db.query(
            "SELECT code_id, type, COUNT(*) FROM hq_event WHERE code_id LIKE ? AND"
            " ((type='decision' AND accepted=1 AND kind='ticket') OR type='void')"
            f"{in_store} GROUP BY code_id, type",
            ("W:%", *store_param)):  # a parameter: psycopg reads % in SQL
        net[str(code_id)[2:]] = net.get(str(code_id)[2:], 0) + (int(n) if kind == "decision"
                                                                  else -int(n))
    held = db.query("SELECT t.session_id, t.ticket_id, t.party FROM web_ticket t"
                    " JOIN web_workshop w ON w.session_id = t.session_id"
                    f" WHERE t.status='ticket' AND {where}", tuple(params))
    came: dict[str, tuple[int, int]] = {}
    for session_id, ticket_id, party in held:
        t, p = came.get(str(session_id), (0, 0))
        if net.get(str(ticket_id), 0) > 0:
            t, p = t + 1, p + int(party)
        came[str(session_id)] = (t, p)
    out = []
    for sid, store, title, starts, ends, cap in sessions:
        sid = str(sid)
        tickets, seats = counts.get((sid, "ticket"), (0, 0))
        checked, people = came.get(sid, (0, 0))
        out.append(SessionFigures(
            str(store), sid, str(title), int(starts), int(ends), int(cap), tickets, seats,
            counts.get((sid, "waitlist"), (0, 0))[0], counts.get((sid, "cancelled"), (0, 0))[0],
            checked, people, tickets - checked if now > int(ends) else 0))
    return out


def by_store(figures: list[SessionFigures]) -> list[StoreFigures]:
    """Totals per store."""
    stores: dict[str, StoreFigures] = {}
    for f in figures:
        s = stores.get(f.store, StoreFigures(f.store, 0, 0, 0, 0))
        stores[f.store] = StoreFigures(f.store, s.sessions + 1, s.tickets + f.tickets,
                                       s.checked_in + f.checked_in, s.no_shows + f.no_shows)
    return list(stores.values())


def to_json(figures: list[SessionFigures]) -> dict[str, Any]:
    """A JSON-ready form: ``{"sessions": [...], "stores": [...]}``."""
    return {"sessions": [asdict(f) for f in figures],
            "stores": [asdict(s) for s in by_store(figures)]}


def to_text(figures: list[SessionFigures]) -> str:
    """A plain table for the terminal."""
    if not figures:
        return "no workshop sessions"
    lines = ["store    session        starts            tickets seats wait cancel in  no-show"]
    for f in figures:
        start = time.strftime("%Y-%m-%d %H:%M", time.localtime(f.starts))
        lines.append(f"{f.store:<8} {f.session_id:<14} {start}  {f.tickets:>7} {f.seats:>5}"
                     f" {f.waitlist:>4} {f.cancelled:>6} {f.checked_in:>3} {f.no_shows:>8}"
                     f"  {f.title}")
    for s in by_store(figures):
        lines.append(f"{s.store}: {s.sessions} sessions, {s.tickets} tickets, "
                     f"{s.checked_in} checked in, {s.no_shows} no-shows")
    return "\n".join(lines)
