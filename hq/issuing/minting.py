"""Minting personal codes: the one place HQ signs a coupon or a workshop ticket for a customer.

The customer pages (``hq.web``) call :func:`mint_coupon` inside the transaction that records
the claim, so a coupon exists exactly when its claim does. Anything HQ must note about
every code it issues belongs here, on the same cursor.
"""

from __future__ import annotations

import secrets

from edge import tokens
from edge.keys import SigningKey
from hq.db import Cursor
from hq.issuing.codes import sign_token
from hq.issuing.issued import record_issued

# Crockford's base32 without I, L, O, U: short ids a person can read aloud.
_ID_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_coupon_id(prefix: str) -> str:
    """A fresh coupon id: ``prefix`` then 10 random base32 characters (50 bits)."""
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(10))


def mint_coupon(cur: Cursor, key: SigningKey, coupon: tokens.Coupon, now: float) -> str:
    """Sign ``coupon`` with HQ's coupon key ``key`` and return its code text.

    ``cur`` is the transaction that records why the coupon was minted; HQ's record of what
    it issued (``hq_issued``: the limits fan-out and conflicts go by) is written on it too,
    so both roll back together.

    Raises:
        ValueError: the coupon names another key, or a field does not fit the layout.
    """
    text = sign_token(key, coupon)
    record_issued(cur, coupon, now)
    return text


def mint_ticket(cur: Cursor, key: SigningKey, ticket: tokens.Ticket, now: float) -> str:
    """Sign a workshop ``ticket`` with HQ's issuing key ``key``; return its code text.

    ``cur`` is the transaction that gives the seat; HQ's record of the code (``hq_issued``:
    kind ``ticket``, its store, one use, the session's times) is written on it too.

    Raises:
        ValueError: the ticket names another key, or a field does not fit the layout.
    """
    text = sign_token(key, ticket)
    cur.execute("INSERT INTO hq_issued(code_id, kind, campaign_id, eligible, max_uses,"
                " valid_from, valid_until, key_id, issued_at) VALUES (?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT (code_id) DO NOTHING",
                (ticket.code_id, "ticket", ticket.session_id, ticket.store_id, 1,
                 ticket.starts, ticket.ends, ticket.key_id, now))
    return text
