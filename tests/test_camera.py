"""The camera path on generated frames and MJPG video files, never a webcam.

Frames come from :mod:`drivers.synthetic`: QR symbols built by ``edge.qrfit.build_qr`` (what
the box prints) and EAN-13 drawn from the standard's tables, on a cluttered background with
blur and sensor noise. Every decode is a real zxing-cpp or zbar decode.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from drivers import synthetic
from drivers.camera import (
    CameraConfig,
    CameraScanner,
    Decoder,
    FrameDecoder,
    FramePipeline,
    HoldOff,
    Symbology,
)
from drivers.scan import DeviceState, DeviceStatus, ScanInput, ScannerConfigError
from drivers.synthetic import Kind, Symbol

WAIT = 20.0  # upper bound for anything to arrive; never reached when the code works
COUPON = "SEC1" + "7Q3K9$ZP*-.:X2" * 12  # a coupon-sized text in QR alphanumeric mode
EAN = "5901234123457"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def back() -> Any:
    return synthetic.background(640, 480, seed=7)


def test_ean13_tables_give_the_standard_check_digit_and_width() -> None:
    """GIVEN twelve digits
    WHEN their EAN-13 pattern is built
    THEN the check digit is the standard one, the pattern has 95 modules, and a wrong
    check digit is refused."""
    assert synthetic.ean13_check_digit("590123412345") == "7"
    assert synthetic.ean13_check_digit("400638133393") == "1"
    assert synthetic.ean13_modules("590123412345") == synthetic.ean13_modules(EAN)
    assert len(synthetic.ean13_modules(EAN)) == 95
    with pytest.raises(ValueError, match="not a valid EAN-13"):
        synthetic.ean13_modules("5901234123458")


@pytest.mark.parametrize("decoder", list(Decoder))
def test_both_decoders_read_a_printed_qr_and_an_ean13_in_a_noisy_frame(
        back: Any, decoder: Decoder) -> None:
    """GIVEN noisy, blurred, slightly rotated frames holding the box's QR and an EAN-13
    WHEN each decoder looks at them
    THEN each reads the exact texts, and finds nothing in an empty frame."""
    dec = FrameDecoder(decoder, [Symbology.QR, Symbology.EAN13])
    grey = _grey(synthetic.scene(back, Symbol(Kind.QR, COUPON, 4), angle=8, seed=1))
    assert dec.decode(grey) == [COUPON]
    grey = _grey(synthetic.scene(back, Symbol(Kind.EAN13, EAN, 3), angle=-4, seed=2))
    assert dec.decode(grey) == [EAN]
    assert dec.decode(_grey(synthetic.scene(back, None, seed=3))) == []


def test_restricted_symbologies_ignore_other_codes(back: Any) -> None:
    """GIVEN a decoder restricted to QR
    WHEN it sees an EAN-13
    THEN it reports nothing."""
    grey = _grey(synthetic.scene(back, Symbol(Kind.EAN13, EAN, 3), seed=2))
    assert FrameDecoder(Decoder.ZXING, [Symbology.QR]).decode(grey) == []
    assert FrameDecoder(Decoder.ZBAR, [Symbology.QR]).decode(grey) == []


def test_unchanged_frames_are_skipped_but_keep_their_codes(back: Any) -> None:
    """GIVEN a pipeline with still-frame skipping (0.5 s re-decode)
    WHEN the same empty scene (fresh sensor noise each time) comes 10 times 1/15 s apart,
    and then a QR appears and stays for 3 frames
    THEN the empty scene is decoded twice (both 1D orientations) and once more after
    0.5 s, the rest skipped; the changed frame is decoded at once and read, and the QR
    is still reported on the frame skipped after its two passes."""
    pipe = FramePipeline(CameraConfig(still_redecode_s=0.5))
    for i in range(10):
        assert pipe.process(synthetic.scene(back, None, seed=i), i / 15) == []
    assert (pipe.stats.decoded, pipe.stats.skipped) == (3, 7)  # t = 0, 1/15, 9/15
    qr = Symbol(Kind.QR, COUPON, 4)
    seen = [pipe.process(synthetic.scene(back, qr, seed=10 + i), (10 + i) / 15)
            for i in range(3)]
    assert seen == [[COUPON]] * 3
    assert (pipe.stats.decoded, pipe.stats.skipped) == (5, 8)


def test_turned_barcode_is_read_on_the_alternate_pass(back: Any) -> None:
    """GIVEN a pipeline with skipping and thorough passes off
    WHEN an EAN-13 turned a quarter stays in view
    THEN the first (upright) pass misses it and the second (turned) pass reads it."""
    pipe = FramePipeline(CameraConfig(thorough_every=0, still_threshold=0))
    frame = synthetic.scene(back, Symbol(Kind.EAN13, EAN, 3), angle=90, seed=5)
    assert pipe.process(frame, 0.0) == []
    assert pipe.process(frame, 0.1) == [EAN]


def test_small_code_lost_to_downscaling_is_read_by_the_thorough_pass() -> None:
    """GIVEN a 1280x720 frame holding a QR with 2-pixel modules, and a pipeline that
    downscales to 640 px with every 3rd decode thorough
    WHEN the frame stays in view for three decodes
    THEN the two quick passes miss it and the full-resolution thorough pass reads it."""
    wide = synthetic.background(1280, 720, seed=3)
    frame = synthetic.scene(wide, Symbol(Kind.QR, "SEP1SMALL", 2), noise=0.5, seed=4)
    pipe = FramePipeline(CameraConfig(thorough_every=3, still_threshold=0))
    assert [pipe.process(frame, t) for t in (0.0, 0.1, 0.2)] == [[], [], ["SEP1SMALL"]]
    assert pipe.stats.thorough == 1


def test_hd_frame_is_downscaled_and_region_of_interest_limits_the_search() -> None:
    """GIVEN a 1280x720 frame with a QR in its left half
    WHEN the pipeline downscales to 640 px, and another looks only at the right half
    THEN the first reads the code and the second does not."""
    wide = synthetic.background(1280, 720, seed=3)
    frame = synthetic.scene(wide, Symbol(Kind.QR, COUPON, 6), center=(0.25, 0.5), seed=4)
    assert FramePipeline(CameraConfig(decode_width=640)).process(frame, 0.0) == [COUPON]
    right = FramePipeline(CameraConfig(roi=(0.5, 0.0, 0.5, 1.0), thorough_every=0))
    assert right.process(frame, 0.0) == []
    left = FramePipeline(CameraConfig(roi=(0.0, 0.0, 0.5, 1.0)))
    assert left.process(frame, 0.0) == [COUPON]


def test_holdoff_reports_a_code_once_per_showing() -> None:
    """GIVEN a 2 s hold-off
    WHEN a code is in view for 5 s, gone for 1 s, back, gone for 3 s, back
    THEN it is reported at its first sighting and after the 3 s absence only."""
    hold = HoldOff(2.0)
    reports = []
    timeline = [t / 10 for t in range(0, 50)] + [t / 10 for t in range(60, 70)] \
        + [t / 10 for t in range(100, 105)]
    for now in timeline:
        reports += [(now, c) for c in hold.fresh(["A"], now)]
    assert reports == [(0.0, "A"), (10.0, "A")]
    assert hold.fresh(["A", "B"], 10.5) == ["B"]


@dataclass
class Seen:
    scans: list[ScanInput] = field(default_factory=list)
    states: list[DeviceStatus] = field(default_factory=list)

    def count(self, state: DeviceState, text: str = "") -> int:
        return sum(1 for s in self.states if s.state is state and text in s.detail)


async def until(cond: Callable[[], bool], what: str) -> None:
    async with asyncio.timeout(WAIT):
        while not cond():
            await asyncio.sleep(0.02)
    assert cond(), what


@contextlib.asynccontextmanager
async def camera(config: CameraConfig) -> AsyncIterator[Seen]:
    seen = Seen()
    task = asyncio.create_task(
        CameraScanner(config, seen.scans.append, seen.states.append).run())
    try:
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _video(path: Path, back: Any, parts: list[tuple[Symbol | None, int]]) -> Path:
    frames: list[Any] = []
    for symbol, count in parts:
        frames += [synthetic.scene(back, symbol, seed=len(frames) + i) for i in range(count)]
    synthetic.write_video(path, frames, fps=30)
    return path


async def test_code_in_view_is_reported_once_and_again_after_the_holdoff(
        tmp_path: Path, back: Any) -> None:
    """GIVEN a video: a QR for 20 frames, nothing for 40, the QR for 10, then an EAN-13,
    played at 30 fps with a 0.4 s hold-off
    WHEN the camera plays it once
    THEN the QR is reported twice (once per showing), the EAN-13 once, each with the
    camera's source label."""
    qr, ean = Symbol(Kind.QR, COUPON, 4), Symbol(Kind.EAN13, EAN, 3)
    video = _video(tmp_path / "counter.avi", back, [(qr, 20), (None, 40), (qr, 10),
                                                    (ean, 10)])
    config = CameraConfig(str(video), fps=30, holdoff_s=0.4, retry_first_s=5,
                          retry_max_s=5)
    async with camera(config) as seen:
        await until(lambda: seen.count(DeviceState.FAILED, "end of file") >= 1, "one pass")
    assert [s.text for s in seen.scans] == [COUPON, COUPON, EAN]
    assert {s.source for s in seen.scans} == {f"camera:{video}"}


