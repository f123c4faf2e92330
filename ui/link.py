"""The UI's one connection to the daemon: connect, subscribe, reconnect with backoff.

:class:`Link` owns a :class:`edged.localapi.Client`. :meth:`Link.run` loops forever:
connect, subscribe, hand every event to ``on_event``, and when the connection drops (daemon
stopped or restarting) report it through ``on_state`` and try again after a capped,
jittered backoff. Every request carries the client's timeout, so nothing in the UI can
wait on a silent daemon for longer than that.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from edged.localapi import ApiError, Client, DaemonUnavailable, Op

log = logging.getLogger(__name__)

BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 2.0
REQUEST_TIMEOUT_S = 3.0

EventHandler = Callable[[str, dict[str, Any]], Awaitable[None] | None]
StateHandler = Callable[[bool, str], Awaitable[None] | None]


class Link:
    """A self-healing connection to the daemon's local API."""

    def __init__(self, socket_path: Path, on_event: EventHandler, on_state: StateHandler,
                 timeout: float = REQUEST_TIMEOUT_S) -> None:
        """Talk to the daemon at ``socket_path``; report events and up/down changes."""
        self.socket_path = socket_path
        self.timeout = timeout
        self._on_event = on_event
        self._on_state = on_state
        self._client: Client | None = None
        self.last_contact: float | None = None  # monotonic time of the last frame received
        self.attempts = 0  # connection attempts since the last success

    @property
    def up(self) -> bool:
        """Whether requests can be sent now."""
        return self._client is not None and self._client.connected

    async def request(self, op: Op, **args: Any) -> dict[str, Any]:
        """One request, bounded by the timeout.

        Raises:
            DaemonUnavailable: not connected, or no answer in time.
            edged.localapi.ApiError: the daemon refused or failed the request.
        """
        client = self._client
        if client is None or not client.connected:
            raise DaemonUnavailable("not connected to the daemon")
        result = await client.request(op, **args)
        self.last_contact = time.monotonic()
        return result

    async def run(self) -> None:
        """Stay connected until cancelled."""
        delay = BACKOFF_FIRST_S
        while True:
            client = Client(self.socket_path, self.timeout)
            self.attempts += 1
            try:
                await client.connect()
                await client.subscribe()
            except ApiError as exc:  # unreachable, or it refused the subscription
                await client.close()
                await self._state(False, str(exc))
                # Full jitter under a doubling cap: many tills never retry in lockstep.
                await asyncio.sleep(delay * (0.5 + random.random() / 2))
                delay = min(delay * 2, BACKOFF_MAX_S)
                continue
            self._client, delay, self.attempts = client, BACKOFF_FIRST_S, 0
            self.last_contact = time.monotonic()
            try:
                await self._state(True, "")
                while (event := await client.events.get()) is not None:
                    self.last_contact = time.monotonic()
                    data = event.get("data")
                    await self._event(str(event.get("event")),
                                      data if isinstance(data, dict) else {})
            finally:
                self._client = None
                await client.close()
            await self._state(False, "connection closed")

    async def _state(self, up: bool, detail: str) -> None:
        # The link must outlive a bug in what it reports to: it is the UI's only way back.
        try:
            await _maybe_await(self._on_state(up, detail))
        except Exception:
            log.exception("link state %s not shown", "up" if up else "down")

    async def _event(self, topic: str, data: dict[str, Any]) -> None:
        # One odd event must not take the connection (and every later verdict) down.
        try:
            await _maybe_await(self._on_event(topic, data))
        except Exception:
            log.exception("event %s not shown: %r", topic, data)


async def _maybe_await(value: Awaitable[None] | None) -> None:
    if value is not None:
        await value
