"""Read an ESC/POS byte stream back: text lines, cuts, native QR payloads and raster images.

The simulator's paper preview (:func:`to_png`, ``edge preview``) and the printer tests use
it. It understands exactly the commands :mod:`drivers.escpos_render` writes plus the
real-time status request; anything else is a :class:`DecodeError` naming the offset, so a
renderer change that emits an unknown command fails the tests instead of being skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import qrcode
import qrcode.constants
from PIL import Image, ImageDraw

from drivers.escpos_render import TEXT_PX, _font
from edge.printdoc import Align

_ALIGNS = {0: Align.LEFT, 1: Align.CENTER, 2: Align.RIGHT, 48: Align.LEFT, 49: Align.CENTER,
           50: Align.RIGHT}


class DecodeError(ValueError):
    """The stream holds an unknown or truncated command, or text not in the encoding."""


@dataclass(frozen=True, slots=True)
class TextLine:
    """One printed line of text and the modes it was printed in."""

    text: str
    align: Align
    bold: bool
    size: int


@dataclass(frozen=True, slots=True)
class Raster:
    """A ``GS v 0`` image (1-bit, black = ink)."""

    image: Image.Image


@dataclass(frozen=True, slots=True)
class NativeQR:
    """A ``GS ( k`` symbol as the printer would draw it."""

    data: str
    module_dots: int
    ecc: str  # L, M, Q or H


@dataclass(frozen=True, slots=True)
class FeedDots:
    """Blank paper, in dots."""

    dots: int


@dataclass(frozen=True, slots=True)
class CutMark:
    """A paper cut."""


Item = TextLine | Raster | NativeQR | FeedDots | CutMark


@dataclass
class Decoded:
    """Everything a stream prints, in order."""

    items: list[Item] = field(default_factory=list)
    status_requests: list[int] = field(default_factory=list)  # DLE EOT n values

    @property
    def lines(self) -> list[TextLine]:
        """The text lines."""
        return [i for i in self.items if isinstance(i, TextLine)]

    @property
    def text(self) -> str:
        """All text lines joined by newlines."""
        return "\n".join(line.text for line in self.lines)

    @property
    def cuts(self) -> int:
        """How many cuts."""
        return sum(isinstance(i, CutMark) for i in self.items)

    @property
    def qr_codes(self) -> list[NativeQR]:
        """Native QR symbols printed."""
        return [i for i in self.items if isinstance(i, NativeQR)]

    @property
    def rasters(self) -> list[Image.Image]:
        """Raster images, as 1-bit PIL images."""
        return [i.image for i in self.items if isinstance(i, Raster)]


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise DecodeError(f"truncated {what} at offset {self.pos}: needs {n} bytes, "
                              f"{len(self.data) - self.pos} left")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def byte(self, what: str) -> int:
        return self.take(1, what)[0]


_ECC = {48: "L", 49: "M", 50: "Q", 51: "H"}


def decode(stream: bytes, encoding: str = "gb18030", strict: bool = True) -> Decoded:
    """Parse ``stream``; text bytes are decoded with ``encoding`` (``FS ( C`` switches to UTF-8).

    With ``strict`` false, undecodable text becomes U+FFFD instead of an error (the preview).

    Raises:
        DecodeError: an unknown or truncated command, or (strict) text not in ``encoding``.
    """
    r = _Reader(stream)
    out = Decoded()
    align, bold, size = Align.LEFT, False, 1
    text = bytearray()
    qr_data, qr_module, qr_ecc = b"", 3, "L"

    def flush(start: int) -> None:
        try:
            line = bytes(text).decode(encoding, "strict" if strict else "replace")
        except UnicodeDecodeError as exc:
            raise DecodeError(f"text at offset {start} is not {encoding}: {exc}") from None
        out.items.append(TextLine(line, align, bold, size))
        text.clear()

    text_start = 0
    while r.pos < len(stream):
        at = r.pos
        b = r.byte("byte")
        if b == 0x0A:
            flush(text_start)
        elif b in (0x0D, 0x00):  # CR and NUL print nothing (NUL pads a resync)
            continue
        elif b == 0x1B:
            cmd = r.byte("ESC command")
            if cmd == ord("@"):
                align, bold, size = Align.LEFT, False, 1
            elif cmd == ord("a"):
                align = _ALIGNS.get(r.byte("ESC a"), Align.LEFT)
            elif cmd == ord("E"):
                bold = bool(r.byte("ESC E") & 1)
            elif cmd == ord("J"):
                out.items.append(FeedDots(r.byte("ESC J")))
            elif cmd == ord("d"):
                out.items.append(FeedDots(r.byte("ESC d") * 30))
            elif cmd in (ord("t"), ord("!"), ord("M"), ord("-")):
                r.byte(f"ESC {chr(cmd)}")
            else:
                raise DecodeError(f"unknown command ESC 0x{cmd:02x} at offset {at}")
        elif b == 0x1D:
            cmd = r.byte("GS command")
            if cmd == ord("!"):
                n = r.byte("GS !")
                size = max((n >> 4) & 7, n & 7) + 1
            elif cmd == ord("V"):
                m = r.byte("GS V")
                if m in (65, 66, 97, 98, 103, 104):
                    r.byte("GS V n")
                out.items.append(CutMark())
            elif cmd == ord("v"):
                head = r.take(6, "GS v 0 header")
                if head[0] != ord("0"):
                    raise DecodeError(f"unknown command GS v 0x{head[0]:02x} at offset {at}")
                width = int.from_bytes(head[2:4], "little")
                height = int.from_bytes(head[4:6], "little")
                bits = r.take(width * height, "GS v 0 image data")
                img = Image.frombytes("1", (width * 8, height), bytes(x ^ 0xFF for x in bits))
                prev = out.items[-1] if out.items else None
                if isinstance(prev, Raster) and prev.image.width == img.width:
                    # Bands sent back to back are one picture on paper (a tall QR is sent
                    # in 255-row bands).
                    both = Image.new("1", (img.width, prev.image.height + height), 1)
                    both.paste(prev.image, (0, 0))
                    both.paste(img, (0, prev.image.height))
                    out.items[-1] = Raster(both)
                else:
                    out.items.append(Raster(img))
            elif cmd == ord("("):
                fn_class = r.byte("GS ( class")
                plen = int.from_bytes(r.take(2, "GS ( length"), "little")
                body = r.take(plen, "GS ( body")
                if fn_class != ord("k") or len(body) < 2 or body[0] != 0x31:
                    raise DecodeError(f"unsupported GS ( {chr(fn_class)} at offset {at}")
                fn = body[1]
                if fn == 0x43:
                    qr_module = body[2]
                elif fn == 0x45:
                    qr_ecc = _ECC.get(body[2], "?")
                elif fn == 0x50:
                    qr_data = body[3:]
                elif fn == 0x51:
                    out.items.append(NativeQR(qr_data.decode("utf-8", "replace"), qr_module,
                                              qr_ecc))
            else:
                raise DecodeError(f"unknown command GS 0x{cmd:02x} at offset {at}")
        elif b == 0x1C:
            cmd = r.byte("FS command")
            if cmd == ord("!"):
                r.byte("FS !")
            elif cmd == ord("("):
                fn_class = r.byte("FS ( class")
                plen = int.from_bytes(r.take(2, "FS ( length"), "little")
                body = r.take(plen, "FS ( body")
                if fn_class == ord("C") and body[:1] == b"0" and body[1:2] == b"\x02":
                    encoding = "utf-8"
            elif cmd not in (ord("&"), ord(".")):
                raise DecodeError(f"unknown command FS 0x{cmd:02x} at offset {at}")
        elif b == 0x10:
            if r.byte("DLE command") != 0x04:
                raise DecodeError(f"unknown command DLE at offset {at}")
            out.status_requests.append(r.byte("DLE EOT n"))
        elif b < 0x20:
            raise DecodeError(f"unknown control byte 0x{b:02x} at offset {at}")
        else:
            if not text:
                text_start = at
            text.append(b)
    if text:
        flush(text_start)
    return out


def qr_symbol(data: str, module_dots: int, ecc: str = "M", border: int = 4) -> Image.Image:
    """Re-render a native QR payload as the printer would, with a ``border``-module margin."""
    level = {"L": qrcode.constants.ERROR_CORRECT_L, "M": qrcode.constants.ERROR_CORRECT_M,
             "Q": qrcode.constants.ERROR_CORRECT_Q, "H": qrcode.constants.ERROR_CORRECT_H}
    qr = qrcode.QRCode(error_correction=level.get(ecc, qrcode.constants.ERROR_CORRECT_M),
                       border=border, box_size=max(1, module_dots))
    qr.add_data(data)
    qr.make(fit=True)
    img: Image.Image = qr.make_image().get_image().convert("1")
    return img


def last_slips(items: list[Item], n: int) -> list[Item]:
    """The items of the last ``n`` slips (a slip ends at a cut)."""
    cuts = [i for i, item in enumerate(items) if isinstance(item, CutMark)]
    if n <= 0 or len(cuts) < n:
        return items
    start = cuts[-n - 1] + 1 if len(cuts) > n else 0
    return items[start:]


def to_png(stream: bytes, encoding: str = "gb18030", width_dots: int = 384,
           last: int = 0) -> Image.Image:
    """A picture of the paper ``stream`` would print (the simulator's preview).

    Text is drawn with the CJK font, rasters pasted as sent, native QR re-rendered, cuts
    shown as dashed lines. Undecodable text shows as U+FFFD rather than failing. ``last``
    above 0 keeps only the last that many slips.

    Raises:
        DecodeError: an unknown or truncated command.
    """
    decoded = decode(stream, encoding, strict=False)
    parts: list[Image.Image] = []
    for item in last_slips(decoded.items, last):
        if isinstance(item, TextLine):
            px = TEXT_PX * item.size
            img = Image.new("L", (width_dots, px + 6 * item.size), 255)
            draw = ImageDraw.Draw(img)
            font = _font(px)
            length = draw.textlength(item.text, font=font)
            x = {Align.LEFT: 0.0, Align.CENTER: (width_dots - length) / 2,
                 Align.RIGHT: width_dots - length}[item.align]
            if item.text and set(item.text) == {"-"}:  # a rule: the printer's is full width
                draw.line([(0, img.height // 2), (width_dots, img.height // 2)], fill=0)
                parts.append(img)
                continue
            draw.text((max(0.0, x), 2 * item.size), item.text, font=font, fill=0,
                      stroke_width=1 if item.bold else 0, stroke_fill=0)
            parts.append(img)
        elif isinstance(item, Raster):
            parts.append(item.image.convert("L"))
        elif isinstance(item, NativeQR):
            # The printer draws no quiet zone; the renderer's centring and dot feeds make it.
            sym = qr_symbol(item.data, item.module_dots, item.ecc, border=0).convert("L")
            img = Image.new("L", (width_dots, sym.height), 255)
            img.paste(sym, ((width_dots - sym.width) // 2, 0))
            parts.append(img)
        elif isinstance(item, FeedDots):
            parts.append(Image.new("L", (width_dots, max(1, item.dots)), 255))
        else:
            img = Image.new("L", (width_dots, 9), 255)
            draw = ImageDraw.Draw(img)
            for x in range(0, width_dots, 12):
                draw.line([(x, 4), (x + 6, 4)], fill=0)
            parts.append(img)
    height = sum(p.height for p in parts) or 1
    paper = Image.new("L", (width_dots, height), 255)
    y = 0
    for p in parts:
        paper.paste(p, (0, y))
        y += p.height
    return paper