async def test_holdoff_spans_a_reopened_source(tmp_path: Path, back: Any) -> None:
    """GIVEN a short video of one QR and a 60 s hold-off
    WHEN the file ends and the camera reopens it and plays it again
    THEN the code is reported only once."""
    video = _video(tmp_path / "loop.avi", back, [(Symbol(Kind.QR, COUPON, 4), 8)])
    config = CameraConfig(str(video), fps=30, holdoff_s=60, retry_first_s=0.05,
                          retry_max_s=0.05)
    async with camera(config) as seen:
        await until(lambda: seen.count(DeviceState.READY) >= 3, "two reopenings")
    assert [s.text for s in seen.scans] == [COUPON]


async def test_missing_source_is_absent_then_opened_and_replaced_source_is_read(
        tmp_path: Path, back: Any) -> None:
    """GIVEN a camera whose video file does not exist yet
    WHEN the file appears, plays to its end, and is replaced by another
    THEN the camera reports ABSENT, then READY, reads the first code, reopens at the end
    of the file and reads the second code, without its task ending."""
    path = tmp_path / "cam.avi"
    config = CameraConfig(str(path), fps=30, retry_first_s=0.05, retry_max_s=0.1)
    async with camera(config) as seen:
        await until(lambda: seen.count(DeviceState.ABSENT) >= 1, "ABSENT")
        _video(tmp_path / "first.avi", back, [(Symbol(Kind.QR, "SEP1FIRST", 5), 6)])
        os.replace(tmp_path / "first.avi", path)
        await until(lambda: len(seen.scans) >= 1, "first code")
        _video(tmp_path / "second.avi", back, [(Symbol(Kind.EAN13, EAN, 3), 6)])
        os.replace(tmp_path / "second.avi", path)
        await until(lambda: len(seen.scans) >= 2, "second code")
    assert [s.text for s in seen.scans] == ["SEP1FIRST", EAN]
    assert seen.states[0].state is DeviceState.CONNECTING
    absent = next(s for s in seen.states if s.state is DeviceState.ABSENT)
    assert "cannot open" in absent.detail and "retrying in" in absent.detail
    assert seen.count(DeviceState.READY) >= 2


