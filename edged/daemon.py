"""The store daemon (``edge run``): one asyncio process wiring the box's parts together.

It owns the ledger (through :class:`edge.box.Box`), the serial scanner, the camera, the
printer spooler and (when installed) sync, each as a named task in one
:class:`asyncio.TaskGroup`, each supervised (:mod:`edged.supervisor`) so a part that is
absent, unplugged or failing never stops the others. Every scan, whatever its source
(serial, camera, the UI's keyboard wedge or a command through the local API), goes through
:meth:`Daemon.decide`: the rules engine records the decision durably, then subscribers get
a ``verdict`` event, then the printer (if configured) gets a redemption slip.

The decision runs on the event loop: it commits in about 0.3 ms (``bench/daemon.py``
measures the whole path), and SQLite's connection stays on one thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import functools
import grp
import logging
import os
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drivers.camera import CameraScanner
from drivers.scan import DeviceState, DeviceStatus, DropReason, ScanInput
from drivers.scanner_serial import SerialScanner
from edge import config as box_config
from edge import report as reports
from edge import workshops
from edge.box import Box
from edge.cards import CardError
from edge.config import ConfigError
from edge.ledger import (
    LedgerDamaged,
    LedgerError,
    LedgerFull,
    LedgerReadOnly,
    check_intact,
    checkpoint,
    read_only,
)
from edge.orders import orders
from edge.rules import VoidRefused
from edge.verdict import Verdict
from edged.apiserver import ApiServer, ServerError
from edged.config import DaemonConfig, with_scanner_port
from edged.devices import Devices, QueuePrinting, check
from edged.localapi import ApiError, ErrorCode, Op, Topic
from edged.notify import Notifier
from edged.printing import PrintError, PrintService
from edged.ptybridge import PtyBridge
from edged.storage import Reserve, StorageState, free_bytes
from edged.supervisor import PartState, PartStatus, supervise

if TYPE_CHECKING:  # paho is imported only when sync is configured
    from sync.service import SyncService, SyncState
    from sync.settings import MqttSettings

log = logging.getLogger("edge.daemon")

SCAN_QUEUE = 1000  # device scans waiting for a decision; a cashier never gets this far ahead
CHECKPOINT_EVERY = 5.0  # seconds between WAL checkpoints while scans come in
_DEVICE_STATES = {DeviceState.ABSENT: PartState.FAILED, DeviceState.CONNECTING: PartState.STARTING,
                  DeviceState.READY: PartState.RUNNING, DeviceState.FAILED: PartState.FAILED}
STOP_ROUNDS, STOP_ROUND_S = 20, 0.5  # cancel again every 0.5 s, for 10 s at most
CLOCK_EVERY = 60.0  # seconds between looks at the kernel's NTP state
STORAGE_EVERY = 5.0  # seconds between looks at the ledger's disk (full? reserve?)
# Free space that must come back (over what was free when a write failed) before the
# status stops saying "full" without a write having succeeded: a decision needs a few pages.
STORAGE_MARGIN = 256 * 1024
PARTS = ("scanner", "camera", "printer", "sync")


class ScanSource(enum.StrEnum):
    """Where a scan came from; recorded with its decision."""

    SERIAL = "serial"
    CAMERA = "camera"
    KEYBOARD = "keyboard"  # the UI's keyboard-wedge input
    API = "api"
    CLI = "cli"


@dataclass(frozen=True, slots=True)
class Scan:
    """One scanned string waiting for a decision."""

    text: str
    source: str
    till: str = ""


@functools.cache
def software_version() -> str:
    """The installed store-edge version: the ``Version:`` line of its dist-info METADATA.

    Read directly rather than with ``importlib.metadata``, which loads the email package
    and about 2.7 MB of resident memory into a daemon that asks this once.
    """
    for entry in sys.path:
        for meta in Path(entry or ".").glob("store_edge-*.dist-info/METADATA"):
            with contextlib.suppress(OSError), meta.open(encoding="utf-8") as f:
                for line in f:
                    if line.startswith("Version:"):
                        return line.partition(":")[2].strip()
                    if not line.strip():
                        break  # the headers end at the first blank line
    return "0+unknown"


class Daemon:
    """The running box: parts, scan pipeline and local API."""

    def __init__(self, cfg: DaemonConfig, box: Box, notifier: Notifier | None = None) -> None:
        """Wire ``box`` with the devices of ``cfg``; nothing starts until :meth:`run`."""
        self.cfg = cfg
        self.box = box
        self.notifier = notifier or Notifier()
        self.parts = {name: PartStatus(name) for name in PARTS}
        self.api = ApiServer(cfg.socket_path, self.dispatch, self.status, cfg.api.group)
        self.sim: PtyBridge | None = None
        self.printing: PrintService | None = None
        self.devices: Devices | None = None
        self.started = time.time()
        self.scans = 0
        self.last_error = ""
        self._scans: asyncio.Queue[Scan] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._stop: asyncio.Event | None = None
        self.sync: SyncService | None = None
        self.sync_state: dict[str, Any] | None = None  # the sync part's last SyncState
        self.storage = StorageState()
        self.reserve = Reserve(box.ledger.path.parent)

    # -- the scan pipeline ----------------------------------------------------------

    def decide(self, text: str, source: str, till: str = "", party: int | None = None) -> Verdict:
        """Decide on one scan: record it, tell subscribers, print what config asks for.

        Raises:
            LedgerFull: the ledger's disk is full: nothing recorded, no verdict exists.
            sqlite3.Error: the ledger could not record it otherwise: no verdict exists.
        """
        try:
            verdict = self.box.counter.redeem(text, till=till, source=source, party=party)
        except LedgerFull as exc:
            self._storage_failed(exc)
            raise
        self._storage_ok()
        self.scans += 1
        log.info("scan source=%s till=%s decision=%s %s%s", source, till or "-",
                 verdict.decision_id, "accepted" if verdict.accepted else "rejected",
                 "" if verdict.accepted else f" reason={verdict.reason}")
        self.api.publish(Topic.VERDICT, {**verdict.to_dict(), "source": source, "till": till})
        if verdict.accepted and self.printing is not None and self._loop is not None:
            # After the verdict frame is written: the slip's queue commit (its own fsync)
            # must not delay what the cashier waits for.
            self._loop.call_soon(self._slip, verdict, till)
        if self.sync is not None:
            self.sync.wake()  # send the decision now rather than at the next poll
        return verdict

    def _storage_failed(self, exc: LedgerFull) -> None:
        """A write found the disk full: say so in the status, once, loudly."""
        if not self.storage.full:
            self.storage = StorageState(True, time.time(), free_bytes(exc.path.parent), str(exc))
            log.error("storage full: %s; redemptions are refused until space is freed", exc)
            self.api.publish(Topic.STATUS, self.status())

    def _storage_ok(self) -> None:
        """A write succeeded: the disk has room again."""
        if self.storage.full:
            self.storage = StorageState()
            log.info("storage has room again: recording resumed")
            self.api.publish(Topic.STATUS, self.status())

    async def _storage_watch(self) -> None:
        # While full, nothing else would tell the cashier that space came back before the
        # next scan: look at the free space and clear the alarm once enough has returned.
        # Otherwise keep the reserve a restart on a full disk opens the ledger with.
        while True:
            self._storage_look()
            await asyncio.sleep(STORAGE_EVERY)

    def _storage_look(self) -> None:
        st = self.storage
        if st.full and free_bytes(self.box.ledger.path.parent) >= \
                st.free_at_failure + STORAGE_MARGIN:
            self._storage_ok()
        if not self.storage.full and self.reserve.ensure():
            log.info("storage reserve %s in place", self.reserve.path)

    def submit_scan(self, text: str, source: str, till: str = "") -> None:
        """Queue a device scan for a decision; safe to call from any thread."""
        if self._loop is None or self._scans is None:
            log.warning("scan from %s before the daemon runs: dropped", source)
            return
        scan = Scan(text, source, till)
        if threading.get_ident() == self._loop_thread:
            self._enqueue(scan)
        else:
            self._loop.call_soon_threadsafe(self._enqueue, scan)

    def _enqueue(self, scan: Scan) -> None:
        assert self._scans is not None
        try:
            self._scans.put_nowait(scan)
        except asyncio.QueueFull:
            log.error("scan from %s dropped: %d scans already waiting", scan.source,
                      self._scans.qsize())

    async def _pipeline(self) -> None:
        assert self._scans is not None
        while True:
            self._decide_logged(await self._scans.get())

    def _decide_logged(self, scan: Scan) -> None:
        try:
            self.decide(scan.text, scan.source, scan.till)
        except Exception as exc:
            # Nothing was recorded, nothing shown as accepted: say so loudly, keep going.
            self.last_error = f"scan from {scan.source} not recorded: {exc}"
            log.error("%s", self.last_error)
            self.api.publish(Topic.STATUS, self.status())

    def _slip(self, verdict: Verdict, till: str) -> None:
        """A redemption slip for an acceptance, when ``printer.redemption_slip`` says so."""
        if self.printing is None or not self.cfg.policy.redemption_slip:
            return
        try:
            self.printing.redemption(verdict, till)
        except PrintError as exc:
            # The redemption stands (it is recorded); the slip is what failed.
            log.error("after-sale print for decision %s failed: %s", verdict.decision_id, exc)

    # -- parts ------------------------------------------------------------------------

    def _part_changed(self, part: PartStatus) -> None:
        log.info("part %s %s%s", part.name, part.state.value,
                 f" ({part.detail})" if part.detail else "")
        self.api.publish(Topic.DEVICE, part.to_dict())
        self.notifier.status(self._summary())

    def _summary(self) -> str:
        parts = " ".join(f"{p.name}={p.state.value}" for p in self.parts.values()
                         if p.state is not PartState.ABSENT)
        return f"{self.box.identity.store_id}/{self.box.identity.device_id} {parts}".strip()

    def _on_scan(self, scan: ScanInput) -> None:
        self.submit_scan(scan.text, scan.source, self.cfg.device_till)

    def _on_device(self, name: str) -> Callable[[DeviceStatus], None]:
        part = self.parts[name]

        def changed(st: DeviceStatus) -> None:
            part.state = _DEVICE_STATES[st.state]
            part.detail, part.since = st.detail, time.time()
            part.extra["device_state"] = st.state.value
            self._part_changed(part)

        return changed

    def _on_drop(self, reason: DropReason, preview: bytes) -> None:
        # The driver logged it with its size; count it so the status shows line trouble.
        part = self.parts["scanner"]
        part.extra["dropped"] = int(part.extra.get("dropped", 0)) + 1
        part.extra["last_drop"] = reason.value

    async def _run_scanner(self) -> None:
        assert self.devices is not None and self.devices.scanner is not None
        await SerialScanner(self.devices.scanner, self._on_scan, self._on_device("scanner"),
                            self._on_drop).run()

    async def _run_camera(self) -> None:
        assert self.devices is not None and self.devices.camera is not None
        await CameraScanner(self.devices.camera, self._on_scan,
                            self._on_device("camera")).run()

    async def _run_printer(self) -> None:
        assert self.printing is not None
        part = self.parts["printer"]

        def state(printer_state: str, ok: bool, detail: str, waiting: int) -> None:
            part.state = PartState.RUNNING if ok else PartState.FAILED
            part.detail, part.since = detail or printer_state, time.time()
            part.extra.update(printer_state=printer_state, jobs_waiting=waiting)
            self._part_changed(part)

        await self.printing.run(state)

    def _on_sync(self, state: SyncState) -> None:
        self.sync_state = dataclasses.asdict(state)
        part = self.parts["sync"]
        detail = ("online" if state.online else "offline") + (f": {state.detail}"
                                                             if state.detail else "")
        if part.detail != detail:
            part.detail, part.since = detail, time.time()
            log.info("sync %s, backlog %d", detail, state.backlog)
        self.api.publish(Topic.SYNC, self.sync_state)

    async def _run_sync(self) -> None:
        assert self.sync is not None
        part = self.parts["sync"]
        part.state, part.since = PartState.RUNNING, time.time()
        self._part_changed(part)
        await self.sync.run()

    async def _checkpointer(self) -> None:
        # The ledger leaves WAL checkpoints to us so no redemption pays for one
        # (edge/ledger.py): copy pages back on a thread of its own once scans go quiet.
        done = self.scans
        while True:
            await asyncio.sleep(CHECKPOINT_EVERY)
            if self.scans == done:
                continue
            done = self.scans
            try:
                await asyncio.to_thread(checkpoint, self.box.ledger.path)
            except sqlite3.Error as exc:
                log.warning("ledger checkpoint failed: %s", exc)

    async def _clock(self) -> None:
        # No RTC: once the kernel says NTP synchronised the clock, that time is trusted.
        while True:
            await asyncio.sleep(CLOCK_EVERY)
            try:
                if self.box.note_synchronised_clock():
                    log.debug("trusted time advanced from the NTP-synchronised kernel clock")
            except (sqlite3.Error, LedgerError) as exc:  # a full disk must not stop the box
                log.warning("trusted time not advanced: %s", exc)

    async def _watchdog(self, interval: float) -> None:
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(interval)

    # -- run --------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the daemon to shut down (as SIGTERM does)."""
        if self._stop is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    async def run(self, ready: Callable[[Daemon], None] | None = None) -> None:
        """Run until SIGTERM/SIGINT or :meth:`stop`; then cancel every part and clean up.

        Raises:
            ServerError: the API socket cannot be served.
        """
        loop = asyncio.get_running_loop()
        self._loop, self._loop_thread = loop, threading.get_ident()
        self._scans = asyncio.Queue(SCAN_QUEUE)
        self._stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(RuntimeError, ValueError):  # not the main thread
                loop.add_signal_handler(sig, self._stop.set)
        await self.api.start()
        try:
            if self.cfg.simulate and not self.cfg.scanner_enabled:
                self.sim = PtyBridge(self.cfg.run_dir / "scanner")
                self.sim.start()
                self.cfg = with_scanner_port(self.cfg, self.sim.port_path)
                print(f"simulated scanner: echo CODE > {self.sim.link}  "
                      f"(or {self.sim.input_path})", flush=True)
            self.devices = check(self.cfg)
            if self.devices.profile is not None:
                try:
                    self.printing = QueuePrinting(self.cfg, self.devices.profile)
                except PrintError as exc:  # the rest of the box works without paper
                    part = self.parts["printer"]
                    part.state, part.detail = PartState.FAILED, str(exc)
                    log.error("printer unavailable: %s", exc)
            settings = sync_settings(self.cfg)
            if settings is not None:
                from sync import SyncService

                bc = self.cfg.box
                self.sync = SyncService(bc.path(bc.ledger_path), self.box.identity, settings,
                                        on_state=self._on_sync, device_key=self.box.device_key)
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(self._pipeline(), name="pipeline"),
                         tg.create_task(self._checkpointer(), name="checkpointer"),
                         tg.create_task(self._clock(), name="clock"),
                         tg.create_task(self._storage_watch(), name="storage")]
                for name, enabled, runner in (
                        ("scanner", self.devices.scanner is not None, self._run_scanner),
                        ("camera", self.devices.camera is not None, self._run_camera),
                        ("printer", self.printing is not None, self._run_printer),
                        ("sync", self.sync is not None, self._run_sync)):
                    if enabled:
                        tasks.append(tg.create_task(
                            supervise(self.parts[name], runner, self._part_changed), name=name))
                if (interval := self.notifier.watchdog_interval) is not None:
                    tasks.append(tg.create_task(self._watchdog(interval), name="watchdog"))
                await asyncio.sleep(0)  # let the parts take their first step
                self.notifier.ready(self._summary())
                log.info("ready socket=%s pid=%d in %.0f ms", self.cfg.socket_path,
                         os.getpid(), (time.time() - self.started) * 1000)
                if ready is not None:
                    ready(self)
                await self._stop.wait()
                log.info("stopping")
                self.notifier.stopping()
                await _cancel_all(tasks)
            while not self._scans.empty():  # bytes already read become decisions
                self._decide_logged(self._scans.get_nowait())
        finally:
            await self.api.stop()
            if self.printing is not None:
                self.printing.close()
            if self.sim is not None:
                self.sim.close()
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(RuntimeError, ValueError):
                    loop.remove_signal_handler(sig)
            log.info("stopped after %d scans", self.scans)

    # -- status -----------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The status snapshot (see ``docs/local-api.md``)."""
        bc, reading = self.cfg.box, self.box.clock()
        sync: dict[str, Any] = {"online": False, "last_contact": None,
                                "backlog": self.box.ledger.backlog(), "alarm": False,
                                "unconfirmed": self.box.ledger.unconfirmed()}
        if self.sync_state is not None:
            st = self.sync_state
            sync.update(online=st["online"], last_contact=st["last_contact"],
                        backlog=st["backlog"], alarm=st["alarm"],
                        unconfirmed=st["unconfirmed"])
        printer = self.parts["printer"].to_dict()
        printer["jobs_waiting"] = self.printing.waiting() if self.printing is not None else 0
        scanner = self.parts["scanner"].to_dict()
        scanner["port"] = str(self.cfg.scanner.get("port", ""))
        if self.sim is not None:
            scanner["input"] = str(self.sim.link)
        return {
            "store_id": bc.store_id, "device_id": bc.device_id, "store_name": self.box.store_name(),
            **sync,
            "printer": printer, "scanner": scanner, "camera": self.parts["camera"].to_dict(),
            "sync": self.parts["sync"].to_dict(),
            "clock_trusted": reading.trusted, "clock": reading.now,
            "clock_jump": self.box.clock_jump,
            "config_version": self.box.ledger.setting("config_version"),
            "software_version": software_version(),
            "simulate": self.cfg.simulate, "started_at": self.started, "scans": self.scans,
            "last_error": self.last_error,
            "storage": {"full": self.storage.full, "since": self.storage.since,
                        "detail": self.storage.detail,
                        "free_bytes": free_bytes(self.box.ledger.path.parent)},
        }

    # -- the local API ----------------------------------------------------------------

    async def dispatch(self, op: Op, args: dict[str, Any]) -> dict[str, Any]:
        """Serve one request (the API server handles ``subscribe`` itself).

        Raises:
            ApiError: bad arguments, a refusal, an absent part, or ``storage_full`` when
                the ledger's disk is full (nothing was recorded).
        """
        try:
            return await self._dispatch(op, args)
        except LedgerFull as exc:
            self._storage_failed(exc)
            raise ApiError(ErrorCode.STORAGE_FULL, f"not recorded: {exc}") from None

    async def _dispatch(self, op: Op, args: dict[str, Any]) -> dict[str, Any]:
        if op is Op.SCAN:
            code = _arg(args, "code", str)
            party = _arg(args, "party", int, None)
            if party is not None and not 1 <= party <= 100:
                raise ApiError(ErrorCode.BAD_REQUEST, f"party must be 1-100, not {party}")
            try:
                v = self.decide(code, _arg(args, "source", str, ScanSource.API.value),
                                _arg(args, "till", str, ""), party)
            except (ApiError, LedgerFull):
                raise
            except Exception as exc:
                raise ApiError(ErrorCode.INTERNAL, f"not recorded: {exc}") from None
            return v.to_dict()
        if op is Op.CHECK:
            return self.box.counter.check(_arg(args, "code", str),
                                          _arg(args, "till", str, "")).to_dict()
        if op is Op.VOID:
            try:
                return self.box.counter.void(_arg(args, "decision_id", int),
                                             _arg(args, "reason", str),
                                             till=_arg(args, "till", str, ""))
            except VoidRefused as exc:
                raise ApiError(ErrorCode.REFUSED, f"{exc.code}: {exc}") from None
        if op is Op.RECENT:
            decisions = reports.recent(self.box.ledger, _arg(args, "limit", int, 20))
            window, now = self.box.ledger.setting("void_window_s"), self.box.clock().now
            for d in decisions:  # what the void screen may offer
                d["voidable"] = bool(d["accepted"] and d["voided_at"] is None
                                     and now - d["at"] <= window)
            return {"decisions": decisions}
        if op is Op.STATUS:
            return self.status()
        if op is Op.SALE:
            return {"card": self._card_after_sale(_arg(args, "receipt_ref", str, ""))}
        start, end = self._day(args)
        if op is Op.PICKUPS:
            return {"orders": orders(self.box.ledger, start, end, self.box.clock().now)}
        if op is Op.WORKSHOPS:
            return {"sessions": workshops.sessions(self.box.ledger, start, end)}
        if op is Op.REPORT:
            return reports.report(self.box.ledger, start, end)
        printing = self._printing()
        try:
            if op is Op.PRINT_CARD:
                ref = _arg(args, "receipt_ref", str, "")
                card = self.box.issue_card(ref)
                return {"serial": card.serial, "url": card.url,
                        "job_id": printing.card(card, self.box.card_texts(),
                                                self.box.store_name())}
            if op is Op.REPRINT:
                return {"job_ids": printing.reprint(_arg(args, "count", int, 1))}
            if op is Op.PRINT_REPORT:
                return {"job_id": printing.report(reports.report(self.box.ledger, start, end))}
        except CardError as exc:
            raise ApiError(ErrorCode.BAD_REQUEST, str(exc)) from None
        except PrintError as exc:
            raise ApiError(ErrorCode.UNAVAILABLE, str(exc)) from None
        raise ApiError(ErrorCode.BAD_REQUEST, f"op {op} is not served by this daemon")

    def _card_after_sale(self, receipt_ref: str) -> dict[str, Any] | None:
        """A packaging card for a sale, when ``printer.card_after_sale`` asks for one."""
        if self.printing is None or not self.cfg.policy.card_after_sale:
            return None
        try:
            card = self.box.issue_card(receipt_ref)
            return {"serial": card.serial, "url": card.url,
                    "job_id": self.printing.card(card, self.box.card_texts(),
                                                 self.box.store_name())}
        except CardError as exc:
            raise ApiError(ErrorCode.BAD_REQUEST, str(exc)) from None
        except PrintError as exc:
            raise ApiError(ErrorCode.UNAVAILABLE, str(exc)) from None

    def _printing(self) -> PrintService:
        if self.printing is None:
            raise ApiError(ErrorCode.UNAVAILABLE, "no printer is configured ([printer] url)")
        return self.printing

    def _day(self, args: dict[str, Any]) -> tuple[float, float]:
        start, end = reports.day_bounds(self.box.clock().now)
        return (_arg(args, "day_start", float, start), _arg(args, "day_end", float, end))


