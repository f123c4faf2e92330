"""A camera as a scanner: OpenCV capture, zxing-cpp or zbar decoding, one report per code.

The source is a camera index (``0``), a device path (``/dev/video0``), a stream URL
(``rtsp://...``) or a video file (simulation, tests). Frames are read in one worker thread
(:func:`drivers.scan.run_in_thread`), decoded, and each code is reported once: a code still
in view, or seen again within ``holdoff_s`` of when it was last seen, is not reported again.

Keeping the CPU low (figures in ``bench/camera.py``):

* frames are decoded at most ``fps`` times a second;
* a scene that has not changed (mean grey-level change under ``still_threshold`` on a
  32x24 thumbnail) is decoded twice (both 1D orientations) and then not again, except
  every ``still_redecode_s`` (autofocus settling does not move a thumbnail much);
* only the ``roi`` part of the frame is looked at, downscaled to ``decode_width`` pixels;
* the quick pass looks for dark-on-light codes, and for 1D codes on an image squashed
  along their bars, upright and turned a quarter on alternate frames; every
  ``thorough_every``-th decode runs at full resolution and also tries light-on-dark and
  downscaled codes, so those are found a few frames later instead of costing every frame.

zxing-cpp is the default decoder: on the same frames it found as many codes as zbar at a
tenth of the time (``bench/camera.py``); ``decoder = "zbar"`` uses pyzbar instead.

OpenCV and numpy (about 31 MB resident, OpenCV 4.14 and 5.0 alike) and the decoders are
imported only when a camera runs: importing this module for :class:`CameraConfig` costs
nothing. Running adds about 10 MB (library code paged in, frames) and does not grow:
an MJPG video file is decoded from its JPEG packets straight to grey, glibc is kept from
pooling freed frame buffers, and the heap is trimmed once decoding has settled.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import enum
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, cast

from drivers.scan import (
    Backoff,
    DeviceState,
    DeviceStatus,
    OnScan,
    OnState,
    Post,
    ScanInput,
    ScannerError,
    StateReporter,
    config_from_mapping,
    run_in_thread,
)

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Image = npt.NDArray[np.uint8]
else:
    Image = Any

log = logging.getLogger(__name__)

THUMB_SIZE: Final = (32, 24)
# glibc mallopt() parameters (malloc.h).
M_TRIM_THRESHOLD: Final = -1
M_MMAP_THRESHOLD: Final = -3
FRAME_MMAP_BYTES: Final = 256 * 1024  # a 640x480 grey frame is 300 KB: mmapped, not pooled
TRIM_AFTER_FRAMES: Final = 30  # give the heap back once decoding has settled


class CameraError(ScannerError):
    """The camera failed; the driver reports it as a state and reopens the source."""


class SourceUnavailable(CameraError):
    """The source could not be opened (no such camera, file or stream)."""


class StreamEnded(CameraError):
    """The source stopped giving frames (unplugged, stream dropped, end of a video file)."""


class DecoderUnavailable(CameraError):
    """The configured decoder library is not installed."""


class Decoder(enum.StrEnum):
    """Which library decodes frames."""

    ZXING = "zxing"  # zxing-cpp: the default, about 10x faster than zbar here
    ZBAR = "zbar"  # pyzbar over the system's libzbar0


class Symbology(enum.StrEnum):
    """The code types a camera looks for."""

    QR = "qr"
    EAN13 = "ean13"
    EAN8 = "ean8"
    UPCA = "upca"
    UPCE = "upce"
    CODE128 = "code128"
    CODE39 = "code39"


MATRIX: Final = frozenset({Symbology.QR})
LINEAR_SQUASH: Final = 4  # rows averaged into one for the quick 1D pass
COMMON: Final = (Symbology.QR, Symbology.EAN13, Symbology.EAN8, Symbology.UPCA,
                 Symbology.CODE128)


@dataclass(frozen=True, slots=True)
class CameraConfig:
    """A camera's settings; the field names are the keys of the ``[camera]`` table."""

    source: str | int = 0  # camera index, /dev/videoN, stream URL or video file
    decoder: Decoder = Decoder.ZXING
    symbologies: tuple[Symbology, ...] = COMMON
    holdoff_s: float = 2.0  # a code seen again within this long of last being seen is ignored
    fps: float = 15.0  # frames decoded per second at most
    width: int = 0  # capture size asked of the camera; 0 = its default
    height: int = 0
    decode_width: int = 640  # wider frames (after roi) are downscaled to this; 0 = never
    roi: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)  # x, y, w, h as fractions
    still_threshold: float = 1.5  # grey levels; 0 decodes every frame
    still_redecode_s: float = 0.5  # decode an unchanged frame again after this long
    thorough_every: int = 8  # every n-th decode is full-size, inverted too; 0 = never
    retry_first_s: float = 0.5
    retry_max_s: float = 10.0
    name: str = "camera"

    def __post_init__(self) -> None:
        """Check ranges.

        Raises:
            ValueError: a value out of range.
        """
        if isinstance(self.source, int) and (isinstance(self.source, bool) or self.source < 0):
            raise ValueError(f"source index must be 0 or more, not {self.source!r}")
        if isinstance(self.source, str) and not self.source:
            raise ValueError("source must not be empty")
        if isinstance(self.source, str) and self.source.isdigit():
            object.__setattr__(self, "source", int(self.source))  # "0" means camera 0
        if not self.symbologies:
            raise ValueError("symbologies must name at least one code type")
        object.__setattr__(self, "symbologies", tuple(Symbology(s) for s in self.symbologies))
        if self.holdoff_s < 0 or self.still_threshold < 0 or self.still_redecode_s < 0:
            raise ValueError("holdoff_s, still_threshold and still_redecode_s must be >= 0")
        if not 0 < self.fps <= 120:
            raise ValueError(f"fps must be in (0, 120], not {self.fps}")
        if min(self.width, self.height, self.decode_width, self.thorough_every) < 0:
            raise ValueError("width, height, decode_width and thorough_every must be >= 0")
        if self.decode_width and self.decode_width < 160:
            raise ValueError(f"decode_width must be 0 (off) or >= 160, not {self.decode_width}")
        if len(self.roi) != 4:
            raise ValueError("roi is [x, y, w, h] as fractions of the frame")
        x, y, w, h = self.roi
        if not (0 <= x < 1 and 0 <= y < 1 and w > 0 and h > 0 and x + w <= 1.0001
                and y + h <= 1.0001):
            raise ValueError(f"roi {self.roi} must lie inside [0, 1] x [0, 1]")
        if not 0 < self.retry_first_s <= self.retry_max_s:
            raise ValueError("need 0 < retry_first_s <= retry_max_s")

    @classmethod
    def from_toml(cls, section: dict[str, object]) -> CameraConfig:
        """Build from the ``[camera]`` table of ``edge.toml``.

        Raises:
            drivers.scan.ScannerConfigError: an unknown key or a bad value.
        """
        return config_from_mapping(cls, section, "[camera]")

    @property
    def label(self) -> str:
        """The source label of this camera's scans."""
        return f"camera:{self.source}"

    @property
    def is_file(self) -> bool:
        """Whether the source is a video file (played at ``fps``, replayed at its end)."""
        return isinstance(self.source, str) and "://" not in self.source \
            and not self.source.startswith("/dev/") and os.path.isfile(self.source)


