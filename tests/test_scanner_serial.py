"""The serial scanner over real pseudo-terminal pairs, as a USB-CDC scanner appears.

The scanner opens a symlink to the pty's slave side, as the box opens
``/dev/serial/by-id/...``; the test writes on the master side as the scanner would.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.scan import DeviceState, DeviceStatus, DropReason, ScanInput, ScannerConfigError
from drivers.scanner_serial import (
    Eol,
    Framer,
    InvalidText,
    Overflow,
    SerialScanner,
    SerialScannerConfig,
    clean,
)

WAIT = 10.0  # upper bound for anything to arrive; never reached when the code works


class Pty:
    """A pseudo-terminal pair whose slave is reachable through a symlink we can swap."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.master = self.slave = -1
        self.plug()

    def plug(self) -> None:
        self.master, self.slave = pty.openpty()
        tmp = self.link.with_name(self.link.name + ".new")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(os.ttyname(self.slave))
        os.replace(tmp, self.link)

    def unplug(self) -> None:
        # The device node goes away, as /dev/ttyACM0 does when a USB scanner is pulled. A link
        # left pointing at the closed /dev/pts/N could be reopened once the kernel hands that
        # number to someone else's pty: the scanner would then be READY on the wrong device.
        self.link.unlink(missing_ok=True)
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.master, view):]


@dataclass
class Seen:
    """Everything the scanner reported, in order."""

    scans: list[ScanInput] = field(default_factory=list)
    states: list[DeviceStatus] = field(default_factory=list)
    drops: list[tuple[DropReason, bytes]] = field(default_factory=list)

    def drop(self, reason: DropReason, preview: bytes) -> None:
        self.drops.append((reason, preview))

    @property
    def texts(self) -> list[str]:
        return [s.text for s in self.scans]

    def ready_count(self) -> int:
        return sum(1 for s in self.states if s.state is DeviceState.READY)


async def until(cond: Callable[[], bool], what: str) -> None:
    async with asyncio.timeout(WAIT):
        while not cond():
            await asyncio.sleep(0.01)
    assert cond(), what


@pytest.fixture
def line(tmp_path: Path) -> Iterator[Pty]:
    p = Pty(tmp_path / "ttyScanner")
    yield p
    p.unplug()


@contextlib.asynccontextmanager
async def running(line: Pty, **settings: object) -> AsyncIterator[Seen]:
    """A scanner on ``line`` with ``settings``, started and READY, cancelled on exit."""
    seen = Seen()
    config = SerialScannerConfig(port=str(line.link), retry_first_s=0.05, retry_max_s=0.2,
                                 **settings)  # type: ignore[arg-type]
    scanner = SerialScanner(config, seen.scans.append, seen.states.append, seen.drop)
    task = asyncio.create_task(scanner.run())
    try:
        await until(lambda: seen.ready_count() >= 1, "scanner READY")
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_frames_on_cr_lf_and_crlf_without_empty_scans(line: Pty) -> None:
    """GIVEN a scanner framing on any line end
    WHEN codes arrive ended by CR, LF and CRLF, with a CRLF split across two writes
    THEN each code arrives once, in order, with its source, and no empty scan appears."""
    async with running(line) as seen:
        line.write(b"ONE\rTWO\nTHREE\r\nFOUR\r")
        await asyncio.sleep(0.05)
        line.write(b"\nFIVE\r\n")
        await until(lambda: len(seen.scans) >= 5, "five scans")
        await asyncio.sleep(0.1)
    assert seen.texts == ["ONE", "TWO", "THREE", "FOUR", "FIVE"]
    assert {s.source for s in seen.scans} == {f"serial:{line.link}"}
    assert seen.drops == []


async def test_crlf_mode_keeps_a_lone_cr_inside_the_frame_and_drops_it_as_noise(
        line: Pty) -> None:
    """GIVEN a scanner framing on CRLF only
    WHEN a frame holds a lone CR and the next frame is clean
    THEN the first is dropped as control characters and the second arrives."""
    async with running(line, eol=Eol.CRLF) as seen:
        line.write(b"AB\rCD\r\nGOOD\r\n")
        await until(lambda: len(seen.scans) >= 1, "one scan")
    assert seen.texts == ["GOOD"]
    assert seen.drops == [(DropReason.CONTROL_CHARS, b"AB\rCD")]


