"""The local API between the daemon and its clients (cashier UI, ``edge`` commands).

One contract, defined here and documented in ``docs/local-api.md``:

* Transport: a Unix stream socket (default ``<home>/run/edge.sock``), mode 0660 so only
  the service's group can connect.
* Framing: one UTF-8 JSON object per line, at most :data:`MAX_LINE` bytes.
* Request ``{"id": 7, "op": "scan", "args": {...}}``; response
  ``{"id": 7, "ok": true, "result": {...}}`` or
  ``{"id": 7, "ok": false, "error": {"code": "...", "message": "..."}}``.
* ``{"op": "subscribe"}`` turns the connection into a stream as well: the daemon then also
  sends ``{"event": "<Topic>", "data": {...}}`` lines, interleaved with responses.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import json
from pathlib import Path
from typing import Any

MAX_LINE = 64 * 1024
SOCKET_NAME = "run/edge.sock"


class Op(enum.StrEnum):
    """Every request the daemon serves, with the arguments it takes."""

    SCAN = "scan"  # {code, till?, source?, party?} -> Verdict.to_dict()
    CHECK = "check"  # {code, till?} -> Verdict.to_dict(); records only a typed-number miss
    VOID = "void"  # {decision_id, reason, till?} -> {decision_id, code_id, voided_at, ...}
    RECENT = "recent"  # {limit?} -> {"decisions": [...]} newest first
    PRINT_CARD = "print_card"  # {receipt_ref?} -> {serial, url, job_id}
    REPRINT = "reprint"  # {count?} -> {"job_ids": [...]}
    STATUS = "status"  # {} -> Status dict (see docs)
    PICKUPS = "pickups"  # {day_start?, day_end?} -> {"orders": [...]}
    REPORT = "report"  # {day_start?, day_end?} -> report dict
    PRINT_REPORT = "print_report"  # {day_start?, day_end?} -> {job_id}
    SUBSCRIBE = "subscribe"  # {} -> {} and then event lines
    SALE = "sale"  # {receipt_ref?} -> {card: {serial, url, job_id} | null}: the till sold
    WORKSHOPS = "workshops"  # {day_start?, day_end?} -> {"sessions": [...]} with check-ins


class Topic(enum.StrEnum):
    """What a subscribed client is told about."""

    VERDICT = "verdict"  # a decision was recorded (any source)
    DEVICE = "device"  # scanner / camera / printer state changed
    SYNC = "sync"  # online/offline, backlog
    STATUS = "status"  # a full status snapshot


class ErrorCode(enum.StrEnum):
    """Why a request failed."""

    BAD_REQUEST = "bad_request"  # not JSON, too long, unknown op, bad args
    REFUSED = "refused"  # a domain refusal (void outside window, ...): message says why
    UNAVAILABLE = "unavailable"  # the part needed is absent (no printer configured, ...)
    STORAGE_FULL = "storage_full"  # the ledger's disk is full: nothing recorded, retry later
    INTERNAL = "internal"


class ApiError(Exception):
    """The daemon answered with an error, or could not be reached."""

    def __init__(self, code: str, message: str) -> None:
        """Carry the error code and message."""
        super().__init__(message)
        self.code = code


class DaemonUnavailable(ApiError):
    """No daemon is listening (not running, restarting, or wrong socket path)."""

    def __init__(self, message: str) -> None:
        """Carry why the connection failed."""
        super().__init__("unavailable", message)


def socket_path(home: Path) -> Path:
    """The daemon's socket inside a box home."""
    return home / SOCKET_NAME


