"""What a receipt printer can do, as data: paper width, text encoding, native QR, dot pitch.

Chosen per printer in the box config (``[printer]`` table), e.g.::

    [printer]
    url = "tcp://192.168.1.50:9100"
    paper_mm = 58
    encoding = "gb18030"   # gb18030 | gbk | big5 | utf-8 | image
    native_qr = true

python-escpos guesses an encoding from the text (GB18030 for any CJK ideograph); a printer
set to Big5, or one without Chinese fonts, then prints garbage. Here the encoding is the
printer's, said once in config, and a test page shows it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CJK_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")

# Paper width -> printable dots and Font A (12x24) columns at 203 dpi.
PAPER: dict[int, tuple[int, int]] = {58: (384, 32), 80: (576, 48)}


class ProfileError(ValueError):
    """A printer profile in config is wrong; the message names the key and the choices."""


class TextEncoding(enum.StrEnum):
    """How the printer is told Chinese text.

    ``IMAGE`` renders every line that is not plain ASCII as a raster with :data:`CJK_FONT`
    (for printers with no Chinese font at all).
    """

    GB18030 = "gb18030"
    GBK = "gbk"
    BIG5 = "big5"
    UTF8 = "utf-8"
    IMAGE = "image"

    @property
    def codec(self) -> str:
        """The Python codec for the text bytes (ASCII for image mode's plain lines)."""
        return "ascii" if self is TextEncoding.IMAGE else self.value


@dataclass(frozen=True, slots=True)
class PrinterProfile:
    """One printer's capabilities.

    ``dots``/``columns`` follow from ``paper_mm``; ``dot_mm`` is the dot pitch (0.125 mm at
    203 dpi), used to size QR modules; ``max_module_dots`` caps a QR module's size so a short
    URL does not fill a whole 80 mm slip.
    """

    paper_mm: int = 58
    encoding: TextEncoding = TextEncoding.GB18030
    native_qr: bool = True
    dot_mm: float = 0.125
    max_module_dots: int = 8
    name: str = "generic"

    def __post_init__(self) -> None:
        if self.paper_mm not in PAPER:
            raise ProfileError(f"paper_mm must be one of {sorted(PAPER)}, not {self.paper_mm!r}")
        if not 0.05 <= self.dot_mm <= 0.5:
            raise ProfileError(f"dot_mm {self.dot_mm!r} is not a receipt printer's dot pitch")
        if not 1 <= self.max_module_dots <= 16:
            raise ProfileError(f"max_module_dots must be 1-16, not {self.max_module_dots!r}")

    @property
    def dots(self) -> int:
        """Printable width in dots."""
        return PAPER[self.paper_mm][0]

    @property
    def columns(self) -> int:
        """Characters per line in the normal font (a CJK character takes two)."""
        return PAPER[self.paper_mm][1]

    @property
    def line_dots(self) -> int:
        """Height of one normal text line in dots (24-dot font plus the default spacing)."""
        return 30

    @classmethod
    def from_config(cls, table: dict[str, Any]) -> PrinterProfile:
        """Build a profile from the config's ``[printer]`` table.

        Unknown keys are ignored: the transport's keys live in the same table.

        Raises:
            ProfileError: a value is of the wrong type or not one of the choices.
        """
        paper = table.get("paper_mm", 58)
        enc = table.get("encoding", TextEncoding.GB18030.value)
        native = table.get("native_qr", True)
        dot_mm = table.get("dot_mm", 0.125)
        module = table.get("max_module_dots", 8)
        name = table.get("name", "generic")
        if not isinstance(paper, int) or isinstance(paper, bool):
            raise ProfileError(f"printer.paper_mm must be 58 or 80, not {paper!r}")
        try:
            encoding = TextEncoding(str(enc).lower())
        except ValueError:
            raise ProfileError(f"printer.encoding {enc!r} is not one of "
                               f"{[e.value for e in TextEncoding]}") from None
        if not isinstance(native, bool):
            raise ProfileError(f"printer.native_qr must be true or false, not {native!r}")
        if not isinstance(dot_mm, int | float) or isinstance(dot_mm, bool):
            raise ProfileError(f"printer.dot_mm must be a number, not {dot_mm!r}")
        if not isinstance(module, int) or isinstance(module, bool):
            raise ProfileError(f"printer.max_module_dots must be an integer, not {module!r}")
        return cls(paper, encoding, native, float(dot_mm), module, str(name))