async def test_idle_gap_ends_frames_with_no_line_end(line: Pty) -> None:
    """GIVEN a scanner with no line end and a 60 ms idle gap
    WHEN two codes arrive a pause apart, the first in two quick pieces
    THEN each is one scan (the pieces join, the pause splits)."""
    async with running(line, eol=Eol.NONE, idle_ms=60) as seen:
        line.write(b"SEC1")
        line.write(b"ABCD")
        await until(lambda: len(seen.scans) >= 1, "first scan")
        line.write(b"SEP1WXYZ")
        await until(lambda: len(seen.scans) >= 2, "second scan")
    assert seen.texts == ["SEC1ABCD", "SEP1WXYZ"]


async def test_partial_frame_waits_for_its_line_end(line: Pty) -> None:
    """GIVEN a scanner framing on line ends, without an idle gap
    WHEN a code arrives in three pieces with pauses between them
    THEN it is delivered once, whole, only after its line end."""
    async with running(line) as seen:
        line.write(b"SEC1")
        await asyncio.sleep(0.15)
        line.write(b"AB")
        await asyncio.sleep(0.15)
        assert seen.scans == []
        line.write(b"CD\r\n")
        await until(lambda: len(seen.scans) >= 1, "one scan")
    assert seen.texts == ["SEC1ABCD"]


async def test_prefix_suffix_and_aim_identifiers_are_stripped(line: Pty) -> None:
    """GIVEN a scanner configured with STX prefix, ETX suffix and AIM stripping
    WHEN a QR (]Q1), an EAN-13 (]E0) and a Code 128 (]C0) arrive, one without its prefix
    THEN the scans hold the bare codes."""
    async with running(line, prefix="\x02", suffix="\x03", strip_aim=True) as seen:
        line.write(b"\x02]Q1SEC1XYZ\x03\r\x02]E05901234123457\x03\r]C0ABC-123\x03\r")
        await until(lambda: len(seen.scans) >= 3, "three scans")
    assert seen.texts == ["SEC1XYZ", "5901234123457", "ABC-123"]


def test_aim_identifier_stays_when_not_configured() -> None:
    """GIVEN a config without AIM stripping
    WHEN a frame starts with ]Q1
    THEN the text keeps it (a code may legitimately start with a bracket)."""
    assert clean(b"]Q1SEC1XYZ", SerialScannerConfig("loop://")) == "]Q1SEC1XYZ"
    assert clean(b"]Q1SEC1XYZ", SerialScannerConfig("loop://", strip_aim=True)) == "SEC1XYZ"


async def test_noise_and_invalid_bytes_are_dropped_with_reasons_and_reading_goes_on(
        line: Pty) -> None:
    """GIVEN a scanner with the default strict UTF-8 policy
    WHEN invalid UTF-8, NUL-laden noise and a prefix-only frame arrive before a good code
    THEN each bad frame is dropped with its own reason and preview, and the code arrives."""
    async with running(line, prefix="#") as seen:
        line.write(b"\xff\xfe\x80junk\r\x00\x01\x02ab\r#\rSEC1OK\r")
        await until(lambda: len(seen.scans) >= 1, "the good scan")
    assert seen.texts == ["SEC1OK"]
    assert seen.drops == [(DropReason.INVALID_TEXT, b"\xff\xfe\x80junk"),
                          (DropReason.CONTROL_CHARS, b"\x00\x01\x02ab"),
                          (DropReason.EMPTY, b"#")]


async def test_latin1_policy_reads_undecodable_bytes_instead_of_dropping(line: Pty) -> None:
    """GIVEN a scanner with invalid = latin-1
    WHEN a frame is not valid UTF-8
    THEN it is delivered read as Latin-1, and valid UTF-8 is still read as UTF-8."""
    async with running(line, invalid=InvalidText.LATIN1) as seen:
        line.write(b"caf\xe9\r\xe5\xba\x97\r")
        await until(lambda: len(seen.scans) >= 2, "two scans")
    assert seen.texts == ["café", "店"]
    assert seen.drops == []


async def test_ten_megabyte_line_is_dropped_and_the_next_scan_arrives(line: Pty) -> None:
    """GIVEN a scanner with the default 4096-byte bound
    WHEN a 10 MB line is written in 64 KB chunks, then a good code
    THEN the line is dropped once as too long with its first bytes, and the code arrives."""
    async with running(line) as seen:
        chunk = b"A" * 65536
        def flood() -> None:
            for _ in range(160):
                line.write(chunk)
            line.write(b"\r\nGOOD\r\n")
        await asyncio.to_thread(flood)
        await until(lambda: len(seen.scans) >= 1, "the good scan")
    assert seen.texts == ["GOOD"]
    assert seen.drops == [(DropReason.TOO_LONG, b"A" * 32)]


