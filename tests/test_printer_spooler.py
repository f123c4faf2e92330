"""The spooler end to end: queue -> render -> transport -> fake printer, parsed back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from pyzbar import pyzbar

from drivers import escpos_decode
from drivers.escpos_render import render, resync_bytes
from drivers.printer import Printer, PrinterState, SerialTransport, TcpTransport
from drivers.printer_profile import PrinterProfile, TextEncoding
from drivers.printqueue import JobState, PrintQueue
from drivers.spooler import Spooler
from edge import slips
from edge.printdoc import QR, Cut, Document, Text
from tests.printer_fakes import FakeNetworkPrinter, FakePtyPrinter

URL = "HTTPS://Q.EDGE.CN/SEK1ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
States = list[tuple[PrinterState, int, str]]


@pytest.fixture
def net_printer() -> Iterator[FakeNetworkPrinter]:
    fake = FakeNetworkPrinter()
    yield fake
    fake.stop()


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[PrintQueue]:
    q = PrintQueue.in_home(tmp_path)
    yield q
    q.close()


def card() -> Document:
    return slips.card_slip("望京店", "扫码入群 领新人礼", "新人礼", URL, 7, 1.764e9, "谢谢")


async def until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def spooling(spooler: Spooler) -> AsyncIterator[None]:
    task = asyncio.create_task(spooler.run())
    try:
        yield None
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def make_spooler(queue: PrintQueue, printer: Printer, states: States,
                 profile: PrinterProfile | None = None) -> Spooler:
    return Spooler(queue, printer, profile or PrinterProfile(58), lambda *s: states.append(s),
                   poll_s=0.05, max_backoff_s=0.2, io_timeout_s=10)


async def test_job_waits_for_an_off_printer_then_prints_once(
        net_printer: FakeNetworkPrinter, queue: PrintQueue) -> None:
    """GIVEN a network printer that is off and a card in the queue
    WHEN the spooler runs, and the printer is switched on later
    THEN the UI is told OFFLINE with 1 waiting, then the card prints exactly once (one cut,
    QR decodes to the URL) and the UI is told READY with 0 waiting."""
    net_printer.stop()
    states: States = []
    printer = Printer(TcpTransport("127.0.0.1", net_printer.port), absent_after=0)
    spooler = make_spooler(queue, printer, states)
    jid = queue.enqueue(card())
    async with spooling(spooler):
        await until(lambda: (PrinterState.OFFLINE, 1) in [s[:2] for s in states])
        assert queue.get(jid).state is JobState.QUEUED
        net_printer.start()
        await until(lambda: queue.get(jid).state is JobState.PRINTED)
        await until(lambda: states[-1][:2] == (PrinterState.READY, 0))
        await asyncio.sleep(0.3)  # several more polls: nothing is printed again
    decoded = escpos_decode.decode(net_printer.job_bytes(), "gb18030")
    assert decoded.cuts == 1
    assert [q.data for q in decoded.qr_codes] == [URL]
    assert queue.get(jid).attempts == 1


async def test_paper_out_holds_jobs_until_paper_is_back(
        net_printer: FakeNetworkPrinter, queue: PrintQueue) -> None:
    """GIVEN a printer out of paper and two slips queued
    WHEN the spooler runs and paper is loaded
    THEN nothing is sent while out of paper (UI told NO_PAPER, 2 waiting), then both print
    in order."""
    net_printer.state = "no_paper"
    states: States = []
    printer = Printer(TcpTransport("127.0.0.1", net_printer.port), absent_after=0)
    spooler = make_spooler(queue, printer, states)
    first = queue.enqueue(Document("test", [Text("first"), Cut()]))
    second = queue.enqueue(Document("test", [Text("second"), Cut()]))
    async with spooling(spooler):
        await until(lambda: (PrinterState.NO_PAPER, 2) in [s[:2] for s in states])
        assert escpos_decode.decode(net_printer.job_bytes()).cuts == 0
        net_printer.state = "ready"
        await until(lambda: queue.get(second).state is JobState.PRINTED)
    decoded = escpos_decode.decode(net_printer.job_bytes())
    assert [ln.text for ln in decoded.lines] == ["first", "second"]
    assert queue.get(first).state is JobState.PRINTED


async def test_printer_gone_during_debounce_retries_without_duplicate(
        net_printer: FakeNetworkPrinter, queue: PrintQueue) -> None:
    """GIVEN a printer seen ready that vanishes, inside a long presence debounce
    WHEN a job is queued (status still reads READY, so it is tried) and the printer returns
    THEN the failed attempt put it back in the queue (nothing was sent), and it prints once."""
    states: States = []
    printer = Printer(TcpTransport("127.0.0.1", net_printer.port), absent_after=3600)
    spooler = make_spooler(queue, printer, states)
    async with spooling(spooler):
        await until(lambda: bool(states) and states[-1][0] is PrinterState.READY)
        net_printer.stop()
        jid = queue.enqueue(card())
        spooler.kick()
        await until(lambda: queue.get(jid).attempts >= 1
                    and queue.get(jid).state is JobState.QUEUED)
        assert "after 0 of" in queue.get(jid).last_error
        net_printer.start()
        await until(lambda: queue.get(jid).state is JobState.PRINTED)
        await asyncio.sleep(0.3)
    assert escpos_decode.decode(net_printer.job_bytes(), "gb18030").cuts == 1


async def test_write_stalled_midway_is_not_printed_twice(queue: PrintQueue) -> None:
    """GIVEN a serial printer that stops taking data in the middle of a large job
    WHEN the write times out, and the printer recovers
    THEN the job is failed permanently (not resent), the UI hears ERROR, the next job is
    preceded by resync bytes so the whole stream parses with the half slip cut off, and it
    prints; a reprint is what brings the lost slip back."""
    fake = FakePtyPrinter()
    try:
        states: States = []
        printer = Printer(SerialTransport(fake.slave_path, 115200, timeout=0.3), absent_after=0)
        profile = PrinterProfile(80, TextEncoding.IMAGE, native_qr=False)
        spooler = make_spooler(queue, printer, states, profile)
        big = Document("report", [Text(f"第{n}行 营业数据") for n in range(200)] + [Cut()])
        async with spooling(spooler):
            await until(lambda: bool(states) and states[-1][0] is PrinterState.READY)
            fake.stall_after = len(fake.received) + 10_000  # jams 10 kB into the job
            jid = queue.enqueue(big)
            spooler.kick()
            await until(lambda: queue.get(jid).state is JobState.FAILED_PERMANENTLY)
            assert PrinterState.ERROR in [s[0] for s in states]
            fake.stall_after = None
            after = queue.enqueue(Document("test", [QR(URL), Cut()]))
            spooler.kick()
            await until(lambda: queue.get(after).state is JobState.PRINTED)
            await asyncio.sleep(0.3)
        job = queue.get(jid)
        assert job.attempts == 1 and "bytes)" in job.last_error
        last = render(queue.get(after).doc, profile)
        received = bytes(fake.received)
        assert received.count(last) == 1  # status polls follow it
        assert received.count(render(big, profile)[-4000:]) == 0  # the stalled job's end
        assert received.count(resync_bytes(profile) + last) == 1
        whole = escpos_decode.decode(received, "ascii")  # the printer's view: back in step
        assert whole.cuts == 2  # the resync's cut after the half slip, then the new slip's
        decoded = escpos_decode.decode(last, "ascii")
        assert decoded.cuts == 1
        assert [s.data.decode() for s in pyzbar.decode(decoded.rasters[0])] == [URL]
        assert [queue.get(i).reprint_of for i in queue.reprint_last(2)] == [jid, after]
    finally:
        fake.close()


async def test_unprintable_job_fails_with_reason_and_queue_moves_on(
        net_printer: FakeNetworkPrinter, queue: PrintQueue) -> None:
    """GIVEN a job whose QR cannot fit the paper, ahead of a good job
    WHEN the spooler runs
    THEN the bad job fails permanently saying why, and the good one prints."""
    states: States = []
    spooler = make_spooler(queue, Printer(TcpTransport("127.0.0.1", net_printer.port)), states)
    bad = queue.enqueue(Document("test", [QR("A" * 3000), Cut()]))
    good = queue.enqueue(Document("test", [Text("ok"), Cut()]))
    async with spooling(spooler):
        await until(lambda: queue.get(good).state is JobState.PRINTED)
    assert queue.get(bad).state is JobState.FAILED_PERMANENTLY
    assert "cannot be printed on this printer" in queue.get(bad).last_error
    assert escpos_decode.decode(net_printer.job_bytes()).text == "ok"


async def test_a_failing_state_callback_does_not_stop_printing(
        net_printer: FakeNetworkPrinter, queue: PrintQueue) -> None:
    """GIVEN an on_state subscriber that raises
    WHEN a job is queued
    THEN it still prints."""
    def broken(*_: object) -> None:
        raise RuntimeError("UI bug")

    spooler = Spooler(queue, Printer(TcpTransport("127.0.0.1", net_printer.port)),
                      PrinterProfile(58), broken, poll_s=0.05)
    jid = queue.enqueue(Document("test", [Text("still prints"), Cut()]))
    async with spooling(spooler):
        await until(lambda: queue.get(jid).state is JobState.PRINTED)
    assert "still prints" in escpos_decode.decode(net_printer.job_bytes()).text


async def test_after_a_crash_mid_job_the_printer_is_resynced(
        net_printer: FakeNetworkPrinter, tmp_path: Path) -> None:
    """GIVEN a queue whose first job was printing when the box died, and a second job
    WHEN the queue is reopened and the spooler runs
    THEN the first is not printed again, and the second is preceded by resync bytes."""
    q = PrintQueue(tmp_path / "q.sqlite")
    dead = q.enqueue(card())
    q.mark_printing(dead)
    q.close()
    q = PrintQueue(tmp_path / "q.sqlite")
    try:
        nxt = q.enqueue(Document("test", [Text("after restart"), Cut()]))
        profile = PrinterProfile(58)
        spooler = make_spooler(q, Printer(TcpTransport("127.0.0.1", net_printer.port)), [],
                               profile)
        async with spooling(spooler):
            await until(lambda: q.get(nxt).state is JobState.PRINTED)
        assert q.get(dead).state is JobState.FAILED_PERMANENTLY
        received = net_printer.job_bytes()
        assert resync_bytes(profile) + render(q.get(nxt).doc, profile) in received
        decoded = escpos_decode.decode(received)
        assert decoded.text == "after restart" and decoded.cuts == 2
    finally:
        q.close()


async def test_stopping_mid_slip_finishes_the_slip(queue: PrintQueue) -> None:
    """GIVEN a slow serial printer in the middle of a large slip
    WHEN the spooler task is cancelled (the daemon stops)
    THEN it returns only after the slip is fully written, and the job is recorded printed,
    not left 'printing' (which the next start would have to treat as lost)."""
    fake = FakePtyPrinter()
    fake.read_delay = 0.005
    try:
        profile = PrinterProfile(80, TextEncoding.IMAGE, native_qr=False)
        printer = Printer(SerialTransport(fake.slave_path, 115200, timeout=5), absent_after=0)
        spooler = make_spooler(queue, printer, [], profile)
        big = Document("report", [Text(f"第{n}行 营业数据") for n in range(60)] + [Cut()])
        jid = queue.enqueue(big)
        task = asyncio.create_task(spooler.run())
        await until(lambda: queue.get(jid).state is JobState.PRINTING)
        await until(lambda: len(fake.received) > 1000)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert queue.get(jid).state is JobState.PRINTED
        await until(lambda: bytes(fake.received).endswith(render(big, profile)))
    finally:
        fake.close()


async def test_missing_cjk_font_holds_jobs_and_says_why(
        net_printer: FakeNetworkPrinter, queue: PrintQueue, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """GIVEN an image-mode printer and a box whose CJK font file is missing
    WHEN a Chinese slip is queued
    THEN it stays queued (the box is at fault, not the slip), the UI hears ERROR naming the
    problem, and the slip prints once the font is back."""
    from drivers import escpos_render

    monkeypatch.setattr(escpos_render, "CJK_FONT", tmp_path / "missing.ttc")
    escpos_render._font.cache_clear()
    states: States = []
    spooler = make_spooler(queue, Printer(TcpTransport("127.0.0.1", net_printer.port)),
                           states, PrinterProfile(58, TextEncoding.IMAGE))
    jid = queue.enqueue(Document("test", [Text("扫码入群"), Cut()]))
    try:
        async with spooling(spooler):
            await until(lambda: any(s[0] is PrinterState.ERROR and "cannot draw text" in s[2]
                                    for s in states))
            assert queue.get(jid).state is JobState.QUEUED
            monkeypatch.undo()
            escpos_render._font.cache_clear()
            await until(lambda: queue.get(jid).state is JobState.PRINTED)
    finally:
        escpos_render._font.cache_clear()
    assert len(escpos_decode.decode(net_printer.job_bytes()).rasters) == 1