class FrameDecoder:
    """Finds code texts in a grey image with one library, restricted to some symbologies.

    Raises:
        DecoderUnavailable: the library is not installed.
    """

    def __init__(self, decoder: Decoder, symbologies: Sequence[Symbology]) -> None:
        """Load the library and map the symbologies to its names."""
        self.decoder = decoder
        try:
            if decoder is Decoder.ZXING:
                import zxingcpp

                names = {Symbology.QR: "QRCode", Symbology.EAN13: "EAN13",
                         Symbology.EAN8: "EAN8", Symbology.UPCA: "UPCA",
                         Symbology.UPCE: "UPCE", Symbology.CODE128: "Code128",
                         Symbology.CODE39: "Code39"}
                self._zx = zxingcpp

                def formats(which: Sequence[Symbology]) -> Any:
                    return zxingcpp.BarcodeFormats(
                        [getattr(zxingcpp.BarcodeFormat, names[s]) for s in which])

                self._all = formats(symbologies)
                matrix = [s for s in symbologies if s in MATRIX]
                linear = [s for s in symbologies if s not in MATRIX]
                self._matrix = formats(matrix) if matrix else None
                self._linear = formats(linear) if linear else None
            else:
                from pyzbar import pyzbar
                from pyzbar.pyzbar import ZBarSymbol

                zb = {Symbology.QR: ZBarSymbol.QRCODE, Symbology.EAN13: ZBarSymbol.EAN13,
                      Symbology.EAN8: ZBarSymbol.EAN8, Symbology.UPCA: ZBarSymbol.UPCA,
                      Symbology.UPCE: ZBarSymbol.UPCE, Symbology.CODE128: ZBarSymbol.CODE128,
                      Symbology.CODE39: ZBarSymbol.CODE39}
                self._zbar = pyzbar
                self._symbols = [zb[s] for s in symbologies]
        except ImportError as exc:  # pyzbar raises ImportError when libzbar0 is missing
            raise DecoderUnavailable(f"decoder {decoder} unavailable: {exc}") from None

    def decode(self, grey: Image, thorough: bool = False, turned: bool = False) -> list[str]:
        """The texts of the codes in ``grey``, each once, in the library's order.

        With zxing-cpp, a quick pass reads dark-on-light codes: QR on the image as given,
        1D codes on a copy squashed 4:1 along their bars (a 1D code is read across its
        bars, which survive averaging up to about 30 degrees of tilt; half the cost).
        ``turned`` looks for 1D codes turned a quarter (bars across the image) instead
        of upright; upside-down ones read either way. A ``thorough`` pass reads every
        symbology in one call that also tries light-on-dark codes and downscaled copies.
        zbar has no such options: it scans the whole image both ways every time.
        """
        texts: list[str] = []
        if self.decoder is Decoder.ZXING:
            if thorough:
                texts += [str(r.text) for r in self._zx.read_barcodes(
                    grey, formats=self._all, try_rotate=False)]  # turned: alternate passes
            else:
                if self._matrix is not None:
                    texts += self._quick(grey, self._matrix)
                if self._linear is not None:
                    texts += self._quick(_squash(grey, turned), self._linear)
        else:
            for symbol in self._zbar.decode(grey, symbols=self._symbols):
                data: bytes = symbol.data
                try:
                    texts.append(data.decode("utf-8"))
                except UnicodeDecodeError:
                    texts.append(data.decode("latin-1"))  # zbar's own guess for binary QR
        return list(dict.fromkeys(texts))

    def _quick(self, image: Image, formats: Any) -> list[str]:
        return [str(r.text) for r in self._zx.read_barcodes(
            image, formats=formats, try_rotate=False, try_invert=False, try_downscale=False)]