def test_framer_holds_at_most_max_line_bytes_of_a_huge_line() -> None:
    """GIVEN a framer bounded at 4096 bytes
    WHEN 10 MB without a line end are fed in 64 KB chunks
    THEN it never holds more than the bound, and the line end yields one Overflow
    carrying the full size and the first bytes."""
    framer = Framer(Eol.ANY, 4096)
    chunk = bytes(range(65, 91)) * 2521  # 65546 bytes
    peak = 0
    for _ in range(160):
        assert framer.feed(chunk) == []
        peak = max(peak, framer.held)
    assert peak <= 4096
    assert framer.feed(b"\nNEXT\n") == [Overflow(160 * len(chunk), chunk[:32]), b"NEXT"]


def test_a_frame_exactly_at_the_bound_passes_and_one_byte_more_is_dropped() -> None:
    """GIVEN a framer bounded at 16 bytes
    WHEN frames of 16 and 17 bytes arrive
    THEN the first is a frame, the second an Overflow of 17."""
    framer = Framer(Eol.LF, 16)
    assert framer.feed(b"x" * 16 + b"\n" + b"y" * 17 + b"\n") == [
        b"x" * 16, Overflow(17, b"y" * 17)]


@settings(deadline=None)  # a loaded CI machine must not turn slowness into a failure
@given(st.lists(st.binary(max_size=40), max_size=12), st.sampled_from(list(Eol)[:4]),
       st.data())
def test_framing_does_not_depend_on_how_bytes_are_split(
        pieces: list[bytes], eol: Eol, data: st.DataObject) -> None:
    """GIVEN any byte stream and any line-end mode
    WHEN it is fed whole, or split at arbitrary points
    THEN the same frames come out."""
    stream = b"".join(pieces)
    whole = Framer(eol, 64)
    expected = whole.feed(stream)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    split = Framer(eol, 64)
    got: list[bytes | Overflow] = []
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        got += split.feed(stream[a:b])
    assert got == expected
    assert split.pending == whole.pending


async def test_unplug_and_replug_reconnects_and_reads_again(line: Pty) -> None:
    """GIVEN a READY scanner on a pty reached through a symlink
    WHEN the pty pair is closed mid-frame, and later a new pair appears at the same path
    THEN the scanner reports ABSENT with the reason, drops the unfinished frame,
    reconnects to READY, and the next code arrives, all without the task ending."""
    async with running(line) as seen:
        line.write(b"BEFORE\r")
        await until(lambda: len(seen.scans) >= 1, "scan before unplug")
        line.write(b"HALF")
        await asyncio.sleep(0.1)
        line.unplug()
        await until(lambda: any(s.state is DeviceState.ABSENT for s in seen.states), "ABSENT")
        await asyncio.sleep(0.3)  # a few failed reopen attempts at the dead path
        line.plug()
        await until(lambda: seen.ready_count() >= 2, "READY again")
        line.write(b"AFTER\r")
        await until(lambda: len(seen.scans) >= 2, "scan after replug")
    assert seen.texts == ["BEFORE", "AFTER"]
    assert (DropReason.UNFINISHED, b"HALF") in seen.drops
    states = [s.state for s in seen.states]
    assert states[:2] == [DeviceState.CONNECTING, DeviceState.READY]
    assert states[-1] is DeviceState.READY
    absent = [s for s in seen.states if s.state is DeviceState.ABSENT]
    assert absent and all("retrying in" in s.detail for s in absent)


