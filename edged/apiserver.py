"""The daemon's side of the local API (:mod:`edged.localapi`): a Unix socket server.

One JSON line per frame, at most :data:`edged.localapi.MAX_LINE` bytes. A line that is too
long, not UTF-8, not JSON or names no known op is answered with a ``bad_request`` error and
the connection keeps working: an oversized line is skipped up to its newline without being
held in memory. Each connection has one bounded outgoing queue drained by its own writer
task, so a subscriber that stops reading is dropped when its queue fills, and never slows
the daemon or the other clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from edged.localapi import MAX_LINE, ApiError, ErrorCode, Op, Topic, decode, encode

log = logging.getLogger("edge.api")

QUEUE_FRAMES = 256  # per client; a subscriber this far behind is dropped
READ_CHUNK = 64 * 1024
SOCKET_MODE = 0o660

Handler = Callable[[Op, dict[str, Any]], Awaitable[dict[str, Any]]]
Snapshot = Callable[[], dict[str, Any]]


class ServerError(Exception):
    """The API socket cannot be served (path in use by a live daemon, bad group...)."""


class _Conn:
    """One client connection: its writer task, queue and subscription."""

    def __init__(self, cid: int, writer: asyncio.StreamWriter) -> None:
        self.cid = cid
        self.writer = writer
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE_FRAMES)
        self.subscribed = False
        self.dropped = False

    def send(self, frame: dict[str, Any]) -> bool:
        """Queue a frame; a full queue drops the client. Returns whether it was queued."""
        if self.dropped:
            return False
        try:
            self.queue.put_nowait(encode(frame))
        except asyncio.QueueFull:
            self.drop("outgoing queue full (client not reading)")
            return False
        return True

    def drop(self, why: str) -> None:
        if not self.dropped:
            self.dropped = True
            log.warning("api: dropping client %d: %s", self.cid, why)
            self.writer.transport.abort()

    async def write_loop(self) -> None:
        while (frame := await self.queue.get()) is not None:
            self.writer.write(frame)
            await self.writer.drain()


class ApiServer:
    """Serves requests through ``handler`` and fans events out to subscribers."""

    def __init__(self, path: Path, handler: Handler, snapshot: Snapshot, group: str = "") -> None:
        """Listen at ``path``; ``snapshot`` gives the status sent to each new subscriber."""
        self.path = path
        self.handler = handler
        self.snapshot = snapshot
        self.group = group
        self._server: asyncio.Server | None = None
        self._conns: dict[int, _Conn] = {}
        self._next = 0

    @property
    def clients(self) -> int:
        """Connected clients."""
        return len(self._conns)

    @property
    def subscribers(self) -> int:
        """Clients subscribed to events."""
        return sum(1 for c in self._conns.values() if c.subscribed)

    async def start(self) -> None:
        """Bind the socket (mode 0660, group if configured).

        Raises:
            ServerError: another daemon answers on the path, or the group does not exist.
        """
        gid = -1
        if self.group:
            try:
                gid = grp.getgrnam(self.group).gr_gid
            except KeyError:
                raise ServerError(f"api.group {self.group!r} is not a group on this system")\
                    from None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() or self.path.is_symlink():
            if _alive(self.path):
                raise ServerError(f"another daemon is serving {self.path}")
            self.path.unlink()  # stale socket of a daemon that died
        # Created under a umask so there is no moment where others could connect.
        old = os.umask(0o117)
        try:
            self._server = await asyncio.start_unix_server(self._serve, str(self.path),
                                                           limit=READ_CHUNK)
        finally:
            os.umask(old)
        os.chmod(self.path, SOCKET_MODE)
        if gid >= 0:
            os.chown(self.path, -1, gid)

    async def stop(self) -> None:
        """Close every connection and remove the socket."""
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns.values()):
            conn.writer.transport.abort()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def publish(self, topic: Topic, data: dict[str, Any]) -> None:
        """Send an event to every subscriber (never blocks)."""
        frame = {"event": str(topic), "data": data}
        for conn in list(self._conns.values()):
            if conn.subscribed:
                conn.send(frame)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._next += 1
        conn = _Conn(self._next, writer)
        self._conns[conn.cid] = conn
        write_task = asyncio.create_task(conn.write_loop(), name=f"api-write-{conn.cid}")
        try:
            async for line in _lines(reader):
                if isinstance(line, ApiError):
                    conn.send({"id": None, "ok": False,
                               "error": {"code": line.code, "message": str(line)}})
                    continue
                await self._request(conn, line)
                if conn.dropped:
                    break
        except (ConnectionError, OSError):
            pass
        finally:
            self._conns.pop(conn.cid, None)
            if not conn.dropped:
                with contextlib.suppress(asyncio.QueueFull):
                    conn.queue.put_nowait(None)  # let the writer flush what is queued
                with contextlib.suppress(TimeoutError, ConnectionError, OSError):
                    await asyncio.wait_for(asyncio.shield(write_task), 1)
            write_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
                await write_task
            writer.close()

    async def _request(self, conn: _Conn, line: bytes) -> None:
        rid: Any = None
        try:
            msg = decode(line)
            rid = msg.get("id")
            op_name, args = msg.get("op"), msg.get("args", {})
            if args is None:
                args = {}
            if not isinstance(args, dict):
                raise ApiError(ErrorCode.BAD_REQUEST, "args must be a JSON object")
            try:
                op = Op(str(op_name))
            except ValueError:
                raise ApiError(ErrorCode.BAD_REQUEST, f"unknown op {op_name!r}; known: "
                               + ", ".join(o.value for o in Op)) from None
            if op is Op.SUBSCRIBE:
                conn.subscribed = True
                conn.send({"id": rid, "ok": True, "result": {}})
                conn.send({"event": str(Topic.STATUS), "data": self.snapshot()})
                return
            result = await self.handler(op, args)
            conn.send({"id": rid, "ok": True, "result": result})
        except ApiError as exc:
            conn.send({"id": rid, "ok": False, "error": {"code": exc.code, "message": str(exc)}})
        except Exception as exc:  # a handler bug must not take the connection down
            log.exception("api: %s failed", line[:80])
            conn.send({"id": rid, "ok": False,
                       "error": {"code": ErrorCode.INTERNAL, "message": repr(exc)}})


async def _lines(reader: asyncio.StreamReader) -> Any:
    """Yield each complete line, or an :class:`ApiError` for a line over the bound.

    An oversized line is discarded as it streams in: memory stays bounded by
    ``MAX_LINE + READ_CHUNK`` whatever the client sends.
    """
    buf = bytearray()
    skipping = False
    while chunk := await reader.read(READ_CHUNK):
        start = 0
        while (nl := chunk.find(b"\n", start)) >= 0:
            if skipping:
                skipping = False
                yield ApiError(ErrorCode.BAD_REQUEST, f"line over {MAX_LINE} bytes: ignored")
            else:
                buf += chunk[start:nl]
                if len(buf) > MAX_LINE:
                    yield ApiError(ErrorCode.BAD_REQUEST,
                                   f"line over {MAX_LINE} bytes: ignored")
                elif buf.strip():
                    yield bytes(buf)
            buf.clear()
            start = nl + 1
        if not skipping:
            buf += chunk[start:]
            if len(buf) > MAX_LINE:
                skipping = True
                buf.clear()


def _alive(path: Path) -> bool:
    """Whether something accepts connections at the Unix socket ``path``."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(0.5)
    try:
        s.connect(str(path))
    except OSError:
        return False
    finally:
        s.close()
    return True