def _squash(grey: Image, turned: bool) -> Image:
    """``grey`` averaged :data:`LINEAR_SQUASH` lines into one along the bars of a 1D code.

    Upright bars are vertical, so rows are averaged; turned bars are horizontal, so the
    image is transposed first and the same is done to what were its columns.
    """
    import cv2

    if turned:
        grey = cast("Image", cv2.transpose(grey))
    height, width = grey.shape[:2]
    rows = max(1, height // LINEAR_SQUASH)
    return cast("Image", cv2.resize(grey, (width, rows), interpolation=cv2.INTER_AREA))


MJPG: Final = 0x47504A4D  # the fourcc "MJPG", little-endian as CAP_PROP_FOURCC gives it


def _jpeg_packets(cv2: Any, cap: Any, cfg: CameraConfig) -> bool:
    """Ask an opened MJPG video file for its JPEG packets instead of decoded BGR frames.

    Each packet is then decoded straight to grey with ``cv2.imdecode``, which skips
    FFmpeg's decoder, its colour conversion and the 3-channel frame: in the same run,
    a 1280x720 frame cost 2.1 ms instead of 2.8 ms and the process peaked at 51 MB
    instead of 62 MB. Cameras and streams are left as they are.
    """
    if not cfg.is_file or int(cap.get(cv2.CAP_PROP_FOURCC)) != MJPG:
        return False
    return bool(cap.set(cv2.CAP_PROP_FORMAT, -1))


class _Libc:
    """glibc's allocator knobs, or nothing where the C library is not glibc."""

    def __init__(self) -> None:
        self._lib: Any = None
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            lib.mallopt  # noqa: B018  (musl has no mallopt: then leave the allocator alone)
            lib.malloc_trim  # noqa: B018
            self._lib = lib
        except (OSError, AttributeError):
            pass
        self._tuned = False

    def tune_for_frames(self) -> None:
        """Make frame-sized buffers come from mmap and go back to the system when freed.

        glibc raises its mmap threshold to the size of each mmapped block freed, so after
        the first frame every frame buffer comes from the worker thread's arena, which
        keeps the freed ones; fixing the threshold stops that.
        """
        if self._lib is not None and not self._tuned:
            self._lib.mallopt(M_MMAP_THRESHOLD, FRAME_MMAP_BYTES)
            self._lib.mallopt(M_TRIM_THRESHOLD, FRAME_MMAP_BYTES)
            self._tuned = True

    def trim(self) -> None:
        """Give free heap pages of every arena back to the system."""
        if self._lib is not None:
            self._lib.malloc_trim(0)


LIBC: Final = _Libc()


@dataclass
class PipelineStats:
    """How many frames came in, were decoded, and were skipped as unchanged."""

    frames: int = 0
    decoded: int = 0
    thorough: int = 0
    skipped: int = 0


class FramePipeline:
    """From a BGR frame to the codes in view: crop, grey, downscale, skip if unchanged, decode.

    Single-threaded and free of capture code, so the bench and tests drive it directly.
    """

    def __init__(self, config: CameraConfig) -> None:
        """Prepare the decoder for ``config``.

        Raises:
            DecoderUnavailable: the configured decoder library is not installed.
        """
        import cv2

        self._cv2 = cv2
        self.config = config
        self.decoder = FrameDecoder(config.decoder, config.symbologies)
        self.stats = PipelineStats()
        self._thumb: Image | None = None
        self._codes: list[str] = []
        self._decoded_at = -math.inf
        self._passes = 0  # decodes since the scene last changed

    def process(self, frame: Image, now: float) -> list[str]:
        """The codes in view in ``frame`` at time ``now`` (seconds, monotonic).

        The codes are those read since the scene last changed: a frame like the one at the
        last change (mean grey-level difference of the 32x24 thumbnails under
        ``still_threshold``) adds nothing new, so once both 1D orientations have looked at
        the scene it is not decoded again until it changes or ``still_redecode_s`` passes.
        Codes of an unchanged scene are still returned: they are in view, which keeps
        their hold-off running.
        """
        cv2 = self._cv2
        cfg = self.config
        self.stats.frames += 1
        height, width = frame.shape[:2]
        x, y, w, h = cfg.roi
        if (x, y, w, h) != (0.0, 0.0, 1.0, 1.0):
            frame = frame[int(y * height):int((y + h) * height),
                          int(x * width):int((x + w) * width)]
        grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
        thumb = cv2.resize(grey, THUMB_SIZE, interpolation=cv2.INTER_AREA)
        if (not cfg.still_threshold or self._thumb is None
                or float(cv2.absdiff(thumb, self._thumb).mean()) >= cfg.still_threshold):
            self._thumb, self._codes, self._passes = thumb, [], 0  # a new scene
        elif self._passes >= 2 and now - self._decoded_at < cfg.still_redecode_s:
            self.stats.skipped += 1
            return self._codes
        self.stats.decoded += 1
        self._passes += 1
        thorough = bool(cfg.thorough_every) and self.stats.decoded % cfg.thorough_every == 0
        small = grey
        if not thorough and cfg.decode_width and grey.shape[1] > cfg.decode_width:
            scaled_h = max(1, grey.shape[0] * cfg.decode_width // grey.shape[1])
            small = cv2.resize(grey, (cfg.decode_width, scaled_h), interpolation=cv2.INTER_AREA)
        self.stats.thorough += thorough
        # Upright and turned 1D passes alternate: a code stays in view for many frames.
        turned = self.stats.decoded % 2 == 0
        found = self.decoder.decode(small, thorough=thorough, turned=turned)
        self._codes = list(dict.fromkeys(self._codes + found))
        self._decoded_at = now
        return self._codes


@dataclass
class HoldOff:
    """Reports a code when it has not been seen for ``seconds``: once per showing."""

    seconds: float
    _seen: dict[str, float] = field(default_factory=dict)

    def fresh(self, codes: Sequence[str], now: float) -> list[str]:
        """Which of ``codes``, all in view at ``now``, to report."""
        out = []
        for code in codes:
            last = self._seen.get(code)
            if last is None or now - last > self.seconds:
                out.append(code)
            self._seen[code] = now
        if len(self._seen) > 64:  # forget codes long gone, so memory stays bounded
            self._seen = {c: t for c, t in self._seen.items() if now - t <= self.seconds}
        return out


class CameraScanner:
    """Reads codes from one camera source for as long as it runs, reopening it when it fails.

    Callbacks run on the event loop thread.
    """

    def __init__(self, config: CameraConfig, on_scan: OnScan, on_state: OnState,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """Prepare; nothing is opened (and OpenCV is not imported) until :meth:`run`."""
        self.config = config
        self.on_scan = on_scan
        self.on_state = on_state
        self.holdoff = HoldOff(config.holdoff_s)
        self.stats = PipelineStats()
        self._clock = clock
        self._state = StateReporter(config.name, on_state)

    @property
    def status(self) -> DeviceStatus:
        """The last state reported."""
        return self._state.status

    async def run(self) -> None:
        """Open the source, report codes, and reopen it whenever it fails, until cancelled.

        Never raises for device trouble (it becomes a state change and a log line);
        only cancellation ends it.
        """
        cfg = self.config
        backoff = Backoff(cfg.retry_first_s, cfg.retry_max_s)
        self._state.report(DeviceStatus(cfg.name, DeviceState.CONNECTING, str(cfg.source)))
        while True:
            self._state.opened = False
            try:
                await run_in_thread(self._session, f"camera-{cfg.name}")
                status = DeviceStatus(cfg.name, DeviceState.FAILED, "reader stopped")
            except SourceUnavailable as exc:
                status = DeviceStatus(cfg.name, DeviceState.ABSENT, str(exc))
            except (CameraError, OSError, ValueError, RuntimeError) as exc:
                status = DeviceStatus(cfg.name, DeviceState.FAILED, str(exc) or repr(exc))
            except ImportError as exc:
                status = DeviceStatus(cfg.name, DeviceState.FAILED, f"OpenCV unavailable: {exc}")
            if self._state.opened:
                backoff.reset()
            delay = backoff.next()
            self._state.report(status, f"retrying in {delay:.2f} s")
            await asyncio.sleep(delay)


    def _found(self, codes: list[str], now: float) -> None:
        """On the loop thread: apply the hold-off, report what is new."""
        for text in self.holdoff.fresh(codes, now):
            log.info("%s: read %r", self.config.label, text)
            self.on_scan(ScanInput(text, self.config.label))

    def _session(self, stop: threading.Event, post: Post) -> None:
        """One open-read-release cycle, in the worker thread. Raises when the source fails."""
        import cv2

        cv2.setNumThreads(1)  # small per-frame work: a thread pool costs more than it saves
        LIBC.tune_for_frames()
        # OpenCV warns on stderr at every failed open; our state and log line say it once.
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        cfg = self.config
        pipeline = FramePipeline(cfg)
        pipeline.stats = self.stats  # counters survive reopening
        cap = cv2.VideoCapture(cfg.source)
        try:
            if not cap.isOpened():
                raise SourceUnavailable(f"cannot open {cfg.source!r}")
            is_file = cfg.is_file
            packets = _jpeg_packets(cv2, cap, cfg)
            if not is_file:
                cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the newest frame, not a queue of old
                if cfg.width and cfg.height:
                    cap.set(cv2.CAP_PROP_FRAME_WIDTH, cfg.width)
                    cap.set(cv2.CAP_PROP_FRAME_HEIGHT, cfg.height)
            post(self._state.report, DeviceStatus(cfg.name, DeviceState.READY, str(cfg.source)))
            period = 1.0 / cfg.fps
            due = self._clock()
            frame: Any = None  # read into the same buffer each time: no new array per frame
            frames = 0
            while not stop.is_set():
                if is_file:
                    # A file reads as fast as the CPU goes: play it at fps instead.
                    if (wait := due - self._clock()) > 0 and stop.wait(wait):
                        break
                    ok, frame = cap.read(frame)
                else:
                    # A camera paces itself; grab every frame (cheap) so none queue up,
                    # and retrieve (convert) only those due.
                    ok = cap.grab()
                    if ok and self._clock() < due:
                        continue
                    if ok:
                        ok, frame = cap.retrieve(frame)
                if not ok or frame is None:
                    raise StreamEnded(f"{cfg.source!r} gave no frame"
                                      + (" (end of file)" if is_file else ""))
                if packets:
                    grey = cv2.imdecode(frame, cv2.IMREAD_GRAYSCALE)
                    if grey is None:
                        raise CameraError(f"{cfg.source!r} gave a frame that is not a JPEG")
                    frame_in: Any = grey
                else:
                    frame_in = frame
                now = self._clock()
                due = max(due + period, now - period)  # no catching up after a stall
                codes = pipeline.process(cast("Image", frame_in), now)
                frames += 1
                if frames == TRIM_AFTER_FRAMES:
                    LIBC.trim()  # what opening the source and the first decodes left free
                if codes:
                    post(self._found, codes, now)
        finally:
            cap.release()
            LIBC.trim()
