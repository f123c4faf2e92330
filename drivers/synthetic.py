"""Synthetic camera scenes: a QR code or an EAN-13 barcode on a cluttered counter, with noise.

The camera tests, ``bench/camera.py`` and a simulated box feed these to the camera path
instead of a webcam: :func:`scene` draws one frame, :func:`write_video` writes a list of
frames to an MJPG ``.avi`` file that :class:`drivers.camera.CameraScanner` can open like any
other source. QR symbols come from :func:`edge.qrfit.build_qr` (what the box prints);
EAN-13 is drawn from the standard's encoding tables.

numpy and OpenCV are imported inside the functions, as in :mod:`drivers.camera`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Frame = npt.NDArray[np.uint8]
else:
    Frame = Any

# EAN-13 digit patterns (ISO/IEC 15420): L (odd parity), G (even parity); R is L inverted.
_EAN_L: Final = ("0001101", "0011001", "0010011", "0111101", "0100011",
                 "0110001", "0101111", "0111011", "0110111", "0001011")
_EAN_G: Final = tuple(
    "".join("1" if c == "0" else "0" for c in code)[::-1] for code in _EAN_L)
_EAN_R: Final = tuple("".join("1" if c == "0" else "0" for c in code) for code in _EAN_L)
# The first digit is not drawn: it picks the parity of the next six.
_EAN_PARITY: Final = ("LLLLLL", "LLGLGG", "LLGGLG", "LLGGGL", "LGLLGG",
                      "LGGLLG", "LGGGLL", "LGLGLG", "LGLGGL", "LGGLGL")


class Kind(enum.StrEnum):
    """What a drawn symbol is."""

    QR = "qr"
    EAN13 = "ean13"


@dataclass(frozen=True, slots=True)
class Symbol:
    """A code to draw: its kind, its text, and how big a module is in pixels."""

    kind: Kind
    text: str
    module_px: int = 4


def ean13_check_digit(first12: str) -> str:
    """The EAN-13 check digit of twelve digits.

    Raises:
        ValueError: not exactly twelve digits.
    """
    if len(first12) != 12 or not first12.isdigit():
        raise ValueError(f"EAN-13 needs 12 digits before the check digit, got {first12!r}")
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(first12))
    return str((10 - total % 10) % 10)


def ean13_modules(digits: str) -> str:
    """The 95 bars and spaces (``1`` = bar) of an EAN-13 code, without quiet zones.

    ``digits`` is 12 digits (the check digit is added) or 13 (it is checked).

    Raises:
        ValueError: not 12 or 13 digits, or a wrong check digit.
    """
    if len(digits) == 12:
        digits += ean13_check_digit(digits)
    if len(digits) != 13 or ean13_check_digit(digits[:12]) != digits[12]:
        raise ValueError(f"{digits!r} is not a valid EAN-13 number")
    parity = _EAN_PARITY[int(digits[0])]
    left = "".join((_EAN_L if p == "L" else _EAN_G)[int(d)] for p, d in zip(
        parity, digits[1:7], strict=True))
    right = "".join(_EAN_R[int(d)] for d in digits[7:])
    return "101" + left + "01010" + right + "101"


def symbol_mask(symbol: Symbol) -> Frame:
    """The symbol as a 2-D array, 0 for dark and 255 for light, quiet zone included."""
    import numpy as np

    if symbol.kind is Kind.QR:
        from edge.qrfit import build_qr

        matrix = np.array(build_qr(symbol.text, border=4).get_matrix(), dtype=bool)
    else:
        bars = ean13_modules(symbol.text)
        row = np.array([c == "1" for c in "0" * 11 + bars + "0" * 7], dtype=bool)
        # Bars 60% as tall as the code is wide, as on packaging.
        matrix = np.tile(row, (max(1, int(len(row) * 0.6)), 1))
    light = np.where(matrix, 0, 255).astype(np.uint8)
    block = np.ones((symbol.module_px, symbol.module_px), dtype=np.uint8)
    out: Frame = np.kron(light, block).astype(np.uint8)
    return out


def background(width: int, height: int, seed: int = 0) -> Frame:
    """An empty counter: a lighting gradient and a few darker objects, fixed per seed."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    base = 150 + 50 * (xs / width) - 30 * (ys / height)
    img = np.repeat(base[:, :, None], 3, axis=2)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        w, h = int(rng.integers(width // 12, width // 4)), int(rng.integers(height // 12,
                                                                            height // 4))
        color = tuple(float(c) for c in rng.integers(40, 200, size=3))
        cv2.rectangle(img, (x0, y0), (x0 + w, y0 + h), color, thickness=-1)
    out: Frame = np.clip(img, 0, 255).astype(np.uint8)
    return out


def scene(back: Frame, symbol: Symbol | None = None, *, center: tuple[float, float] = (0.5, 0.5),
          angle: float = 0.0, noise: float = 4.0, seed: int = 0) -> Frame:
    """One camera frame: ``back`` with ``symbol`` (if any) on a white card, blurred and noisy.

    ``center`` is the symbol's centre as fractions of the frame, ``angle`` its rotation in
    degrees, ``noise`` the sensor noise's standard deviation in grey levels; ``seed`` fixes
    the noise, so frames differ only where asked.
    """
    import cv2
    import numpy as np

    frame = back.copy()
    height, width = frame.shape[:2]
    if symbol is not None:
        mask = symbol_mask(symbol)
        mh, mw = mask.shape
        cx, cy = center[0] * width, center[1] * height
        # Rotate the symbol about its own centre, then move it to (cx, cy); the card
        # outside the symbol stays white, the rest of the frame untouched.
        m = cv2.getRotationMatrix2D((mw / 2, mh / 2), angle, 1.0)
        m[0, 2] += cx - mw / 2
        m[1, 2] += cy - mh / 2
        card = cv2.warpAffine(mask, m, (width, height), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        where = cv2.warpAffine(np.full_like(mask, 255), m, (width, height),
                               flags=cv2.INTER_NEAREST, borderValue=0) > 0
        shade = (card.astype(np.float32) * 0.85 + 25)[:, :, None]  # paper is not pure white
        frame = np.where(where[:, :, None], shade, frame).astype(np.uint8)
    frame = cast("Frame", cv2.GaussianBlur(frame, (3, 3), 0.8))
    rng = np.random.default_rng(seed)
    noisy = frame.astype(np.float32) + rng.normal(0.0, noise, frame.shape).astype(np.float32)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def write_video(path: Path, frames: Iterable[Frame], fps: float = 15.0) -> int:
    """Write BGR frames (all the same size) to an MJPG ``.avi``; return how many.

    Raises:
        OSError: OpenCV could not open the file for writing or no frame was given.
    """
    import cv2

    writer: Any = None
    count = 0
    try:
        for frame in frames:
            if writer is None:
                height, width = frame.shape[:2]
                fourcc = cv2.VideoWriter.fourcc(*"MJPG")
                writer = cv2.VideoWriter(str(path), fourcc, fps, (width, height))
                if not writer.isOpened():
                    raise OSError(f"OpenCV cannot write MJPG video to {path}")
            writer.write(frame)
            count += 1
    finally:
        if writer is not None:
            writer.release()
    if count == 0:
        raise OSError(f"no frames to write to {path}")
    return count