async def test_mjpg_file_is_decoded_from_its_jpeg_packets_other_codecs_by_ffmpeg(
        tmp_path: Path, back: Any) -> None:
    """GIVEN an MJPG .avi (the simulated camera) and an FFV1 .avi, each showing a QR
    WHEN the camera opens each
    THEN the MJPG file is read as JPEG packets (decoded straight to grey), the FFV1 one
    as decoded frames, and both codes are reported."""
    import cv2

    from drivers.camera import _jpeg_packets

    mjpg = _video(tmp_path / "mjpg.avi", back, [(Symbol(Kind.QR, "SEP1MJPG", 5), 6)])
    ffv1 = tmp_path / "ffv1.avi"
    writer = cv2.VideoWriter(str(ffv1), cv2.VideoWriter.fourcc(*"FFV1"), 30, (640, 480))
    for i in range(6):
        writer.write(synthetic.scene(back, Symbol(Kind.QR, "SEP1FFV1", 5), seed=i))
    writer.release()
    modes = []
    for path in (mjpg, ffv1):
        cap = cv2.VideoCapture(str(path))
        assert cap.isOpened()
        modes.append(_jpeg_packets(cv2, cap, CameraConfig(str(path))))
        cap.release()
    assert modes == [True, False]
    for path, text in ((mjpg, "SEP1MJPG"), (ffv1, "SEP1FFV1")):
        async with camera(CameraConfig(str(path), fps=30, retry_first_s=5,
                                       retry_max_s=5)) as seen:
            await until(lambda: len(seen.scans) >= 1, f"the code in {path.name}")
        assert [s.text for s in seen.scans] == [text]


