"""Turn a :class:`~edge.printdoc.Document` into ESC/POS bytes for one printer profile.

The encoding is the profile's, never guessed from the text:

* ``gb18030`` / ``gbk`` / ``big5``: Kanji mode on (``FS &``) and the text in that codec;
  a line the codec cannot hold (simplified Chinese on a Big5 printer) is drawn as an image.
* ``utf-8``: ``FS ( C`` selects UTF-8 (Epson TM firmware with UTF-8 support).
* ``image``: every line that is not plain ASCII is drawn with the CJK font and sent as a
  raster (``GS v 0``), for printers without a Chinese font.

QR symbols are built with :func:`edge.qrfit.build_qr` (ECC M, the same version the card
size check computed), with square modules of a whole number of dots sized to the paper and
a quiet zone of 4 modules on every side: as ``GS ( k`` when the profile has native QR
(the printer draws no quiet zone, so it is made with centring and dot feeds), otherwise as
a raster image that includes the quiet zone.

Bytes are built here rather than through python-escpos's printer methods: those encode text
by guessing, default the image QR to a 1-module border, and importing them costs ~100 ms.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Iterator

from PIL import Image, ImageDraw, ImageFont
from qrcode import QRCode
from qrcode.exceptions import DataOverflowError

from drivers.printer_profile import CJK_FONT, PrinterProfile, TextEncoding
from edge.printdoc import QR, Align, Cut, Document, Feed, Rule, Text
from edge.qrfit import build_qr

ESC, GS, FS, DLE, LF = b"\x1b", b"\x1d", b"\x1c", b"\x10", b"\n"
INIT = ESC + b"@"
KANJI_ON, KANJI_OFF = FS + b"&", FS + b"."
UTF8_ON = FS + b"(C\x02\x000\x02"  # FS ( C fn=48 m=2: UTF-8 encoding system
CUT = GS + b"VB\x00"  # feed to the cutter and partial-cut
ALIGN = {Align.LEFT: ESC + b"a\x00", Align.CENTER: ESC + b"a\x01", Align.RIGHT: ESC + b"a\x02"}
QR_QUIET_MODULES = 4
RASTER_BAND = 255  # rows per GS v 0 command: small enough for every printer's buffer
MIN_MODULE_DOTS = 3  # 0.375 mm: smaller modules blur on thermal paper for phone cameras
TEXT_PX = 24  # the printer's Font A is 12x24 dots: a CJK glyph is 24x24


class RenderError(ValueError):
    """A document cannot be printed on this profile (a QR too big for the paper, ...)."""


def _width(ch: str) -> int:
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def text_width(text: str) -> int:
    """Columns ``text`` takes in the printer's normal font (CJK characters take two)."""
    return sum(_width(c) for c in text)


def wrap(text: str, columns: int) -> list[str]:
    """Split ``text`` into lines of at most ``columns`` columns.

    A line breaks at its last space when it holds one, else between characters (Chinese
    has no spaces to break at).
    """
    lines: list[str] = []
    line = ""
    for ch in text:
        if text_width(line + ch) <= columns:
            line += ch
            continue
        cut = line.rfind(" ")
        if cut > 0 and ch != " ":
            lines.append(line[:cut].rstrip())
            line = line[cut + 1:] + ch
        else:
            lines.append(line.rstrip())
            line = "" if ch == " " else ch
    if line.strip() or not lines:
        lines.append(line.rstrip())
    return lines


@functools.lru_cache(maxsize=4)
def _font(px: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(CJK_FONT), px)


def text_image(text: str, size: int, align: Align, bold: bool, dots: int) -> Image.Image:
    """One line of text drawn with the CJK font, ``dots`` wide, 1-bit (0 = ink)."""
    px = TEXT_PX * size
    font = _font(px)
    img = Image.new("L", (dots, px + 6 * size), 255)
    draw = ImageDraw.Draw(img)
    length = draw.textlength(text, font=font)
    x = {Align.LEFT: 0.0, Align.CENTER: (dots - length) / 2, Align.RIGHT: dots - length}[align]
    draw.text((max(0.0, x), 2 * size), text, font=font, fill=0,
              stroke_width=1 if bold else 0, stroke_fill=0)
    return img.point(lambda v: 0 if v < 128 else 255).convert("1")


def raster(img: Image.Image) -> bytes:
    """``GS v 0`` commands for a 1-bit image (black = ink), in bands of at most 255 rows."""
    mono = img.convert("1")
    width_bytes = (mono.width + 7) // 8
    padded = Image.new("1", (width_bytes * 8, mono.height), 1)
    padded.paste(mono, (0, 0))
    # PIL's "1" packs white as 1; the printer wants ink as 1.
    data = bytes(b ^ 0xFF for b in padded.tobytes())
    out = bytearray()
    for top in range(0, mono.height, RASTER_BAND):
        rows = min(RASTER_BAND, mono.height - top)
        out += GS + b"v0\x00" + width_bytes.to_bytes(2, "little") + rows.to_bytes(2, "little")
        out += data[top * width_bytes:(top + rows) * width_bytes]
    return bytes(out)