async def test_port_missing_at_start_is_absent_until_it_appears(tmp_path: Path) -> None:
    """GIVEN a scanner configured for a path where nothing is plugged
    WHEN it runs for a while and then the device appears
    THEN it reports ABSENT with the open error, then READY, then reads."""
    link = tmp_path / "ttyLater"
    seen = Seen()
    config = SerialScannerConfig(str(link), retry_first_s=0.05, retry_max_s=0.1)
    task = asyncio.create_task(
        SerialScanner(config, seen.scans.append, seen.states.append, seen.drop).run())
    try:
        await until(lambda: any(s.state is DeviceState.ABSENT for s in seen.states), "ABSENT")
        await asyncio.sleep(0.3)
        assert not task.done()
        line = Pty(link)
        try:
            await until(lambda: seen.ready_count() >= 1, "READY")
            line.write(b"LATE\r")
            await until(lambda: len(seen.scans) >= 1, "scan")
        finally:
            line.unplug()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert seen.texts == ["LATE"]
    absent = next(s for s in seen.states if s.state is DeviceState.ABSENT)
    assert "No such file or directory" in absent.detail
    # repeated identical failures are reported once, not every retry
    assert sum(1 for s in seen.states if s.state is DeviceState.ABSENT) == 1


async def test_a_second_reader_on_the_same_port_is_refused(line: Pty) -> None:
    """GIVEN a READY scanner on a port
    WHEN a second scanner is started on the same port
    THEN the second reports FAILED (the port is locked) and the first still gets the scan."""
    async with running(line) as first:
        second = Seen()
        config = SerialScannerConfig(str(line.link), retry_first_s=1, retry_max_s=1)
        task = asyncio.create_task(
            SerialScanner(config, second.scans.append, second.states.append,
                          second.drop).run())
        try:
            await until(lambda: any(s.state is DeviceState.FAILED for s in second.states),
                        "second refused")
            line.write(b"ONLY\r")
            await until(lambda: len(first.scans) >= 1, "scan on the first")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert first.texts == ["ONLY"] and second.scans == []
    failed = next(s for s in second.states if s.state is DeviceState.FAILED)
    assert "lock" in failed.detail


async def test_a_failing_callback_does_not_stop_the_reader(line: Pty) -> None:
    """GIVEN an on_scan callback that raises on its first call
    WHEN two codes arrive
    THEN the second is still delivered."""
    got: list[str] = []

    def on_scan(scan: ScanInput) -> None:
        got.append(scan.text)
        if len(got) == 1:
            raise RuntimeError("bug in the daemon's handler")

    config = SerialScannerConfig(str(line.link))
    states: list[DeviceStatus] = []
    task = asyncio.create_task(
        SerialScanner(config, on_scan, states.append, lambda r, p: None).run())
    try:
        await until(lambda: any(s.state is DeviceState.READY for s in states), "READY")
        line.write(b"FIRST\rSECOND\r")
        await until(lambda: len(got) >= 2, "two scans")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert got == ["FIRST", "SECOND"]


async def test_cancel_stops_the_reader_thread(line: Pty) -> None:
    """GIVEN a running scanner
    WHEN its task is cancelled
    THEN the task ends cancelled and its reader thread is gone soon after."""
    async with running(line):
        assert any(t.name == "serial-scanner" for t in threading.enumerate())
    async with asyncio.timeout(WAIT):
        while any(t.name == "serial-scanner" for t in threading.enumerate()):
            await asyncio.sleep(0.01)
    assert not any(t.name == "serial-scanner" for t in threading.enumerate())


def test_config_from_toml_names_the_bad_key() -> None:
    """GIVEN [scanner] tables with an unknown key, a wrong type and a bad enum value
    WHEN each is parsed
    THEN each raises ScannerConfigError naming the key and what it takes."""
    good = SerialScannerConfig.from_toml({"port": "/dev/ttyACM0", "baud": 115200,
                                          "eol": "crlf", "strip_aim": True,
                                          "retry_first_s": 1})
    assert (good.eol, good.baud, good.retry_first_s) == (Eol.CRLF, 115200, 1.0)
    with pytest.raises(ScannerConfigError, match=r"unknown key.*bauds"):
        SerialScannerConfig.from_toml({"port": "/dev/x", "bauds": 9600})
    with pytest.raises(ScannerConfigError, match="baud must be int"):
        SerialScannerConfig.from_toml({"port": "/dev/x", "baud": "fast"})
    with pytest.raises(ScannerConfigError, match=r"eol = 'tab'.*'crlf'"):
        SerialScannerConfig.from_toml({"port": "/dev/x", "eol": "tab"})
    with pytest.raises(ScannerConfigError, match="needs idle_ms"):
        SerialScannerConfig.from_toml({"port": "/dev/x", "eol": "none"})
    with pytest.raises(ScannerConfigError, match="unknown encoding"):
        SerialScannerConfig.from_toml({"port": "/dev/x", "encoding": "klingon"})
