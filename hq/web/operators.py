"""HQ's dashboard operators: who they are, their passwords, their sessions.

Two roles: an ``admin`` sees the whole chain; a ``manager`` sees one store. Passwords are
kept as argon2id hashes (argon2-cffi's defaults, RFC 9106's second recommended setting);
a hash made with older parameters is replaced at the next sign-in. A session is a random
id in an ``HttpOnly`` cookie; the database keeps only its SHA-256, so a copy of the
database signs nobody in.
"""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from edge.config import check_id
from hq.db import Database

OPERATOR_NAME: Final = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
MIN_PASSWORD: Final = 10
MAX_PASSWORD: Final = 1024  # argon2 hashes any length; a bigger one is not a password
SESSION_S: Final = 12 * 3600
_HASHER: Final = PasswordHasher()
# Verified against when the name is unknown, so a wrong name costs what a wrong password does.
_DUMMY_HASH: Final = _HASHER.hash(secrets.token_hex(16))


class Role(enum.StrEnum):
    """What an operator may see."""

    ADMIN = "admin"  # every store
    MANAGER = "manager"  # their own store


class OperatorError(ValueError):
    """An operator cannot be added as asked; the message says why."""


@dataclass(frozen=True, slots=True)
class Operator:
    """A signed-in operator."""

    name: str
    role: Role
    store: str | None  # a manager's store

    @property
    def scope(self) -> str | None:
        """The one store this operator's pages are held to; None: the whole chain."""
        return self.store if self.role is Role.MANAGER else None

    def may_see(self, store: str) -> bool:
        """Whether this operator may see ``store``'s figures."""
        return self.role is Role.ADMIN or store == self.store


def add_operator(db: Database, name: str, role: Role, store: str | None,
                 password: str) -> None:
    """Add an operator, or replace one of the same name (a new password, role or store).

    Raises:
        OperatorError: a bad name, a manager without a store (or an admin with one), a
            malformed store id, or a password shorter than :data:`MIN_PASSWORD`.
    """
    if not OPERATOR_NAME.fullmatch(name):
        raise OperatorError(f"operator name {name!r}: 1-64 letters, digits, _ . @ -")
    if role is Role.MANAGER:
        if not store:
            raise OperatorError("a manager needs --store ID")
        try:
            check_id("store id", store)
        except ValueError as exc:
            raise OperatorError(str(exc)) from None
    elif store:
        raise OperatorError("an admin sees every store: no --store")
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise OperatorError(f"the password needs {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    with db.tx() as cur:
        cur.execute("INSERT INTO hq_operator(name, role, store, pw_hash, created_at)"
                    " VALUES (?,?,?,?,?) ON CONFLICT (name) DO UPDATE SET role=excluded.role,"
                    " store=excluded.store, pw_hash=excluded.pw_hash",
                    (name, role.value, store or None, _HASHER.hash(password), time.time()))
        # a changed password or role ends the operator's sessions
        cur.execute("DELETE FROM hq_session WHERE operator=?", (name,))


def check_password(db: Database, name: str, password: str) -> Operator | None:
    """The operator if ``password`` is theirs, else None (the same work either way)."""
    rows = db.query("SELECT role, store, pw_hash FROM hq_operator WHERE name=?", (name,))
    stored = str(rows[0][2]) if rows else _DUMMY_HASH
    try:
        _HASHER.verify(stored, password[:MAX_PASSWORD])
    except (VerificationError, InvalidHashError):
        return None
    if not rows:
        return None
    if _HASHER.check_needs_rehash(stored):
        db.query("UPDATE hq_operator SET pw_hash=? WHERE name=?",
                 (_HASHER.hash(password), name))
    return Operator(name, Role(str(rows[0][0])), None if rows[0][1] is None else str(rows[0][1]))


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def open_session(db: Database, operator: Operator, now: float | None = None) -> str:
    """A new session for ``operator``; returns the id for the cookie."""
    now = time.time() if now is None else now
    session_id = secrets.token_urlsafe(32)
    with db.tx() as cur:
        cur.execute("DELETE FROM hq_session WHERE expires_at<?", (now,))
        cur.execute("INSERT INTO hq_session(id_hash, operator, created_at, expires_at)"
                    " VALUES (?,?,?,?)", (_digest(session_id), operator.name, now,
                                          now + SESSION_S))
    return session_id


def session_operator(db: Database, session_id: str,
                     now: float | None = None) -> Operator | None:
    """The operator of a live session, or None (unknown, expired, operator removed)."""
    if not session_id or len(session_id) > 128:
        return None
    now = time.time() if now is None else now
    rows = db.query("SELECT o.name, o.role, o.store FROM hq_session s JOIN hq_operator o"
                    " ON o.name=s.operator WHERE s.id_hash=? AND s.expires_at>=?",
                    (_digest(session_id), now))
    if not rows:
        return None
    name, role, store = rows[0]
    return Operator(str(name), Role(str(role)), None if store is None else str(store))


def close_session(db: Database, session_id: str) -> None:
    """End a session (sign out)."""
    db.query("DELETE FROM hq_session WHERE id_hash=?", (_digest(session_id),))
