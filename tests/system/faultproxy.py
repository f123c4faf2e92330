"""A TCP proxy on loopback that injects network faults between a client and a server.

Modes, switched at any moment from the test's thread: ``PASS`` (bytes flow), ``STALL``
(bytes are held, connections stay open: a dead Wi-Fi that TCP has not noticed), ``THROTTLE``
(a few hundred bytes per tick), and :meth:`cut` (every open connection is closed after
forwarding part of the next chunk: a link that dies mid-packet). It runs its own asyncio
loop in a thread and counts what it did.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import threading
from dataclasses import dataclass


class Mode(enum.Enum):
    """How bytes are forwarded now."""

    PASS = "pass"
    STALL = "stall"
    THROTTLE = "throttle"


@dataclass(slots=True)
class Counts:
    """What the proxy did (for the proof report)."""

    connections: int = 0
    cuts: int = 0
    stalls: int = 0
    throttles: int = 0
    bytes: int = 0


class FaultProxy:
    """Listen on 127.0.0.1:``port`` and forward to ``target_port``, faults on demand."""

    THROTTLE_BYTES = 256  # bytes per tick while throttled
    TICK_S = 0.05

    def __init__(self, target_port: int) -> None:
        """Prepare (not started)."""
        self.target_port = target_port
        self.port = 0
        self.mode = Mode.PASS
        self.counts = Counts()
        self._cut_pending = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy",
                                        daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def start(self) -> FaultProxy:
        """Start listening; ``self.port`` is the port to connect to."""
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(self._serve(), self._loop)
        self.port = fut.result(10)
        return self

    def set(self, mode: Mode) -> None:
        """Switch the mode for every connection, open or new."""
        if mode is Mode.STALL and self.mode is not Mode.STALL:
            self.counts.stalls += 1
        if mode is Mode.THROTTLE and self.mode is not Mode.THROTTLE:
            self.counts.throttles += 1
        self.mode = mode

    def cut(self) -> None:
        """Close every open connection after forwarding part of its next chunk."""
        self._cut_pending = len(self._writers) or 1
        self.counts.cuts += 1

    def stop(self) -> None:
        """Close everything and stop the loop."""
        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for w in list(self._writers):
                w.close()
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _serve(self) -> int:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.counts.connections += 1
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_w}
        try:
            await asyncio.gather(self._pump(reader, up_w), self._pump(up_r, writer))
        finally:
            for w in (writer, up_w):
                self._writers.discard(w)
                w.close()

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while True:
                chunk = await src.read(4096)
                if not chunk:
                    break
                while chunk:
                    while self.mode is Mode.STALL and not self._cut_pending:
                        await asyncio.sleep(self.TICK_S)
                    if self._cut_pending:
                        # Part of the chunk goes out, then the link dies mid-packet.
                        self._cut_pending -= 1
                        dst.write(chunk[: max(1, len(chunk) // 2)])
                        with contextlib.suppress(Exception):
                            await dst.drain()
                        return
                    n = self.THROTTLE_BYTES if self.mode is Mode.THROTTLE else len(chunk)
                    dst.write(chunk[:n])
                    await dst.drain()
                    self.counts.bytes += min(n, len(chunk))
                    chunk = chunk[n:]
                    if self.mode is Mode.THROTTLE:
                        await asyncio.sleep(self.TICK_S)
        except (ConnectionError, OSError):
            pass
        finally:
            dst.close()
