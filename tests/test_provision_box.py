"""`edge provision` on the box: the bundle's QR scanned (a pty serial scanner, the camera
path's zxing-cpp decoder), the device check and test card (ESC/POS decoded back), a
missing printer, and `--factory-reset` with each refusal and its success."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest

from cli import hq as hq_cli
from cli.edge import main as edge
from drivers import escpos_decode
from drivers.synthetic import write_video
from edge import slips
from edge.box import Box
from edge.keys import Purpose
from hq.broker import BrokerOptions
from hq.issuing import keystore
from hq.issuing.enrol_service import EnrolService
from provisioning.localbroker import Broker, free_port
from tests.test_scanner_serial import Pty

pytestmark = pytest.mark.network

STORE = "BJ001"


@pytest.fixture
def hq(tmp_path: Path) -> Iterator[tuple[Path, Broker]]:
    """HQ's home with keys, a mosquitto, and the enrolment service on it."""
    home = tmp_path / "hq"
    keystore.create_key(home, "HQ1", [Purpose.COUPON, Purpose.PICKUP, Purpose.CONFIG])
    broker = Broker(tmp_path / "mq")
    broker.start()
    service = EnrolService(home, BrokerOptions(host=broker.host, port=broker.port))
    service.start()
    try:
        assert service.subscribed.wait(10)
        yield home, broker
    finally:
        service.stop()
        broker.kill()


