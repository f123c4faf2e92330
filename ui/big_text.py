"""Headlines in block letters, so a verdict reads from a metre away.

A headline (通过, REJECTED, ...) is drawn with the system's CJK font into a small bitmap
and turned into ``█ ▀ ▄`` cells, two pixel rows per text row. Those three characters are
in every Linux console font, so the big headline shows even on tty1, where the console
cannot draw Chinese characters at all. Pillow (already installed for python-escpos) and
fonts-wqy-microhei (already in the Makefile's packages) do the drawing; without either,
:func:`block_lines` returns ``None`` and the panel falls back to spaced-out text.
"""

from __future__ import annotations

import functools
from pathlib import Path

FONT_PATHS = (
    Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),
    Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"),
)
# Of 255: anti-aliased pixels darker than this stay blank. CJK strokes are thin at these
# sizes, so a lower cut keeps them (and the glyph readable); Latin reads best crisp.
_THRESHOLD_CJK = 60
_THRESHOLD_LATIN = 110
_SIZES_CJK = (16, 14, 12)  # pixels; 16 px is 8 text rows
_SIZES_LATIN = (14, 12)


def _font_path() -> Path | None:
    return next((p for p in FONT_PATHS if p.exists()), None)


@functools.lru_cache(maxsize=64)
def block_lines(text: str, max_width: int) -> tuple[str, ...] | None:
    """``text`` as rows of block characters at most ``max_width`` columns wide.

    Returns ``None`` when no font or Pillow is available, or the text will not fit.
    """
    path = _font_path()
    if path is None or not text:
        return None
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        return None
    sizes = _SIZES_LATIN if text.isascii() else _SIZES_CJK
    cut = _THRESHOLD_LATIN if text.isascii() else _THRESHOLD_CJK
    for size in sizes:
        font = ImageFont.truetype(str(path), size)
        left, top, right, bottom = font.getbbox(text)
        width, height = int(right - left), int(bottom - top)
        if width > max_width:
            continue
        img = Image.new("L", (width, height + height % 2), 0)
        ImageDraw.Draw(img).text((-left, -top), text, font=font, fill=255)
        px = img.load()
        assert px is not None
        rows = []
        for y in range(0, img.height, 2):
            row = []
            for x in range(width):
                up, down = _on(px[x, y], cut), _on(px[x, y + 1], cut)
                row.append("█" if up and down else "▀" if up else "▄" if down else " ")
            rows.append("".join(row).rstrip())
        while rows and not rows[-1]:
            rows.pop()
        while rows and not rows[0]:
            rows.pop(0)
        return tuple(rows)
    return None


def _on(value: object, cut: int) -> bool:
    return isinstance(value, int) and value > cut
