"""QR codes for phone screens: a 1-bit PNG as a ``data:`` URI, scaled by whole pixels."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

from edge.qrfit import build_qr

SCREEN_PX = 288  # the symbol's width on the page (CSS px), a little under a phone's width
MIN_PX_PER_MODULE = 4  # fewer and a till camera misses modules on a phone screen


@dataclass(frozen=True, slots=True)
class QrImage:
    """A QR symbol to put in an ``<img>``: its source and its width in CSS pixels."""

    src: str
    width: int


def qr_image(text: str) -> QrImage:
    """The ECC-M symbol for ``text`` with a 4-module quiet zone, as a ``data:`` PNG.

    The PNG holds one pixel per module (a few hundred bytes); the page scales it by a
    whole number with ``image-rendering: pixelated`` so modules stay sharp and square.
    """
    qr = build_qr(text, border=4, box_size=1)
    image = qr.make_image().get_image().convert("1")
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    modules = image.width
    scale = max(MIN_PX_PER_MODULE, SCREEN_PX // modules)
    return QrImage("data:image/png;base64," + base64.b64encode(buf.getvalue()).decode(),
                   modules * scale)