def _fit_qr(data: str, profile: PrinterProfile) -> tuple[QRCode, int]:
    """The symbol for ``data`` and its module size in dots on this paper.

    Raises:
        RenderError: no QR holds ``data``, or with its quiet zone it does not fit the paper.
    """
    try:
        qr = build_qr(data, border=QR_QUIET_MODULES)
        modules = int(qr.modules_count)
    except (DataOverflowError, ValueError) as exc:  # qrcode raises ValueError past v40 too
        raise RenderError(f"QR data of {len(data)} characters does not fit any QR: {exc}") \
            from None
    module = min(profile.max_module_dots, profile.dots // (modules + 2 * QR_QUIET_MODULES))
    if module < MIN_MODULE_DOTS:
        raise RenderError(f"a {modules}-module QR with its quiet zone is wider than "
                          f"{profile.dots} dots of {profile.paper_mm} mm paper allow at "
                          f"{MIN_MODULE_DOTS} dots a module")
    return qr, module


def qr_module_dots(data: str, profile: PrinterProfile) -> tuple[int, int]:
    """(module size in dots, modules per side without quiet zone) for ``data`` on paper.

    Raises:
        RenderError: the symbol with its quiet zone does not fit the paper width.
    """
    qr, module = _fit_qr(data, profile)
    return module, int(qr.modules_count)


def qr_image(data: str, profile: PrinterProfile) -> Image.Image:
    """The QR symbol with a 4-module quiet zone, centred on a paper-wide 1-bit image."""
    qr, module = _fit_qr(data, profile)
    qr.box_size = module  # building the symbol is the costly part: done once, drawn here
    symbol = qr.make_image().get_image().convert("1")
    canvas = Image.new("1", (profile.dots, symbol.height), 1)
    canvas.paste(symbol, ((profile.dots - symbol.width) // 2, 0))
    return canvas


def resync_bytes(profile: PrinterProfile) -> bytes:
    """What to send before the next job when the last one was cut off mid-write.

    The printer may be inside a command waiting for its data (a raster band, a QR payload).
    NUL bytes complete any such command (as blank image rows) and are ignored as text: one
    full raster band's worth covers the largest command this renderer sends. Then ``ESC @``,
    a feed and a cut separate the half-printed slip from the next one.
    """
    band = (profile.dots // 8) * RASTER_BAND
    return b"\x00" * band + INIT + ESC + b"d\x03" + CUT


def _gs_k(fn: int, payload: bytes) -> bytes:
    body = b"1" + bytes([fn]) + payload  # cn=49: QR Code
    return GS + b"(k" + len(body).to_bytes(2, "little") + body


def qr_native(data: str, profile: PrinterProfile) -> bytes:
    """``GS ( k`` commands (model 2, ECC M) with the quiet zone made by feeds and centring."""
    _, module = _fit_qr(data, profile)
    quiet = ESC + b"J" + bytes([QR_QUIET_MODULES * module])
    return (ALIGN[Align.CENTER] + quiet
            + _gs_k(0x41, b"2\x00")  # model 2
            + _gs_k(0x43, bytes([module]))  # module size in dots
            + _gs_k(0x45, b"1")  # ECC M
            + _gs_k(0x50, b"0" + data.encode("utf-8"))  # store the data
            + _gs_k(0x51, b"0")  # print the symbol
            + quiet + ALIGN[Align.LEFT])


def _mode(size: int, bold: bool, kanji: bool) -> bytes:
    n = 0x11 if size == 2 else 0x00
    out = GS + b"!" + bytes([n]) + ESC + b"E" + (b"\x01" if bold else b"\x00")
    if kanji:  # some Chinese firmwares size Kanji only through FS !
        out += FS + b"!" + (b"\x0c" if size == 2 else b"\x00")
    return out


def _text_lines(block: Text, profile: PrinterProfile) -> Iterator[bytes]:
    enc = profile.encoding
    kanji = enc in (TextEncoding.GB18030, TextEncoding.GBK, TextEncoding.BIG5)
    for line in wrap(block.text, profile.columns // block.size):
        encoded: bytes | None = None
        if enc is not TextEncoding.IMAGE or line.isascii():
            try:
                encoded = line.encode(enc.codec)
            except UnicodeEncodeError:
                encoded = None  # the printer's codec lacks a character: draw the line
        if encoded is None:
            img = text_image(line, block.size, block.align, block.bold, profile.dots)
            yield ALIGN[Align.LEFT] + raster(img)
        else:
            yield (ALIGN[block.align] + _mode(block.size, block.bold, kanji) + encoded + LF
                   + _mode(1, False, kanji))


def render(doc: Document, profile: PrinterProfile) -> bytes:
    """The ESC/POS bytes that print ``doc`` on a printer with ``profile``.

    Every job starts with ``ESC @`` (reset modes left by a previous job) and selects the
    profile's text encoding.

    Raises:
        RenderError: a block cannot be printed on this paper (a QR too large).
    """
    out = bytearray(INIT)
    enc = profile.encoding
    if enc in (TextEncoding.GB18030, TextEncoding.GBK, TextEncoding.BIG5):
        out += KANJI_ON
    elif enc is TextEncoding.UTF8:
        out += UTF8_ON
    for block in doc.blocks:
        if isinstance(block, Text):
            for chunk in _text_lines(block, profile):
                out += chunk
        elif isinstance(block, QR):
            if profile.native_qr:
                out += qr_native(block.data, profile)
            else:
                out += ALIGN[Align.LEFT] + raster(qr_image(block.data, profile))
        elif isinstance(block, Rule):
            out += ALIGN[Align.LEFT] + b"-" * profile.columns + LF
        elif isinstance(block, Feed):
            out += ESC + b"d" + bytes([block.lines])
        elif isinstance(block, Cut):
            out += CUT
    if enc in (TextEncoding.GB18030, TextEncoding.GBK, TextEncoding.BIG5):
        out += KANJI_OFF
    return bytes(out)
