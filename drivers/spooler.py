"""The print spooler: the daemon's task that moves jobs from the queue to the printer.

It polls the printer's status, prints the oldest queued job when the printer can take it,
backs off while it cannot, and reports every change of (state, jobs waiting, detail) through
``on_state`` on the event loop. Printer I/O blocks, so it runs in a thread, in one place
(:meth:`Spooler._io`); queue updates are small SQLite commits done on the loop.

The exactly-once rule is the queue's (see :mod:`drivers.printqueue`): a job is marked
``printing`` before its first byte, back to ``queued`` only when the driver says no byte was
written, and ``failed_permanently`` otherwise. After such a cut-off write the next job is
preceded by :func:`~drivers.escpos_render.resync_bytes`, so a printer left in the middle of
an image command finishes it with blank rows, cuts the half slip off, and starts clean.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from typing import TypeVar

from drivers.escpos_render import RenderError, render, resync_bytes
from drivers.printer import PRINTABLE, Printer, PrinterState, SendError
from drivers.printer_profile import PrinterProfile
from drivers.printqueue import Job, PrintQueue, QueueError
from edge.printdoc import DocumentError

log = logging.getLogger(__name__)
T = TypeVar("T")

StateCallback = Callable[[PrinterState, int, str], None]


class Spooler:
    """Prints queued jobs; run :meth:`run` as a task and cancel it to stop."""

    def __init__(self, queue: PrintQueue, printer: Printer, profile: PrinterProfile,
                 on_state: StateCallback, poll_s: float = 2.0, max_backoff_s: float = 10.0,
                 io_timeout_s: float = 30.0) -> None:
        """Spool ``queue`` to ``printer``.

        ``poll_s`` is how often status is read while idle or waiting; failures back off
        from there to ``max_backoff_s`` with jitter. ``io_timeout_s`` bounds one printer
        call (a thread stuck past it is abandoned and the printer reported in ERROR).
        """
        self.queue, self.printer, self.profile = queue, printer, profile
        self.on_state = on_state
        self.poll_s, self.max_backoff_s, self.io_timeout_s = poll_s, max_backoff_s, io_timeout_s
        self._wake = asyncio.Event()
        # After a write cut off mid-job (or a crash mid-job) the printer may be waiting for
        # the rest of a command: the next write starts with resync bytes.
        self._resync = queue.recovered > 0
        self._reported: tuple[PrinterState, int, str] | None = None
        self.state = PrinterState.UNKNOWN
        self.detail = ""

    def kick(self) -> None:
        """Wake the spooler now (call after :meth:`PrintQueue.enqueue`)."""
        self._wake.set()

    async def _io(self, fn: Callable[[], T]) -> T:
        """The one place printer I/O leaves the event loop.

        ``asyncio.timeout`` rather than ``wait_for``: on Python 3.11 ``wait_for`` can swallow
        a cancellation that races the inner task's completion, leaving the spooler running
        after the daemon asked it to stop.
        """
        async with asyncio.timeout(self.io_timeout_s):
            return await asyncio.to_thread(fn)

    def _report(self, state: PrinterState, detail: str) -> None:
        self.state, self.detail = state, detail
        try:
            waiting = self.queue.waiting()
        except QueueError:
            waiting = -1  # unknown: the queue file cannot be read
        now = (state, waiting, detail)
        if now != self._reported:
            self._reported = now
            log.info("printer %s: %s, %d waiting%s", self.printer, state.value, now[1],
                     f" ({detail})" if detail else "")
            try:
                self.on_state(*now)
            except Exception:  # a subscriber's bug must not stop printing
                log.exception("printer state callback failed")

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    async def run(self) -> None:
        """Spool until cancelled."""
        backoff = self.poll_s
        try:
            while True:
                try:
                    printed = await self.step()
                except TimeoutError:
                    self._report(PrinterState.ERROR, f"printer did not respond within "
                                                     f"{self.io_timeout_s:g} s")
                    printed = False
                except QueueError as exc:  # disk full, damaged file: say so, keep going
                    log.error("print queue: %s", exc)
                    self._report(PrinterState.ERROR, f"print queue: {exc}")
                    printed = False
                except Exception as exc:  # a bug must not stop the daemon's printing for good
                    log.exception("print spooler step failed")
                    self._report(PrinterState.ERROR, f"internal error: {exc}")
                    printed = False
                if printed:
                    continue  # more jobs may be waiting: no pause between slips
                backoff = (self.poll_s if self.state in PRINTABLE
                           else min(self.max_backoff_s, backoff * 2))
                await self._sleep(backoff * random.uniform(0.8, 1.0))
        finally:
            await asyncio.shield(asyncio.to_thread(self.printer.close))

    async def step(self) -> bool:
        """Read the status and print one job if the printer can take it.

        Returns whether a job was printed.
        """
        state = await self._io(self.printer.status)
        self._report(state, self.printer.detail)
        if state not in PRINTABLE:
            return False
        job = self.queue.next_job()
        if job is None:
            return False
        doc = job.doc
        try:
            # Rendering a raster slip takes tens of ms on a Pi: not on the event loop.
            data = await self._io(lambda: render(doc, self.profile))
        except (RenderError, DocumentError) as exc:
            self.queue.mark_printing(job.id)
            self.queue.mark_failed(job.id, f"cannot be printed on this printer: {exc}",
                                   retry=False)
            log.warning("print job %d failed: %s", job.id, exc)
            self._report(state, self.printer.detail)
            return False
        except OSError as exc:  # the CJK font is missing or unreadable: the box's fault
            self._report(PrinterState.ERROR, f"cannot draw text: {exc}")
            return False
        self.queue.mark_printing(job.id)  # on disk before the first byte goes out
        sending = asyncio.create_task(self._send(job, data, state), name=f"print-job-{job.id}")
        try:
            return await asyncio.shield(sending)
        except asyncio.CancelledError:
            # Stopping (SIGTERM) mid-slip: let the write finish, within its own timeout, so
            # the queue records what happened instead of leaving the job 'printing'.
            await asyncio.wait({sending}, timeout=self.io_timeout_s + 1)
            raise

    async def _send(self, job: Job, data: bytes, state: PrinterState) -> bool:
        """Write one job marked printing, and record how it went."""
        prefix = resync_bytes(self.profile) if self._resync else b""
        try:
            await self._io(lambda: self.printer.send(prefix + data))
        except SendError as exc:
            # Only the resync prefix may have gone out: the job itself is still unsent.
            unsent = exc.written <= len(prefix)
            self.queue.mark_failed(job.id, str(exc), retry=unsent)
            self._resync = self._resync or not unsent
            log.warning("print job %d %s: %s", job.id,
                        "will be retried" if unsent else "failed, not retried", exc)
            self._report(PrinterState.OFFLINE if unsent else PrinterState.ERROR, str(exc))
            return False
        except TimeoutError:
            # The write thread is stuck; bytes may have gone out: never resend by itself.
            self.queue.mark_failed(job.id, f"write did not finish within "
                                   f"{self.io_timeout_s:g} s", retry=False)
            self._resync = True
            raise
        self._resync = False
        self.queue.mark_printed(job.id)
        log.info("print job %d (%s) printed", job.id, job.kind)
        self._report(state, self.printer.detail)
        return True
