"""Stand-in printers for the printer tests: real sockets and real pseudo-terminals.

Each fake records every byte it receives and answers ``DLE EOT n`` status requests the way
an ESC/POS printer does, in the state the test sets (``ready``, ``no_paper``,
``cover_open``, or ``silent`` for a printer that never answers).
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
import tty

# Status bytes: bits 1 and 4 always set. n=1 bit 3 offline; n=2 bit 2 cover, bit 5 paper
# stop; n=4 bits 5-6 paper end.
STATUS = {
    "ready": {1: 0x12, 2: 0x12, 3: 0x12, 4: 0x12},
    "paper_low": {1: 0x12, 2: 0x12, 3: 0x12, 4: 0x1E},
    "no_paper": {1: 0x1A, 2: 0x32, 3: 0x12, 4: 0x72},
    "cover_open": {1: 0x1A, 2: 0x16, 3: 0x12, 4: 0x12},
}


class _StatusParser:
    """Finds ``DLE EOT n`` in a byte stream split across reads."""

    def __init__(self) -> None:
        self.tail = b""

    def queries(self, chunk: bytes) -> list[int]:
        data = self.tail + chunk
        found = []
        i = data.find(b"\x10\x04")
        while i != -1 and i + 2 < len(data):
            found.append(data[i + 2])
            i = data.find(b"\x10\x04", i + 3)
        self.tail = data[-2:]
        return found


class FakeNetworkPrinter:
    """A raw-port (9100) printer on 127.0.0.1 that can be switched off and on again."""

    def __init__(self) -> None:
        self.state = "ready"
        self.received = bytearray()
        self.connections = 0
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._clients: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self.port = 0
        self.start()

    def start(self) -> None:
        """Switch on (listen on the same port as before, or a free one the first time)."""
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", self.port))
        srv.listen(4)
        srv.settimeout(0.1)
        self.port = srv.getsockname()[1]
        self._listener = srv
        t = threading.Thread(target=self._accept, args=(srv,), daemon=True)
        t.start()
        self._threads.append(t)

    def _accept(self, srv: socket.socket) -> None:
        while self._listener is srv:
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            self._clients.append(conn)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, conn: socket.socket) -> None:
        parser = _StatusParser()
        conn.settimeout(0.1)
        while True:
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            with self._lock:
                self.received += chunk
            for n in parser.queries(chunk):
                answer = STATUS.get(self.state, {}).get(n)
                if answer is not None:
                    with contextlib.suppress(OSError):
                        conn.sendall(bytes([answer]))

    def stop(self) -> None:
        """Switch off: stop listening and drop every connection."""
        srv, self._listener = self._listener, None
        if srv is not None:
            srv.close()
        for c in self._clients:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()
        self._clients.clear()
        for t in self._threads:
            t.join(timeout=2)
        self._threads.clear()

    def job_bytes(self) -> bytes:
        """Everything received so far."""
        with self._lock:
            return bytes(self.received)


class FakePtyPrinter:
    """A printer on the far end of a pseudo-terminal (as a USB-serial printer appears).

    ``slave_path`` is what the driver opens. ``reading`` False makes it stop reading, like
    a printer whose buffer is full: writes then stall. ``stall_after`` does the same once
    that many bytes have been received in all (a jam in the middle of a job).
    """

    def __init__(self) -> None:
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no LF -> CRLF: bytes pass unchanged
        self.slave_path = os.ttyname(self._slave)
        self.state = "ready"
        self.reading = True
        self.stall_after: int | None = None
        self.read_delay = 0.0  # seconds per read: a slow printer
        self.received = bytearray()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        parser = _StatusParser()
        while not self._stop.is_set():
            stalled = self.stall_after is not None and len(self.received) >= self.stall_after
            if not self.reading or stalled:
                self._stop.wait(0.02)
                continue
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                continue
            try:
                chunk = os.read(self.master, 4096 if self.read_delay else 65536)
            except OSError:
                self._stop.wait(0.02)  # no one has the slave open right now
                continue
            self.received += chunk
            if self.read_delay:
                self._stop.wait(self.read_delay)
            for n in parser.queries(chunk):
                answer = STATUS.get(self.state, {}).get(n)
                if answer is not None:
                    os.write(self.master, bytes([answer]))

    def close(self) -> None:
        """Stop and close both ends."""
        self._stop.set()
        self._thread.join(timeout=2)
        for fd in (self.master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
