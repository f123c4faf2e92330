"""The offline decision: one scanned string in, one recorded verdict out.

:meth:`Counter.redeem` parses, verifies and judges a code, then commits the decision and
its outbox event in one ``BEGIN IMMEDIATE`` transaction before returning, so a verdict a
cashier sees is always on disk, and two processes racing on a single-use code serialise
on SQLite's write lock: exactly one of them sees the use count below the limit.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge import clock, keys, tokens, workshops
from edge.attempts import MissGuard
from edge.events import EventType
from edge.ledger import Ledger
from edge.tokens import Card, Coupon, Pickup, Ticket
from edge.verdict import Reason, Verdict

PICKUP_NUMBER = re.compile(r"[0-9]{3,8}")
_PREVIEW = 48

# A workshop ticket is a customer code HQ's web service mints as it mints personal coupons:
# the same issuing role signs it (docs/tokens.md, "Workshop tickets").
_PURPOSE = {tokens.Kind.COUPON: keys.Purpose.COUPON, tokens.Kind.PICKUP: keys.Purpose.PICKUP,
            tokens.Kind.TICKET: keys.Purpose.COUPON}


@dataclass(frozen=True, slots=True)
class Identity:
    """Which store and device this box is."""

    store_id: str
    device_id: str


@dataclass(slots=True)
class _Judgement:
    reason: Reason | None
    kind: str | None = None
    code_id: str | None = None
    campaign_id: str | None = None
    facts: dict[str, Any] | None = None
    max_uses: int = 1
    order: Pickup | None = None  # an accepted pickup, to mark collected
    ticket: Ticket | None = None  # an accepted check-in, to note with its party
    party: int = 0


class VoidRefused(Exception):
    """A void that cannot be done; ``code`` is the machine-readable reason."""

    def __init__(self, code: str, message: str) -> None:
        """Carry a reason code and the words to show."""
        super().__init__(message)
        self.code = code


class Counter:
    """The till-side rules engine over one ledger."""

    def __init__(self, ledger: Ledger, identity: Identity,
                 wall_clock: Callable[[], float] = time.time) -> None:
        """Decide for ``identity`` on ``ledger``; ``wall_clock`` is the system clock."""
        self.ledger = ledger
        self.identity = identity
        self.wall_clock = wall_clock
        self.number_guard = MissGuard()  # typed pickup numbers: misses per till

    # -- public --------------------------------------------------------------------

    def check(self, text: str | bytes, till: str = "", party: int | None = None) -> Verdict:
        """What :meth:`redeem` would decide now, recording nothing.

        Except for a typed pickup number that misses or is refused for too many misses:
        that counts as an attempt at ``till`` and is recorded (source ``check``) like a
        scan, so walking numbers through ``check`` leaves the same trail.
        """
        conn = self.ledger.conn
        reading = self._clock(conn)
        j = self._judge(conn, text, reading.now, till, party)
        if j.reason in (Reason.UNKNOWN_PICKUP_NUMBER, Reason.TOO_MANY_ATTEMPTS):
            with self.ledger.immediate() as wconn:
                decision_id, event_id = self._record(wconn, j, reading, till, "check")
            return self._verdict(j, reading, decision_id, event_id)
        return self._verdict(j, reading, None, None)

    def redeem(self, text: str | bytes, till: str = "", source: str = "",
               party: int | None = None) -> Verdict:
        """Decide on a scanned or typed code and record the decision durably.

        ``party``: for a workshop ticket, how many people check in (default: the ticket's
        whole party); ignored for other codes.

        Raises:
            ValueError: ``party`` is below 1.
        """
        if party is not None and party < 1:
            raise ValueError(f"a party is 1 or more people, not {party}")
        with self.ledger.immediate() as conn:
            reading = self._clock(conn)
            j = self._judge(conn, text, reading.now, till, party)
            decision_id, event_id = self._record(conn, j, reading, till, source)
        return self._verdict(j, reading, decision_id, event_id)

    def void(self, decision_id: int, reason: str, till: str = "") -> dict[str, Any]:
        """Void an accepted redemption inside the configured window; gives the use back.

        Raises:
            VoidRefused: no reason given, no such decision, not an acceptance, already
                voided, or outside the void window. The refusal is recorded as an event.
        """
        reason = reason.strip()
        with self.ledger.immediate() as conn:
            reading = self._clock(conn)
            refusal = self._void_refusal(conn, decision_id, reason, reading.now)
            if refusal:
                self.ledger.append_event(conn, EventType.VOID_REFUSED, reading.now,
                                         reading.trusted, {"decision_id": decision_id,
                                                           "refused": refusal[0], "till": till})
            else:
                row = conn.execute("SELECT kind, code_id FROM decision WHERE id=?",
                                   (decision_id,)).fetchone()
                conn.execute("UPDATE decision SET voided_at=?, void_reason=? WHERE id=?",
                             (reading.now, reason, decision_id))
                conn.execute("UPDATE code_use SET uses=uses-1 WHERE code_id=? AND uses>0",
                             (row[1],))
                if row[0] == tokens.Kind.PICKUP:
                    conn.execute("UPDATE pickup_order SET status='waiting', collected_at=NULL"
                                 " WHERE order_id=?", (row[1][2:],))
                elif row[0] == tokens.Kind.TICKET:
                    workshops.undo_checkin(conn, decision_id)
                _seq, event_id = self.ledger.append_event(
                    conn, EventType.VOID, reading.now, reading.trusted,
                    {"decision_id": decision_id, "code_id": row[1], "kind": row[0],
                     "reason": reason, "till": till})
        if refusal:  # raised after the commit, so the refusal stays recorded
            raise VoidRefused(*refusal)
        return {"decision_id": decision_id, "code_id": row[1], "voided_at": reading.now,
                "event_id": event_id, "clock_trusted": reading.trusted}

    # -- judging -------------------------------------------------------------------

    def _clock(self, conn: sqlite3.Connection) -> clock.Reading:
        row = conn.execute("SELECT at FROM trusted_time WHERE id=1").fetchone()
        skew = self.ledger.setting("clock_skew_s")
        return clock.read(self.wall_clock(), float(row[0]) if row else 0.0, skew)

    def _judge(self, conn: sqlite3.Connection, text: str | bytes, now: float,
               till: str = "", party: int | None = None) -> _Judgement:
        if isinstance(text, str) and PICKUP_NUMBER.fullmatch(text.strip()):
            return self._judge_typed(conn, text.strip(), now, till)
        parsed = tokens.parse(text)
        if isinstance(parsed, tokens.FormatError):
            return _Judgement(Reason.BAD_FORMAT, facts={"detail": parsed.detail,
                                                        "input": _preview(text)})
        token = parsed.token
        if isinstance(token, Card):
            return _Judgement(Reason.NOT_REDEEMABLE, "card", None,
                              facts={"store_id": token.store_id, "serial": token.serial})
        key = self.ledger.trusted_key(token.key_id)
        kind = parsed.kind.value
        code_id = token.code_id
        if key is None:
            return _Judgement(Reason.UNKNOWN_KEY, kind, code_id, facts={"key_id": token.key_id})
        if not keys.verify(key.public_key, parsed.signed, parsed.signature):
            return _Judgement(Reason.FORGED, kind, code_id, facts={"key_id": token.key_id})
        if not key.usable_for(_PURPOSE[parsed.kind], now):
            return _Judgement(Reason.KEY_EXPIRED, kind, code_id, facts={"key_id": token.key_id})
        if isinstance(token, Coupon):
            return self._judge_coupon(conn, token, now)
        if isinstance(token, Ticket):
            return self._judge_ticket(conn, token, now, party)
        return self._judge_pickup(conn, token, now)

    def _judge_coupon(self, conn: sqlite3.Connection, c: Coupon, now: float) -> _Judgement:
        j = _Judgement(None, "coupon", c.code_id, c.campaign_id, max_uses=c.max_uses)
        j.facts = {"coupon_id": c.coupon_id, "campaign_id": c.campaign_id,
                   "channel": c.channel.name.lower(),
                   "benefit": {"kind": c.benefit.kind.name.lower(), "value": c.benefit.value,
                               "item": c.benefit.item},
                   # HQ's fan-out needs the eligible stores and the use limit
                   "stores": list(c.stores), "max_uses": c.max_uses}
        if conn.execute("SELECT 1 FROM revoked_code WHERE code_id=?", (c.code_id,)).fetchone():
            j.reason = Reason.COUPON_REVOKED
            return j
        state = conn.execute("SELECT state FROM campaign WHERE campaign_id=?",
                             (c.campaign_id,)).fetchone()
        if state and state[0] == "revoked":
            j.reason = Reason.CAMPAIGN_REVOKED
        elif state and state[0] == "paused":
            j.reason = Reason.CAMPAIGN_PAUSED
        elif c.stores and self.identity.store_id not in c.stores:
            j.reason = Reason.WRONG_STORE
            j.facts["stores"] = list(c.stores)
        elif now < c.valid_from:
            j.reason = Reason.NOT_YET_VALID
            j.facts["valid_from"] = c.valid_from
        elif now > c.valid_until:
            j.reason = Reason.EXPIRED
            j.facts["valid_until"] = c.valid_until
        else:
            self._judge_uses(conn, j)
        return j

    def _judge_pickup(self, conn: sqlite3.Connection, p: Pickup, now: float) -> _Judgement:
        j = _Judgement(None, "pickup", p.code_id, order=p)
        j.facts = {"order_id": p.order_id, "number": p.number, "items": p.items,
                   "customer": p.customer, "window_start": p.window_start,
                   "window_end": p.window_end}
        row = conn.execute("SELECT status FROM pickup_order WHERE order_id=?",
                           (p.order_id,)).fetchone()
        if p.store_id != self.identity.store_id:
            j.reason = Reason.WRONG_STORE
            j.facts["stores"] = [p.store_id]
        elif row and row[0] == "cancelled":
            j.reason = Reason.ORDER_CANCELLED
        elif now < p.window_start or now > p.window_end + self.ledger.setting(
                "pickup_late_grace_s"):
            j.reason = Reason.OUTSIDE_PICKUP_WINDOW
        else:
            self._judge_uses(conn, j)
            if j.reason is Reason.ALREADY_USED_HERE:
                j.reason = Reason.ALREADY_COLLECTED
            elif j.reason is None and row and row[0] == "collected":
                # HQ's catch-up says so: collected here before this box (a replacement)
                # knew the order, so there is no local use to count.
                j.reason = Reason.ALREADY_COLLECTED
                j.facts["collected_per_hq"] = True
            elif j.reason is None and now > p.window_end:
                j.facts["late"] = True
        return j

    def _judge_ticket(self, conn: sqlite3.Connection, w: Ticket, now: float,
                      party: int | None) -> _Judgement:
        """A workshop ticket: this store, not cancelled, inside its window, once, party."""
        session = workshops.session_row(conn, w.session_id)
        j = _Judgement(None, "ticket", w.code_id, ticket=w,
                       party=w.party if party is None else party)
        j.facts = {"ticket_id": w.ticket_id, "session_id": w.session_id,
                   "title": session["title"] if session else "", "holder": w.holder,
                   "party": j.party, "ticket_party": w.party, "starts": w.starts,
                   "ends": w.ends}
        win = workshops.window(self.ledger, session, w.starts, w.ends)
        if w.store_id != self.identity.store_id:
            j.reason = Reason.WRONG_STORE
            j.facts["stores"] = [w.store_id]
        elif workshops.is_revoked(conn, w.ticket_id, session):
            j.reason = Reason.TICKET_CANCELLED
        elif not win.opens <= now <= win.closes:
            j.reason = Reason.OUTSIDE_SESSION_WINDOW
            j.facts.update(opens=win.opens, closes=win.closes, early=now < win.opens)
        elif j.party > w.party:
            j.reason = Reason.PARTY_TOO_LARGE
        else:
            self._judge_uses(conn, j)
            if j.reason is Reason.USED_AT_OTHER_STORE:
                # HQ fanned out a check-in at another till of this store ("store/device")
                j.facts["used_till"] = j.facts.get("used_store")
            if j.reason in (Reason.ALREADY_USED_HERE, Reason.USED_AT_OTHER_STORE):
                j.reason = Reason.ALREADY_CHECKED_IN
            j.facts.pop("uses_left", None)
        return j

    def _judge_typed(self, conn: sqlite3.Connection, number: str, now: float,
                     till: str) -> _Judgement:
        """A typed number, unless this till (or the box) is cooling down after misses."""
        wait = self.number_guard.locked_for(till)
        if wait > 0:
            return _Judgement(Reason.TOO_MANY_ATTEMPTS, "pickup",
                              facts={"number": number, "retry_after_s": math.ceil(wait)})
        j = self._judge_number(conn, number, now)
        if j.reason is Reason.UNKNOWN_PICKUP_NUMBER:
            assert j.facts is not None
            locked = self.number_guard.miss(till)
            if locked:
                j.facts["locked_for_s"] = math.ceil(locked)
            else:
                j.facts["misses_left"] = self.number_guard.misses_left(till)
        return j

    def _judge_number(self, conn: sqlite3.Connection, number: str, now: float) -> _Judgement:
        """A short pickup number typed by hand, for an order the store already knows."""
        row = conn.execute(
            "SELECT order_id, store_id, window_start, window_end, items, customer"
            " FROM pickup_order WHERE number=? AND store_id=?"
            " ORDER BY status='waiting' DESC, ABS(window_start - ?) LIMIT 1",
            (number, self.identity.store_id, now)).fetchone()
        if row is None:
            return _Judgement(Reason.UNKNOWN_PICKUP_NUMBER, "pickup",
                              facts={"number": number})
        order = Pickup("", row[0], row[1], number, row[2], row[3], row[4], row[5])
        return self._judge_pickup(conn, order, now)

    def _judge_uses(self, conn: sqlite3.Connection, j: _Judgement) -> None:
        assert j.code_id is not None and j.facts is not None
        here = conn.execute("SELECT uses FROM code_use WHERE code_id=?", (j.code_id,)).fetchone()
        here_uses = here[0] if here else 0
        remote = conn.execute(
            "SELECT store_id, uses, last_at FROM remote_use WHERE code_id=?"
            " ORDER BY last_at DESC", (j.code_id,)).fetchall()
        remote_uses = sum(r[1] for r in remote)
        if here_uses + remote_uses < j.max_uses:
            j.facts["uses_left"] = j.max_uses - here_uses - remote_uses - 1
            return
        if here_uses:
            last = conn.execute(
                "SELECT at, till FROM decision WHERE code_id=? AND accepted=1 AND voided_at"
                " IS NULL ORDER BY id DESC LIMIT 1", (j.code_id,)).fetchone()
            j.reason = Reason.ALREADY_USED_HERE
            if last:
                j.facts.update(used_at=last[0], used_till=last[1])
        else:
            j.reason = Reason.USED_AT_OTHER_STORE
            j.facts.update(used_store=remote[0][0], used_at=remote[0][2])

    # -- recording -----------------------------------------------------------------

    def _record(self, conn: sqlite3.Connection, j: _Judgement, reading: clock.Reading,
                till: str, source: str) -> tuple[int, str]:
        accepted = j.reason is None
        facts = j.facts or {}
        body = {"accepted": accepted, "reason": j.reason.value if j.reason else None,
                "kind": j.kind, "code_id": j.code_id, "campaign_id": j.campaign_id,
                "till": till, "source": source, "facts": facts}
        _seq, event_id = self.ledger.append_event(conn, EventType.DECISION, reading.now,
                                                  reading.trusted, body)
        cur = conn.execute(
            "INSERT INTO decision(at, kind, code_id, campaign_id, accepted, reason, till,"
            " source, clock_trusted, facts, event_id) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (reading.now, j.kind, j.code_id, j.campaign_id, int(accepted),
             j.reason.value if j.reason else None, till, source, int(reading.trusted),
             json.dumps(facts, ensure_ascii=False), event_id))
        if accepted:
            conn.execute("INSERT INTO code_use(code_id, uses) VALUES (?, 1) ON CONFLICT(code_id)"
                         " DO UPDATE SET uses=uses+1", (j.code_id,))
            if j.order is not None:
                p = j.order
                conn.execute(
                    "INSERT INTO pickup_order(order_id, store_id, number, window_start,"
                    " window_end, items, customer, status, collected_at)"
                    " VALUES (?,?,?,?,?,?,?,'collected',?) ON CONFLICT(order_id) DO UPDATE"
                    " SET status='collected', collected_at=excluded.collected_at",
                    (p.order_id, p.store_id, p.number, p.window_start, p.window_end,
                     p.items, p.customer, reading.now))
        assert cur.lastrowid is not None
        if accepted and j.ticket is not None:
            workshops.record_checkin(conn, j.ticket.ticket_id, j.ticket.session_id, j.party,
                                     j.ticket.holder, reading.now, cur.lastrowid)
        return cur.lastrowid, event_id

    def _verdict(self, j: _Judgement, reading: clock.Reading, decision_id: int | None,
                 event_id: str | None) -> Verdict:
        return Verdict(j.reason is None, j.reason, j.kind, j.code_id, reading.now,
                       reading.trusted, j.facts or {}, decision_id, event_id)

    def _void_refusal(self, conn: sqlite3.Connection, decision_id: int, reason: str,
                      now: float) -> tuple[str, str] | None:
        if not reason:
            return ("reason_required", "a void needs a reason")
        row = conn.execute("SELECT accepted, voided_at, at FROM decision WHERE id=?",
                           (decision_id,)).fetchone()
        if row is None:
            return ("not_found", f"no decision {decision_id}")
        if not row[0]:
            return ("not_accepted", f"decision {decision_id} was a rejection; nothing to void")
        if row[1] is not None:
            return ("already_voided", f"decision {decision_id} is already voided")
        window = self.ledger.setting("void_window_s")
        if now - row[2] > window:
            return ("window_passed",
                    f"decision {decision_id} is older than the {window // 60}-minute void window")
        limit, shift = int(self.ledger.setting("void_shift_limit")), self.ledger.setting(
            "void_shift_s")
        done = conn.execute("SELECT COUNT(*) FROM decision WHERE voided_at > ?",
                            (now - shift,)).fetchone()[0]
        if limit and done >= limit:
            return ("shift_limit", f"{done} voids in the last {shift / 3600:g} h, the limit at "
                                   "this store: a manager asks HQ (HQ sees every void)")
        return None


def _preview(text: str | bytes) -> str:
    """A short, printable trace of bad input for the ledger (never the whole 10 MB)."""
    if isinstance(text, bytes):
        return f"<{len(text)} bytes> " + text[:_PREVIEW].hex()
    if not isinstance(text, str):
        return f"<{type(text).__name__}>"
    shown = text[:_PREVIEW].encode("unicode_escape", "backslashreplace").decode("ascii")
    return shown if len(text) <= _PREVIEW else f"{shown}... <{len(text)} chars>"
