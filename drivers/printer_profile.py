"""What a receipt printer can do, as data: paper width, text encoding, native QR, dot pitch.

Chosen per printer in the box config (``[printer]`` table), e.g.::

    [printer]
    url = "tcp://192.168.1.50:9100"
    model = "TM-T20II"     # optional: python-escpos's capabilities database fills in the
                           # paper width, dots, dpi and native QR support
    encoding = "gb18030"   # gb18030 | gbk | big5 | utf-8 | image
    native_qr = true       # explicit keys override what the model says

python-escpos guesses an encoding from the text (GB18030 for any CJK ideograph); a printer
set to Big5, or one without Chinese fonts, then prints garbage. Here the encoding is the
printer's, said once in config, and a test page shows it.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CJK_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")

# Paper width -> printable dots and Font A (12x24) columns at 203 dpi.
PAPER: dict[int, tuple[int, int]] = {58: (384, 32), 80: (576, 48)}
FONT_A_DOTS = 12  # Font A is 12 dots wide: a line holds dots // 12 characters
# Every key of the [printer] table this module reads (the transport reads url, absent_after).
PROFILE_KEYS = ("model", "paper_mm", "width_dots", "encoding", "native_qr", "dot_mm",
                "max_module_dots", "name")


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
    width_dots: int = 0  # printable dots when the model says (0: the paper's usual width)

    def __post_init__(self) -> None:
        if self.paper_mm not in PAPER:
            raise ProfileError(f"paper_mm must be one of {sorted(PAPER)}, not {self.paper_mm!r}")
        if not 0.05 <= self.dot_mm <= 0.5:
            raise ProfileError(f"dot_mm {self.dot_mm!r} is not a receipt printer's dot pitch")
        if not 1 <= self.max_module_dots <= 16:
            raise ProfileError(f"max_module_dots must be 1-16, not {self.max_module_dots!r}")
        if self.width_dots and not 256 <= self.width_dots <= 832:
            raise ProfileError(f"width_dots {self.width_dots!r} is not a receipt printer's")

    @property
    def dots(self) -> int:
        """Printable width in dots."""
        return self.width_dots or PAPER[self.paper_mm][0]

    @property
    def columns(self) -> int:
        """Characters per line in the normal font (a CJK character takes two)."""
        return self.dots // FONT_A_DOTS if self.width_dots else PAPER[self.paper_mm][1]

    @property
    def line_dots(self) -> int:
        """Height of one normal text line in dots (24-dot font plus the default spacing)."""
        return 30

    @classmethod
    def from_config(cls, table: dict[str, Any], home: Path | None = None) -> PrinterProfile:
        """Build a profile from the config's ``[printer]`` table.

        With ``model``, python-escpos's capabilities database gives the defaults (its
        parsed copy is cached under ``home``); the table's own keys override them. Unknown
        keys are ignored: the transport's keys live in the same table.

        Raises:
            ProfileError: an unknown model, or a value of the wrong type or not one of
                the choices.
        """
        model = table.get("model")
        if model is not None:
            table = {**escpos_model_defaults(str(model), home), **table}
        paper = table.get("paper_mm", 58)
        enc = table.get("encoding", TextEncoding.GB18030.value)
        native = table.get("native_qr", True)
        dot_mm = table.get("dot_mm", 0.125)
        module = table.get("max_module_dots", 8)
        name = table.get("name", "generic")
        width = table.get("width_dots", 0)
        if not isinstance(width, int) or isinstance(width, bool):
            raise ProfileError(f"printer.width_dots must be an integer, not {width!r}")
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
        return cls(paper, encoding, native, float(dot_mm), module, str(name), width)


def escpos_model_defaults(model: str, home: Path | None = None) -> dict[str, Any]:
    """What python-escpos's capabilities database says of a printer model, as table keys.

    Gives ``paper_mm`` (58 or 80, from the printable width), ``width_dots``, ``dot_mm``
    (from the dpi) and ``native_qr`` (its ``qrCode`` feature), as far as the database knows
    them, and ``name``.

    Raises:
        ProfileError: python-escpos does not know the model (the message lists some it does).
    """
    if home is not None:
        configure_escpos_cache(home, import_now=True)
    from escpos import capabilities  # lazily: ~60 ms even with its cache

    try:
        profile = capabilities.get_profile(model)
    except KeyError:
        known = sorted(capabilities.CAPABILITIES["profiles"])
        raise ProfileError(f"printer.model {model!r} is not in python-escpos's capabilities "
                           f"database (e.g. {', '.join(known[:8])}, ...)") from None
    media = profile.profile_data.get("media", {})
    width = media.get("width", {})
    out: dict[str, Any] = {"name": model, "native_qr": bool(profile.supports("qrCode"))}
    if isinstance(width.get("mm"), int | float):
        out["paper_mm"] = 58 if width["mm"] <= 60 else 80
    if isinstance(width.get("pixels"), int):
        out["width_dots"] = width["pixels"]
    if isinstance(media.get("dpi"), int | float) and media["dpi"] > 0:
        out["dot_mm"] = round(25.4 / media["dpi"], 4)
    return out


def configure_escpos_cache(home: Path, import_now: bool = False) -> Path:
    """Make python-escpos cache its parsed capabilities under ``home`` and leave no temp dir.

    python-escpos 3.1 parses ``capabilities.json`` with PyYAML on every import (~90 ms)
    unless ``ESCPOS_CAPABILITIES_PICKLE_DIR`` names a folder for its pickle, and it calls
    ``mkdtemp()`` on import even when that variable is set (it is the eagerly evaluated
    default of ``environ.get``), leaving one empty ``/tmp/tmpXXXX`` per process.

    This always sets the variable (for this process and the ones it starts); it costs
    nothing. With ``import_now`` it also imports escpos's capabilities once, with the temp
    folder pointed at the cache folder so the stray folder is made there and removed, and
    with escpos's import-time ``logging.basicConfig()`` kept from installing a root log
    handler. Only the printer model lookup (:func:`escpos_model_defaults`) imports escpos;
    the bytes are built by :mod:`drivers.escpos_render`. Returns the cache folder.
    """
    cache = home / "cache" / "escpos"
    cache.mkdir(parents=True, exist_ok=True)
    was_set = os.environ.get("ESCPOS_CAPABILITIES_PICKLE_DIR") == str(cache)
    os.environ["ESCPOS_CAPABILITIES_PICKLE_DIR"] = str(cache)
    if not import_now:
        return cache
    if "escpos.capabilities" in sys.modules:
        if not was_set:
            log.warning("python-escpos was imported before its cache was set; this process "
                        "parsed its capabilities file and left a temporary folder")
        return cache
    saved_tmp = tempfile.tempdir
    root = logging.getLogger()
    guard = logging.NullHandler()
    root.addHandler(guard)  # basicConfig() does nothing when the root has a handler
    try:
        tempfile.tempdir = str(cache)
        import escpos.capabilities  # noqa: F401 - import now, under the settings above
    except Exception as exc:  # a broken escpos install must not stop the daemon
        log.warning("python-escpos could not be imported: %s", exc)
    finally:
        tempfile.tempdir = saved_tmp
        root.removeHandler(guard)
        for stray in cache.glob("tmp*"):
            if stray.is_dir():
                with contextlib.suppress(OSError):
                    stray.rmdir()  # only the empty folder escpos made; never anything else
    return cache