async def test_mjpg_file_with_broken_frames_is_a_failed_state_and_the_camera_keeps_trying(
        tmp_path: Path, back: Any) -> None:
    """GIVEN an MJPG .avi whose frames have lost their JPEG start markers
    WHEN the camera plays it
    THEN it reports FAILED with a reason naming the bad frame, reopens the file again and
    again (its task does not end) and reports no code."""
    good = _video(tmp_path / "good.avi", back, [(Symbol(Kind.QR, "SEP1BROKEN", 5), 6)])
    data = good.read_bytes()
    assert data.count(b"\xff\xd8\xff") == 6
    broken = tmp_path / "broken.avi"
    broken.write_bytes(data.replace(b"\xff\xd8\xff", b"\x00\x00\x00"))
    config = CameraConfig(str(broken), fps=30, retry_first_s=0.05, retry_max_s=0.05)
    async with camera(config) as seen:
        await until(lambda: seen.count(DeviceState.FAILED, "not a JPEG") >= 2,
                    "two failed sessions")
    assert seen.count(DeviceState.READY) >= 2 and seen.scans == []


def test_importing_the_drivers_does_not_load_opencv_or_numpy() -> None:
    """GIVEN a fresh interpreter
    WHEN the scan, serial and camera modules are imported and a CameraConfig is built
    THEN neither cv2 nor numpy nor a decoder is loaded (the daemon without a camera
    stays small)."""
    code = ("import sys, drivers.scan, drivers.scanner_serial, drivers.camera;"
            "drivers.camera.CameraConfig.from_toml({'source': 0});"
            "print(sorted(m for m in ('cv2', 'numpy', 'zxingcpp', 'pyzbar') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO)
    assert out.stdout.strip() == "[]"


def test_camera_config_from_toml_checks_keys_and_values() -> None:
    """GIVEN [camera] tables
    WHEN a good one and bad ones are parsed
    THEN the good one converts its strings to enums and digits to an index, and each bad
    one raises ScannerConfigError naming what is wrong."""
    cfg = CameraConfig.from_toml({"source": "0", "decoder": "zbar",
                                  "symbologies": ["qr", "ean13"], "holdoff_s": 3})
    assert (cfg.source, cfg.decoder, cfg.symbologies, cfg.holdoff_s) == (
        0, Decoder.ZBAR, (Symbology.QR, Symbology.EAN13), 3.0)
    assert CameraConfig.from_toml({"source": "rtsp://cam/1"}).label == "camera:rtsp://cam/1"
    with pytest.raises(ScannerConfigError, match="decoder = 'opencv'"):
        CameraConfig.from_toml({"decoder": "opencv"})
    with pytest.raises(ScannerConfigError, match="unknown key"):
        CameraConfig.from_toml({"hold_off": 2})
    with pytest.raises(ScannerConfigError, match="roi"):
        CameraConfig.from_toml({"roi": [0.5, 0.5, 0.8, 0.8]})
    with pytest.raises(ScannerConfigError, match="pdf417"):
        CameraConfig.from_toml({"symbologies": ["qr", "pdf417"]})


def _grey(frame: Any) -> Any:
    import cv2

    return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