async def _cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel ``tasks`` and wait for them, cancelling again any that carries on.

    Python 3.11's ``asyncio.wait_for`` drops a cancellation that arrives as its inner
    awaitable completes (a driver's thread finishing its I/O at that moment): such a task
    would run on and the daemon would never stop. Repeating the request ends it at its
    next await.
    """
    for task in tasks:
        task.cancel()
    for _ in range(STOP_ROUNDS):
        pending = [t for t in tasks if not t.done()]
        if not pending:
            return
        await asyncio.wait(pending, timeout=STOP_ROUND_S)
        for task in pending:
            if not task.done():
                log.warning("task %s still running after cancel: cancelling again",
                            task.get_name())
                task.cancel()
    log.error("tasks did not stop: %s", ", ".join(t.get_name() for t in tasks if not t.done()))


def _arg(args: dict[str, Any], name: str, kind: type, default: Any = ...) -> Any:
    """Argument ``name`` of type ``kind`` (ints accepted for floats).

    Raises:
        ApiError: ``bad_request`` naming the argument when missing or of the wrong type.
    """
    if name not in args or args[name] is None:
        if default is ...:
            raise ApiError(ErrorCode.BAD_REQUEST, f"argument {name!r} is required")
        return default
    value = args[name]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ApiError(ErrorCode.BAD_REQUEST,
                       f"argument {name!r} must be {kind.__name__}, not {type(value).__name__}")
    return value


# sd-daemon(3) priority prefixes: journald files each line under its level, so
# `journalctl -u store-edge -p warning` shows the problems only.
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
             logging.CRITICAL: 2}


class _Formatter(logging.Formatter):
    """``LEVEL name: message`` on one line; journald adds the time.

    With ``journal`` (stdout is journald's stream) each line starts with ``<N>``, its
    syslog priority.
    """

    def __init__(self, fmt: str, journal: bool = False) -> None:
        super().__init__(fmt)
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        msg = super().format(record).replace("\n", " | ")
        if self.journal:
            return f"<{_PRIORITY.get(record.levelno, 6)}>{msg}"
        return msg


def _stdout_is_journal() -> bool:
    """Whether stdout is the journald stream systemd connected (``$JOURNAL_STREAM``)."""
    try:
        st = os.fstat(sys.stdout.fileno())
    except (OSError, ValueError):
        return False
    return os.environ.get("JOURNAL_STREAM") == f"{st.st_dev}:{st.st_ino}"


def sync_settings(cfg: DaemonConfig) -> MqttSettings | None:
    """The ``[mqtt]`` settings when the box has that table (sync is on), else None.

    Raises:
        ConfigError: the table is wrong (the sync part's message names the key).
    """
    if not cfg.box.raw.get("mqtt"):
        return None
    from sync.runner import settings_for
    from sync.settings import SettingsError

    try:
        return settings_for(cfg.box)
    except SettingsError as exc:
        raise ConfigError(f"[mqtt] {exc}") from None


def setup_logging(level: str = "INFO") -> None:
    """One line per event on stdout (with journald priorities when stdout is the journal)."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_Formatter("%(levelname)s %(name)s: %(message)s",
                                    journal=_stdout_is_journal()))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def open_box(home: Path) -> Box:
    """Open the box home once its ledger passes quick_check.

    On a disk too full to open the ledger, the storage reserve is spent first.

    Raises:
        ConfigError: the home is missing, incomplete or unreadable.
        LedgerDamaged: the ledger fails quick_check (checked before anything writes to it).
        LedgerReadOnly: the ledger's filesystem is read-only.
        LedgerFull: the disk is full and there is no reserve left to spend.
    """
    cfg = box_config.load(home)
    ledger = cfg.path(cfg.ledger_path)
    if read_only(ledger):
        raise LedgerReadOnly(ledger)
    try:
        check_intact(ledger)
        return Box.open(home)
    except LedgerFull as exc:
        if not Reserve(exc.path.parent).release():
            raise
        log.error("%s: released the storage reserve to open the ledger; free space now",
                  exc)
        check_intact(ledger)
        return Box.open(home)


def run_daemon(home: Path, overrides: dict[str, dict[str, Any]] | None = None,
               simulate: bool = False, log_level: str = "INFO") -> int:
    """``edge run``: open the home, run the daemon until told to stop; the exit status.

    Exit 0 after a clean stop, 2 on a bad configuration (one line naming the key) or a
    damaged ledger (restarting fixes neither), 1 when the socket is held by another daemon
    or the ledger's disk is full or read-only (a restart may find it fixed).
    """
    from edged import config as daemon_config

    setup_logging(log_level)
    # python-escpos leaves a temp folder per process unless told where to cache its
    # capabilities: keep one cache under the home (set before the printer part imports it).
    os.environ.setdefault("ESCPOS_CAPABILITIES_PICKLE_DIR", str(home / "cache" / "escpos"))
    try:
        box = open_box(home)
    except ConfigError as exc:
        print(f"edge run: {exc}", file=sys.stderr)
        return 2
    except LedgerDamaged as exc:
        log.critical("%s", exc)
        print(f"edge run: {exc}", file=sys.stderr)
        return 2
    except LedgerFull as exc:
        print(f"edge run: {exc}: free space on that disk", file=sys.stderr)
        return 1
    except LedgerReadOnly as exc:
        log.critical("%s", exc)
        print(f"edge run: {exc}", file=sys.stderr)
        return 1
    try:
        cfg = daemon_config.load(box.config, overrides, simulate)
        # Every driver checks its table now: a typo is one line and exit 2, not a dead part.
        check(cfg, "simulated" if simulate and not cfg.scanner_enabled else None)
        sync_settings(cfg)
        if cfg.api.group:
            try:
                grp.getgrnam(cfg.api.group)
            except KeyError:
                raise ConfigError(f"api.group {cfg.api.group!r} is not a group on this "
                                  "system") from None
        asyncio.run(Daemon(cfg, box).run())
    except ConfigError as exc:
        print(f"edge run: {exc}", file=sys.stderr)
        return 2
    except ServerError as exc:
        print(f"edge run: {exc}", file=sys.stderr)
        return 1
    finally:
        box.close()
    return 0
