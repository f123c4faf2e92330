"""Printer transports against real loopback sockets and pseudo-terminals; status; debounce."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers import escpos_decode, escpos_render
from drivers.printer import (
    Printer,
    PrinterConfigError,
    PrinterState,
    SendError,
    SerialTransport,
    SimulatedTransport,
    TcpTransport,
    UsbTransport,
    parse_status,
    printer_from_config,
    transport_from_url,
)
from drivers.printer_profile import PrinterProfile, ProfileError
from edge import slips
from tests.printer_fakes import FakeNetworkPrinter, FakePtyPrinter

URL = "HTTPS://Q.EDGE.CN/SEK1ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


@pytest.fixture
def net_printer() -> Iterator[FakeNetworkPrinter]:
    fake = FakeNetworkPrinter()
    yield fake
    fake.stop()


@pytest.fixture
def pty_printer() -> Iterator[FakePtyPrinter]:
    fake = FakePtyPrinter()
    yield fake
    fake.close()


def card_bytes(paper: int = 58) -> bytes:
    doc = slips.card_slip("望京店", "扫码入群 领新人礼", "新人礼", URL, 7, 1.764e9, "谢谢")
    return escpos_render.render(doc, PrinterProfile(paper))


def wait_for(cond: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def test_tcp_printer_receives_a_card_that_decodes(net_printer: FakeNetworkPrinter) -> None:
    """GIVEN a network printer on a loopback port
    WHEN a card is sent through the tcp:// transport
    THEN the bytes it received decode to the headline, one cut and the card URL."""
    printer = Printer(transport_from_url(f"tcp://127.0.0.1:{net_printer.port}"))
    assert printer.status() is PrinterState.READY
    data = card_bytes()
    printer.send(data)
    wait_for(lambda: net_printer.job_bytes().endswith(data))
    decoded = escpos_decode.decode(net_printer.job_bytes(), "gb18030")
    assert "扫码入群" in decoded.text and decoded.cuts == 1
    assert [q.data for q in decoded.qr_codes] == [URL]
    assert decoded.status_requests == [1, 4]
    printer.close()


@pytest.mark.parametrize(("state", "expected", "detail"), [
    ("no_paper", PrinterState.NO_PAPER, "paper end"),
    ("cover_open", PrinterState.COVER_OPEN, "cover open"),
    ("paper_low", PrinterState.READY, "paper low"),
    ("silent", PrinterState.OFFLINE, "does not answer"),
])
def test_tcp_status_from_dle_eot(net_printer: FakeNetworkPrinter, state: str,
                                 expected: PrinterState, detail: str) -> None:
    """GIVEN a network printer answering DLE EOT as out of paper, cover open, paper low,
    or not at all
    WHEN its status is read
    THEN the state and detail say so."""
    net_printer.state = state
    printer = Printer(TcpTransport("127.0.0.1", net_printer.port), absent_after=0)
    assert printer.status() is expected
    assert detail in printer.detail
    printer.close()


def test_status_bytes_that_are_not_status_are_an_error() -> None:
    """GIVEN a byte without the fixed status bits (line noise)
    WHEN parsed as status
    THEN the state is ERROR naming the byte."""
    state, detail = parse_status(0xFF, None, 0x12)
    assert state is PrinterState.ERROR and "0xff" in detail
    assert parse_status(0x12, None, 0x12) == (PrinterState.READY, "")


def test_status_off_prints_without_asking(net_printer: FakeNetworkPrinter) -> None:
    """GIVEN a printer that never answers status, configured with status=0
    WHEN its status is read
    THEN it is UNKNOWN (printable), and no status request was sent."""
    net_printer.state = "silent"
    printer = Printer(transport_from_url(f"tcp://127.0.0.1:{net_printer.port}?status=0"))
    assert printer.status() is PrinterState.UNKNOWN
    printer.send(b"\x1b@hello\n")
    wait_for(lambda: net_printer.job_bytes().endswith(b"hello\n"))
    assert escpos_decode.decode(net_printer.job_bytes()).status_requests == []
    printer.close()


def test_presence_is_debounced(net_printer: FakeNetworkPrinter) -> None:
    """GIVEN a ready network printer that is switched off
    WHEN status is read 1 s and then 4 s later (3 s debounce)
    THEN it still reads READY at 1 s (detail says it is not answering), OFFLINE at 4 s,
    and READY again once it is back."""
    now = [100.0]
    printer = Printer(TcpTransport("127.0.0.1", net_printer.port), absent_after=3.0,
                      clock=lambda: now[0])
    assert printer.status() is PrinterState.READY
    net_printer.stop()
    now[0] += 1
    assert printer.status() is PrinterState.READY
    assert "not answering" in printer.detail
    now[0] += 3
    assert printer.status() is PrinterState.OFFLINE
    net_printer.start()
    now[0] += 1
    assert printer.status() is PrinterState.READY
    printer.close()


def test_send_to_an_absent_printer_says_nothing_was_sent(
        net_printer: FakeNetworkPrinter) -> None:
    """GIVEN a network printer that is off
    WHEN a job is sent
    THEN SendError says no byte went out (so the job may be sent again)."""
    net_printer.stop()
    printer = Printer(TcpTransport("127.0.0.1", net_printer.port))
    with pytest.raises(SendError) as err:
        printer.send(card_bytes())
    assert err.value.nothing_sent and err.value.written == 0


def test_serial_printer_over_a_pty(pty_printer: FakePtyPrinter) -> None:
    """GIVEN a serial printer at the far end of a pseudo-terminal
    WHEN status is read and a card sent through serial:
    THEN status follows the printer (paper out, then ready) and the card decodes."""
    printer = Printer(transport_from_url(f"serial:{pty_printer.slave_path}?baud=115200"),
                      absent_after=0)
    pty_printer.state = "no_paper"
    assert printer.status() is PrinterState.NO_PAPER
    pty_printer.state = "ready"
    assert printer.status() is PrinterState.READY
    data = card_bytes(80)
    printer.send(data)
    wait_for(lambda: bytes(pty_printer.received).endswith(data))
    decoded = escpos_decode.decode(bytes(pty_printer.received), "gb18030")
    assert "扫码入群 领新人礼" in decoded.text and decoded.cuts == 1
    printer.close()


def test_stalled_serial_write_reports_a_partial_send(pty_printer: FakePtyPrinter) -> None:
    """GIVEN a serial printer that stops taking data (buffer full)
    WHEN a large job is written with a short timeout
    THEN SendError says some, but not all, bytes went out (the job must not be resent)."""
    pty_printer.reading = False
    transport = SerialTransport(pty_printer.slave_path, 115200, timeout=0.3)
    with pytest.raises(SendError) as err:
        transport.write(b"\x00" * 2_000_000)
    assert 0 < err.value.written < err.value.total
    assert not err.value.nothing_sent
    transport.close()


def fake_sysfs(root: Path, vendor: str, product: str, node: str) -> tuple[Path, Path]:
    """A /sys and /dev pair where usblp device lp0 is ``vendor:product`` at ``node``."""
    sysfs, dev = root / "sys", root / "dev"
    usbdev = sysfs / "devices" / "usb1" / "1-1"
    iface = usbdev / "1-1:1.0"
    iface.mkdir(parents=True)
    (usbdev / "idVendor").write_text(vendor + "\n")
    (usbdev / "idProduct").write_text(product + "\n")
    (sysfs / "class" / "usbmisc").mkdir(parents=True)
    (sysfs / "class" / "usbmisc" / "lp0").mkdir()
    (sysfs / "class" / "usbmisc" / "lp0" / "device").symlink_to(iface)
    (dev / "usb").mkdir(parents=True)
    (dev / "usb" / "lp0").symlink_to(node)
    return sysfs, dev


def test_usb_printer_found_by_vendor_id(tmp_path: Path, pty_printer: FakePtyPrinter) -> None:
    """GIVEN a usblp device whose vendor:product is 04b8:0e15 (the sysfs lookup stands in
    for the USB bus; the device node is a real pty with a printer behind it)
    WHEN usb:0x04b8:0x0e15 is opened, and usb:0x0416:0x5011 is looked for
    THEN the first reads status and prints a card; the second is OFFLINE saying not found."""
    sysfs, dev = fake_sysfs(tmp_path, "04b8", "0e15", pty_printer.slave_path)
    printer = Printer(UsbTransport(0x04B8, 0x0E15, sysfs=sysfs, dev=dev), absent_after=0)
    assert printer.status() is PrinterState.READY
    data = card_bytes()
    printer.send(data)
    wait_for(lambda: bytes(pty_printer.received).endswith(data))
    assert escpos_decode.decode(bytes(pty_printer.received)).cuts == 1
    printer.close()
    other = Printer(UsbTransport(0x0416, 0x5011, sysfs=sysfs, dev=dev), absent_after=0)
    assert other.status() is PrinterState.OFFLINE
    assert "no USB printer usb:0x0416:0x5011" in other.detail


def test_file_and_simulated_printers(tmp_path: Path) -> None:
    """GIVEN a simulated printer file and its .state file
    WHEN jobs are sent and the state file says no_paper, then holds junk
    THEN the bytes are appended whole, the state follows the file, junk reads as ERROR;
    a file printer in a missing folder is OFFLINE."""
    t = transport_from_url("simulate:", home=tmp_path)
    assert isinstance(t, SimulatedTransport)
    printer = Printer(t, absent_after=0)
    assert printer.status() is PrinterState.READY
    printer.send(card_bytes())
    printer.send(card_bytes())
    assert escpos_decode.decode((tmp_path / "printer-sim.bin").read_bytes()).cuts == 2
    t.state_path.write_text("no_paper\n")
    assert printer.status() is PrinterState.NO_PAPER
    t.state_path.write_text("jammed")
    assert printer.status() is PrinterState.ERROR and "jammed" in printer.detail
    missing = Printer(transport_from_url(f"file:{tmp_path}/nope/out.bin"), absent_after=0)
    assert missing.status() is PrinterState.OFFLINE
    with pytest.raises(SendError, match="cannot open"):
        missing.send(b"x")


@pytest.mark.parametrize(("url", "message"), [
    ("lpt:1", "unknown kind 'lpt'"),
    ("tcp://:9100", "needs a host"),
    ("tcp://printer:99999", "bad port"),
    ("serial:", "needs a port path"),
    ("serial:/dev/ttyS0?baud=fast", "baud='fast' is not a number"),
    ("usb:04b8", "usb:0xVVVV:0xPPPP"),
    ("usb:0x04b8:zz", "usb:0xVVVV:0xPPPP"),
    ("tcp://p?status=maybe", "status='maybe'"),
    ("file:", "needs a path"),
])
def test_bad_printer_urls_are_explained(url: str, message: str) -> None:
    """GIVEN a malformed printer URL from config
    WHEN parsed
    THEN PrinterConfigError names the part that is wrong."""
    with pytest.raises(PrinterConfigError, match=message.replace("?", r"\?")):
        transport_from_url(url)


def _import_escpos(home: Path, tmpdir: Path, configure: bool) -> str:
    root = Path(__file__).resolve().parent.parent
    script = textwrap.dedent(f"""
        import logging
        from pathlib import Path
        from drivers.printer import configure_escpos_cache
        import sys
        if {configure}:
            configure_escpos_cache(Path({str(home)!r}))
            assert "escpos" not in sys.modules  # setting the cache costs no import
            configure_escpos_cache(Path({str(home)!r}), import_now=True)
        import escpos.printer
        print(len(logging.getLogger().handlers))
    """)
    env = {**os.environ, "TMPDIR": str(tmpdir), "PYTHONPATH": str(root)}
    env.pop("ESCPOS_CAPABILITIES_PICKLE_DIR", None)
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=120, check=True)
    return proc.stdout.strip()


def test_escpos_cache_is_set_and_no_temp_folder_is_left(tmp_path: Path) -> None:
    """GIVEN a fresh process importing python-escpos, without and then with the cache set
    WHEN it exits
    THEN without it a temp folder is left behind and a root log handler installed; with it
    (twice) the capabilities pickle is in the home's cache, no temp folder is left, and the
    root logger is untouched."""
    home, tmpdir = tmp_path / "home", tmp_path / "tmp"
    tmpdir.mkdir()
    assert _import_escpos(home, tmpdir, configure=False) == "1"
    assert [p for p in tmpdir.iterdir() if p.is_dir()], "control: escpos leaves a temp dir"
    for p in tmpdir.iterdir():
        for f in p.iterdir():
            f.unlink()
        p.rmdir()
    for _ in range(2):
        assert _import_escpos(home, tmpdir, configure=True) == "0"
    assert list(tmpdir.iterdir()) == []
    cache = home / "cache" / "escpos"
    assert [p.name for p in cache.iterdir()] == [
        f"{sys.version.split()[0]}.capabilities.pickle"]


def test_printer_from_config_table(tmp_path: Path) -> None:
    """GIVEN [printer] tables from edge.toml: a good one, one without url, one with a bad
    debounce and one with a bad encoding
    WHEN turned into a printer and profile
    THEN the good one gives a simulated 80 mm Big5 printer; the others name the bad key."""
    printer, profile = printer_from_config(
        {"url": "simulate:", "paper_mm": 80, "encoding": "big5", "absent_after": 1}, tmp_path)
    assert isinstance(printer.transport, SimulatedTransport)
    assert printer.transport.path == tmp_path / "printer-sim.bin"
    assert (profile.columns, profile.encoding.value, printer.absent_after) == (48, "big5", 1.0)
    with pytest.raises(PrinterConfigError, match="url is missing"):
        printer_from_config({"paper_mm": 58}, tmp_path)
    with pytest.raises(PrinterConfigError, match="absent_after"):
        printer_from_config({"url": "simulate:", "absent_after": "soon"}, tmp_path)
    with pytest.raises(ProfileError, match="encoding"):
        printer_from_config({"url": "simulate:", "encoding": "latin-1"}, tmp_path)