def encode(obj: dict[str, Any]) -> bytes:
    """One frame: compact JSON and a newline."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    """Parse one frame.

    Raises:
        ApiError: ``bad_request`` when the line is too long, not UTF-8 JSON, or not an object.
    """
    if len(line) > MAX_LINE:
        raise ApiError(ErrorCode.BAD_REQUEST, f"line over {MAX_LINE} bytes")
    try:
        obj = json.loads(line)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(ErrorCode.BAD_REQUEST, f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ApiError(ErrorCode.BAD_REQUEST, "a frame must be a JSON object")
    return obj


class Client:
    """An asyncio client: request/response, plus an event queue after :meth:`subscribe`.

    One reader task routes responses to their waiting requests and events to
    :attr:`events`; a closed connection fails every pending request with
    :class:`DaemonUnavailable` and puts ``None`` on :attr:`events`.
    """

    def __init__(self, path: Path, timeout: float = 5.0) -> None:
        """Talk to the daemon at socket ``path``; each request waits at most ``timeout``."""
        self.path = path
        self.timeout = timeout
        self.events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        """Open the connection.

        Raises:
            DaemonUnavailable: nothing listens at the socket.
        """
        try:
            reader, self._writer = await asyncio.wait_for(
                asyncio.open_unix_connection(str(self.path), limit=MAX_LINE + 1), self.timeout)
        except TimeoutError:  # its str() is empty: say what happened
            raise DaemonUnavailable(f"daemon not reachable at {self.path}: no connection "
                                    f"within {self.timeout:g} s (timeout)") from None
        except OSError as exc:
            raise DaemonUnavailable(f"daemon not reachable at {self.path}: {exc}") from None
        self._reader_task = asyncio.create_task(self._read(reader), name="localapi-reader")

    @property
    def connected(self) -> bool:
        """Whether the connection is open."""
        return self._writer is not None and not self._writer.is_closing()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while line := await reader.readline():
                msg = decode(line)
                if "event" in msg:
                    self.events.put_nowait(msg)
                elif (fut := self._pending.pop(msg.get("id", -1), None)) and not fut.done():
                    fut.set_result(msg)
        except (OSError, ValueError, ApiError):
            pass
        finally:
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(DaemonUnavailable("connection to the daemon closed"))
            self._pending.clear()
            self.events.put_nowait(None)
            if self._writer is not None:
                self._writer.close()

    async def request(self, op: Op | str, **args: Any) -> dict[str, Any]:
        """Send one request and return its result.

        Raises:
            DaemonUnavailable: not connected, or the connection dropped or timed out.
            ApiError: the daemon answered with an error, or the request is over
                :data:`MAX_LINE` bytes (``bad_request``, not sent).
        """
        if not self.connected or self._writer is None:
            raise DaemonUnavailable("not connected to the daemon")
        rid = next(self._ids)
        frame = encode({"id": rid, "op": str(op), "args": args})
        if len(frame) > MAX_LINE:
            # The daemon skips such a line unread, so its answer can name no request id:
            # refuse it here, as the daemon would, rather than wait out the timeout.
            raise ApiError(ErrorCode.BAD_REQUEST, f"line over {MAX_LINE} bytes")
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        try:
            self._writer.write(frame)
            await self._writer.drain()
            msg = await asyncio.wait_for(fut, self.timeout)
        except (OSError, TimeoutError) as exc:
            raise DaemonUnavailable(f"daemon did not answer {op}: {exc or 'timeout'}") from None
        finally:
            self._pending.pop(rid, None)
        if not msg.get("ok"):
            err = msg.get("error") or {}
            raise ApiError(str(err.get("code", ErrorCode.INTERNAL)), str(err.get("message", "")))
        result = msg.get("result")
        return result if isinstance(result, dict) else {}

    async def subscribe(self) -> None:
        """Ask for the event stream; events then arrive on :attr:`events`."""
        await self.request(Op.SUBSCRIBE)

    async def close(self) -> None:
        """Close the connection and stop the reader."""
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task


async def call(path: Path, op: Op | str, timeout: float = 5.0, **args: Any) -> dict[str, Any]:
    """One request on a fresh connection (for the ``edge`` commands)."""
    client = Client(path, timeout)
    await client.connect()
    try:
        return await client.request(op, **args)
    finally:
        await client.close()
