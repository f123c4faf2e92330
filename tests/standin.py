"""A stand-in for the store daemon's local API, over the real domain core.

It speaks :mod:`edged.localapi`'s protocol (same framing, ops, topics and error codes) and
decides with the real :class:`edge.rules.Counter` on a real ledger; only the hardware is
pretend: the printer and the HQ link are two settable states, so a test can "unplug" the
printer or "lose" the broker and watch the UI follow. It answers in the daemon's documented shapes
(``docs/local-api.md``). Why it stays beside the real daemon: the SVG snapshots need a fixed
clock (the daemon reads the system's), and the focused UI tests run in a fraction of a
second each without a child process; ``tests/test_ui_daemon.py`` runs the same flows, the
printer and the broker against the real ``edge run --simulate``.

Runs its own event loop in a thread, so both ``App.run_test()`` tests and the synchronous
snapshot fixture can use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from edge import clock as clockmod
from edge import report as reports
from edge.box import Box
from edge.cards import CardError, issue_card
from edge.orders import orders
from edge.rules import Counter, VoidRefused
from edged.localapi import (
    MAX_LINE,
    ApiError,
    ErrorCode,
    Op,
    Topic,
    decode,
    encode,
    socket_path,
)


class StandIn:
    """A local-API server for one box home, in a background thread."""

    def __init__(self, home: Path, clock: Callable[[], float] = time.time) -> None:
        """Serve ``home``'s ledger; ``clock`` is the wall clock decisions read."""
        self.home = home
        self.clock = clock
        self.path = socket_path(home)
        # Part objects as edged.supervisor.PartStatus.to_dict() gives them, plus the
        # printer's own state (drivers.printer.PrinterState values) and its queue.
        self.printer: dict[str, Any] = {"name": "printer", "state": "running",
                                        "printer_state": "ready", "detail": "",
                                        "jobs_waiting": 0}
        self.sync: dict[str, Any] = {"online": True, "last_contact": clock()}
        self.scanner = {"name": "scanner", "state": "running", "detail": ""}
        self.camera = {"name": "camera", "state": "absent", "detail": ""}
        self.config_version = 7
        self.requests = 0
        self._jobs = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._subscribers: set[asyncio.StreamWriter] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.box: Box | None = None

    # -- life cycle (called from the test's thread) ----------------------------------

    def start(self) -> StandIn:
        """Start serving; returns when the socket accepts connections."""
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._open())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="standin", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("stand-in did not start")
        return self

    def stop(self) -> None:
        """Close every connection and the socket (as a stopped daemon would)."""
        if self._loop is None or self._thread is None:
            return
        self._do(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._loop, self._thread = None, None

    def _do(self, coro: Coroutine[Any, Any, Any]) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    # -- what a test can change ------------------------------------------------------

    def set_printer(self, state: str, jobs_waiting: int | None = None) -> None:
        """The printer changes state (``ready``, ``no_paper``, ``offline``, ...)."""
        self.printer["printer_state"] = state
        self.printer["state"] = "running" if state == "ready" else "failed"
        self.printer["detail"] = "" if state == "ready" else state.replace("_", " ")
        if jobs_waiting is not None:
            self.printer["jobs_waiting"] = jobs_waiting
        self._do(self._broadcast(Topic.DEVICE, dict(self.printer)))

    def set_online(self, online: bool) -> None:
        """The HQ broker goes away or comes back."""
        self.sync["online"] = online
        if online:
            self.sync["last_contact"] = self.clock()
        self._do(self._sync_event())

    async def _sync_event(self) -> None:
        # In the server's thread: the ledger connection belongs to it.
        await self._broadcast(Topic.SYNC, {**self.sync, "backlog": self._box.ledger.backlog()})

    def scan_from(self, code: str, source: str = "serial") -> dict[str, Any]:
        """A scan from another source (the serial scanner): decided and streamed."""
        return dict(self._do(self._scan({"code": code, "source": source, "till": "T1"})))

    # -- serving -------------------------------------------------------------------

    async def _open(self) -> None:
        self.box = Box.open(self.home)
        self.box.counter = Counter(self.box.ledger, self.box.identity, self.clock)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._server = await asyncio.start_unix_server(self._serve, str(self.path),
                                                       limit=MAX_LINE + 1)

    async def _close(self) -> None:
        assert self._server is not None
        self._server.close()
        for w in list(self._writers):
            w.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        if self.box is not None:
            self.box.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while line := await reader.readline():
                self.requests += 1
                rid: Any = None
                try:
                    msg = decode(line)
                    rid = msg.get("id")
                    result = await self._handle(msg, writer)
                    reply = {"id": rid, "ok": True, "result": result}
                except ApiError as exc:
                    reply = {"id": rid, "ok": False,
                             "error": {"code": exc.code, "message": str(exc)}}
                writer.write(encode(reply))
                await writer.drain()
        except (ConnectionError, ValueError):
            pass
        finally:
            self._writers.discard(writer)
            self._subscribers.discard(writer)
            writer.close()

    async def _broadcast(self, topic: Topic, data: dict[str, Any]) -> None:
        for w in list(self._subscribers):
            try:
                w.write(encode({"event": str(topic), "data": data}))
                await w.drain()
            except ConnectionError:
                self._subscribers.discard(w)

    async def _handle(self, msg: dict[str, Any], writer: asyncio.StreamWriter) -> dict[str, Any]:
        try:
            op = Op(msg.get("op"))
        except ValueError:
            raise ApiError(ErrorCode.BAD_REQUEST, f"unknown op {msg.get('op')!r}") from None
        args = msg.get("args") or {}
        if op is Op.SUBSCRIBE:
            self._subscribers.add(writer)
            return {}
        if op is Op.SCAN:
            return await self._scan(args)
        handler = getattr(self, "_op_" + op.value)
        return dict(handler(args))

    # -- ops -----------------------------------------------------------------------

    @property
    def _box(self) -> Box:
        assert self.box is not None
        return self.box

    async def _scan(self, args: dict[str, Any]) -> dict[str, Any]:
        code = args.get("code")
        if not isinstance(code, str):
            raise ApiError(ErrorCode.BAD_REQUEST, "scan needs a code")
        till, source = str(args.get("till") or ""), str(args.get("source") or "")
        verdict = self._box.counter.redeem(code, till=till, source=source)
        await self._broadcast(Topic.VERDICT, {**verdict.to_dict(), "till": till,
                                              "source": source})
        return verdict.to_dict()

    def _op_check(self, args: dict[str, Any]) -> dict[str, Any]:
        return self._box.counter.check(str(args.get("code", "")),
                                       str(args.get("till", ""))).to_dict()

    def _op_void(self, args: dict[str, Any]) -> dict[str, Any]:
        try:
            return self._box.counter.void(int(args.get("decision_id", 0)),
                                          str(args.get("reason", "")), str(args.get("till", "")))
        except VoidRefused as exc:
            raise ApiError(ErrorCode.REFUSED, f"{exc.code}: {exc}") from None

    def _op_recent(self, args: dict[str, Any]) -> dict[str, Any]:
        # As the daemon answers: edge/report.py's rows plus `voidable` at its clock.
        led = self._box.ledger
        window, now = float(led.setting("void_window_s")), self.clock()
        decisions = reports.recent(led, int(args.get("limit", 20)))
        for d in decisions:
            d["voidable"] = bool(d["accepted"] and d["voided_at"] is None
                                 and now - d["at"] <= window)
        return {"decisions": decisions}

    def _job(self) -> str:
        self._jobs += 1
        if self.printer["state"] != "ready":
            self.printer["jobs_waiting"] = int(self.printer["jobs_waiting"]) + 1
        return f"J{self._jobs:04d}"

    def _op_print_card(self, args: dict[str, Any]) -> dict[str, Any]:
        box = self._box
        reading = clockmod.read(self.clock(), box.ledger.trusted_time(),
                                box.ledger.setting("clock_skew_s"))
        try:
            card = issue_card(box.ledger, box.identity, box.device_key,
                              box.config.card.url_base, reading,
                              str(args.get("receipt_ref", "")))
        except CardError as exc:
            raise ApiError(ErrorCode.BAD_REQUEST, str(exc)) from None
        return {"serial": card.serial, "url": card.url, "job_id": self._job()}

    def _op_reprint(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"job_ids": [self._job() for _ in range(int(args.get("count", 1)))]}

    def _day(self, args: dict[str, Any]) -> tuple[float, float]:
        start, end = reports.day_bounds(self.clock())
        return (float(args.get("day_start", start)), float(args.get("day_end", end)))

    def _op_status(self, args: dict[str, Any]) -> dict[str, Any]:
        box = self._box
        reading = clockmod.read(self.clock(), box.ledger.trusted_time(),
                                box.ledger.setting("clock_skew_s"))
        return {"store_id": box.identity.store_id, "device_id": box.identity.device_id,
                "store_name": box.config.store_name, **self.sync,
                "backlog": box.ledger.backlog(),
                "printer": dict(self.printer), "scanner": dict(self.scanner),
                "camera": dict(self.camera),
                "sync": {"name": "sync", "state": "running", "detail": ""},
                "clock_trusted": reading.trusted, "clock": reading.now,
                "config_version": self.config_version, "simulate": True, "last_error": ""}

    def _op_pickups(self, args: dict[str, Any]) -> dict[str, Any]:
        start, end = self._day(args)
        return {"orders": orders(self._box.ledger, start, end, self.clock())}

    def _op_report(self, args: dict[str, Any]) -> dict[str, Any]:
        return reports.report(self._box.ledger, *self._day(args))

    def _op_print_report(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"job_id": self._job()}


def main() -> None:
    """``python -m tests.standin HOME``: serve until killed (for bench/ui.py)."""
    import signal
    import sys

    server = StandIn(Path(sys.argv[1])).start()
    print(server.path, flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    server.stop()


if __name__ == "__main__":
    main()