def bundle_for(hq: tuple[Path, Broker], out: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    home, broker = hq
    assert hq_cli.main(["--home", str(home), "enrol", "--store", STORE, "--out", str(out),
                        "--broker", f"mqtt://{broker.host}:{broker.port}"]) == 0
    capsys.readouterr()
    return out


def provision(home: Path, *args: str) -> int:
    return edge(["--home", str(home), "provision", *args, "--timeout", "10"])


def test_scan_from_a_serial_scanner(tmp_path: Path, hq: tuple[Path, Broker],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """GIVEN a serial scanner on a pseudo-terminal and `edge provision --scan` on it
    WHEN the scanner first sends a coupon-like code, then the bundle's QR text
    THEN the first is reported as not an enrolment QR and the wait goes on; the bundle
    enrols the box, whose [scanner] port is the scanner that read it."""
    bundle = bundle_for(hq, tmp_path / "b.bundle", capsys)
    line = Pty(tmp_path / "ttyScanner")
    home = tmp_path / "box"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.edge", "--home", str(home), "provision", "--scan",
         str(line.link), "--device", "BJ001-T1", "--timeout", "10", "--scan-timeout", "30"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready, noted = threading.Event(), threading.Event()
    err: list[str] = []

    def read() -> None:
        assert proc.stderr is not None
        for text in proc.stderr:
            err.append(text)
            ready.set() if "scanner: ready" in text else None
            noted.set() if "not an enrolment QR" in text else None
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(30), "".join(err)
        line.write(b"SE1C0000NOTABUNDLE\r\n")
        assert noted.wait(10), "".join(err)
        line.write(bundle.read_text().strip().encode() + b"\r\n")
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        line.unplug()
    reader.join(10)
    assert proc.returncode == 0, "".join(err)
    assert "本机已登记：门店 BJ001，设备 BJ001-T1" in out
    box = Box.open(home)
    try:
        assert box.config.raw["scanner"]["port"] == str(line.link)
    finally:
        box.close()


def test_scan_times_out_with_words(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """GIVEN a scanner that sends nothing, and a scanner port that does not exist
    WHEN `edge provision --scan` waits a second on each
    THEN both end (exit 1) saying no enrolment QR was read, the second naming the absent
    port; no box home is made."""
    line = Pty(tmp_path / "ttyScanner")
    try:
        assert provision(tmp_path / "a", "--scan", str(line.link), "--device", "BJ001-T1",
                         "--scan-timeout", "1") == 1
        assert "没有扫到登记二维码" in capsys.readouterr().err
    finally:
        line.unplug()
    assert provision(tmp_path / "b", "--scan", str(tmp_path / "ttyNone"), "--device",
                     "BJ001-T1", "--scan-timeout", "1", "--lang", "en") == 1
    err = capsys.readouterr().err
    assert "No enrolment QR was read" in err and "ttyNone" in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_scan_with_the_camera(tmp_path: Path, hq: tuple[Path, Broker],
                              capsys: pytest.CaptureFixture[str]) -> None:
    """GIVEN the QR image `edge-hq enrol` wrote, filmed as a short video
    WHEN `edge provision --scan camera:VIDEO` reads it through the camera driver (zxing-cpp)
    THEN the box enrols with the bundle the image holds."""
    bundle = bundle_for(hq, tmp_path / "b.bundle", capsys)
    image = cv2.imread(str(bundle) + ".png")
    assert image is not None
    video = tmp_path / "qr.avi"
    write_video(video, [image] * 5)
    home = tmp_path / "box"
    assert provision(home, "--scan", f"camera:{video}", "--device", "BJ001-T1",
                     "--scan-timeout", "30") == 0, capsys.readouterr().err
    assert "本机已登记" in capsys.readouterr().out
    assert keystore.load_devices(hq[0])["BJ001-T1"]["store"] == STORE


def test_test_card_and_a_missing_printer(tmp_path: Path, hq: tuple[Path, Broker],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """GIVEN a bundle, a printer that is a file, and a printer nobody listens for
    WHEN one box provisions with the file printer, another with the absent one
    THEN the first prints the enrolment test card (decoded back: title, store, device, the
    test QR, one cut) and says so; the second is enrolled all the same and reports the
    printer unreachable with the fix, and no test card."""
    printed = tmp_path / "printer.bin"
    assert provision(tmp_path / "a", str(bundle_for(hq, tmp_path / "a.bundle", capsys)),
                     "--device", "BJ001-T1", "--printer", f"file:{printed}") == 0
    out = capsys.readouterr().out
    assert "已打印测试卡" in out and "打印机就绪" in out
    card = escpos_decode.decode(printed.read_bytes(), "gb18030")
    assert "本机已登记 / BOX ENROLLED" in card.text and "BJ001-T1" in card.text
    assert STORE in card.text and slips.TEST_SIMPLIFIED in card.text
    assert [q.data for q in card.qr_codes] == [slips.TEST_PAGE_QR] and card.cuts == 1

    nobody = f"tcp://127.0.0.1:{free_port()}?timeout=1"
    assert edge(["--home", str(tmp_path / "b"), "provision",
                 str(bundle_for(hq, tmp_path / "b.bundle", capsys)), "--device", "BJ001-T2",
                 "--printer", nobody, "--json", "--lang", "en"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["enrolled"] and not result["test_card"]
    printer = next(d for d in result["devices"] if d["check"] == "printer")
    assert printer["outcome"] == "fail" and "does not answer" in printer["message"]
    assert "power and cable" in printer["fix"]


def reset(home: Path, typed: str, monkeypatch: pytest.MonkeyPatch, *extra: str) -> int:
    monkeypatch.setattr(sys, "stdin", _Typed(typed))
    return edge(["--home", str(home), "provision", "--factory-reset", *extra])


class _Typed:
    def __init__(self, text: str) -> None:
        self.text = text

    def readline(self) -> str:
        return self.text + "\n"


def test_factory_reset_refusals_and_success(tmp_path: Path, hq: tuple[Path, Broker],
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """GIVEN an enrolled box that printed a card (one event not at HQ)
    WHEN a factory reset is asked with the wrong store typed; with the right one; while
    another process has the ledger open; then with --discard-unsent
    THEN the first three are refused (wrong id; 1 event not at HQ; the daemon runs) and
    nothing is wiped; the last warns that 1 event will be lost, wipes key, ledger,
    config and enrolment and keeps the folder; the box then enrols afresh as another
    device, and a box with no events resets without --discard-unsent."""
    home = tmp_path / "box"
    bundle = bundle_for(hq, tmp_path / "a.bundle", capsys)
    assert provision(home, str(bundle), "--device", "BJ001-T1") == 0
    assert edge(["--home", str(home), "card"]) == 0
    capsys.readouterr()
    kept = sorted(p.name for p in home.iterdir())

    assert reset(home, "SH001", monkeypatch) == 1
    assert "门店编号不对" in capsys.readouterr().err
    assert reset(home, STORE, monkeypatch) == 1
    assert "还有 1 条记录没有送到总部" in capsys.readouterr().err
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; f = open(sys.argv[1]);"
                               " print('open', flush=True); time.sleep(60)",
                               str(home / "ledger.sqlite")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        assert reset(home, STORE, monkeypatch, "--discard-unsent", "--lang", "en") == 1
        assert "service is running" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    assert sorted(p.name for p in home.iterdir()) == kept

    assert reset(home, STORE, monkeypatch, "--discard-unsent", "--json") == 0
    captured = capsys.readouterr()
    assert "1 条记录尚未送到总部" in captured.err
    result = json.loads(captured.out)
    assert result["discarded"] == 1 and "device.key" in result["removed"]
    assert home.is_dir() and list(home.iterdir()) == []

    again = bundle_for(hq, tmp_path / "b.bundle", capsys)
    assert provision(home, str(again), "--device", "BJ001-T2") == 0
    capsys.readouterr()
    assert reset(home, STORE, monkeypatch) == 0
    assert "已恢复出厂状态" in capsys.readouterr().out
    assert not (home / "device.key").exists()
