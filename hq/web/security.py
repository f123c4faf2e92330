"""The customer pages' guards: CSRF tokens, rate limits, response headers.

- CSRF: every form carries ``csrf`` = HMAC(secret, customer id); a POST without the
  right one is refused. The customer id is the ``HttpOnly`` first-party cookie, so another
  site can neither read it nor compute the token.
- Rate limits: fixed one-minute windows per key (an IP, a customer id), in memory, per
  process; a uvicorn with N workers allows N times the figure.
- Headers (an ASGI middleware, cheap enough for every response): a Content-Security-Policy
  with a per-response nonce for the one inline ``<style>``, scripts only from this origin,
  no framing, no referrer (a card URL is a bearer of its claim), ``nosniff``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[Message], Any]
App = Callable[[Scope, Receive, Send], Any]

SECRET_NAME = "web-secret"


def load_secret(home: Path) -> bytes:
    """HQ web's HMAC secret, created (0600) in ``home`` on first use."""
    path = home / SECRET_NAME
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        try:
            with path.open("x", encoding="ascii") as f:
                path.chmod(0o600)
                f.write(secrets.token_hex(32))
        except FileExistsError:
            pass  # another process made it first: use theirs
    return bytes.fromhex(path.read_text(encoding="ascii").strip())


def csrf_token(secret: bytes, customer: str) -> str:
    """The CSRF token for ``customer``'s forms."""
    return hmac.new(secret, b"csrf:" + customer.encode(), hashlib.sha256).hexdigest()[:32]


def csrf_ok(secret: bytes, customer: str, token: str) -> bool:
    """Whether ``token`` is ``customer``'s CSRF token."""
    return hmac.compare_digest(csrf_token(secret, customer), token)


class RateLimiter:
    """At most ``limit`` hits per key in any ``window_s`` seconds (a sliding window).

    Sliding, not fixed windows: a fixed window forgets every count at its boundary, so a
    burst straddling one got twice the limit (and a test's burst passed or not by the
    moment it ran).
    """

    def __init__(self, limit: int, window_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """Allow ``limit`` hits per key per window (0: no limit)."""
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self._lock = threading.Lock()
        self._pruned = clock()
        self._hits: dict[str, deque[float]] = {}

    def allow(self, *keys: str) -> bool:
        """Count a hit for each key; False if any already had ``limit`` in the window.

        A refused hit is not kept (a key holds at most ``limit`` times), so it is let in
        again once its oldest counted hit is a window old.
        """
        if self.limit <= 0:
            return True
        with self._lock:
            now = self.clock()
            since = now - self.window_s
            if now - self._pruned >= self.window_s:  # forget keys quiet for a whole window
                self._hits = {k: q for k, q in self._hits.items() if q and q[-1] > since}
                self._pruned = now
            ok = True
            for key in keys:
                q = self._hits.setdefault(key, deque())
                while q and q[0] <= since:
                    q.popleft()
                if len(q) >= self.limit:
                    ok = False
                else:
                    q.append(now)
            return ok


def nonce_of(scope: MutableMapping[str, Any]) -> str:
    """The CSP nonce of the response being built for ``scope``."""
    return str(scope.get("state", {}).get("nonce", ""))


class SecurityHeaders:
    """ASGI middleware: a nonce per request, and the security headers on each response."""

    def __init__(self, app: App) -> None:
        """Wrap ``app``."""
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve ``scope`` through the wrapped app, adding headers."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(12)
        scope.setdefault("state", {})["nonce"] = nonce
        csp = (f"default-src 'none'; style-src 'nonce-{nonce}'; script-src 'self';"
               " img-src 'self' data:; connect-src 'self'; form-action 'self';"
               " base-uri 'none'; frame-ancestors 'none'").encode()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(b"content-security-policy", csp),
                            (b"x-content-type-options", b"nosniff"),
                            (b"referrer-policy", b"no-referrer"),
                            (b"x-frame-options", b"DENY")]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
