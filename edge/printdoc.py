"""A neutral layout language for printed slips: what goes on paper, not how a printer says it.

A :class:`Document` is a list of blocks (text lines, a QR symbol, a rule, feeds, a cut). The
slip templates (:mod:`edge.slips`) build them; the print queue stores them as JSON; the
printer driver (``drivers.escpos_render``) turns one into ESC/POS bytes for a given printer
profile. Nothing here knows paper widths or encodings.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any


class DocumentError(ValueError):
    """A document or its JSON form is malformed; the message says which block and why."""


class Align(enum.StrEnum):
    """Horizontal alignment of a text line."""

    LEFT = "left"
    CENTER = "center"
    RIGHT = "right"


@dataclass(frozen=True, slots=True)
class Text:
    """One paragraph of text; the renderer wraps it to the paper width.

    ``size`` 2 is double width and double height.
    """

    text: str
    size: int = 1
    align: Align = Align.LEFT
    bold: bool = False

    def __post_init__(self) -> None:
        if self.size not in (1, 2):
            raise DocumentError(f"text size must be 1 or 2, not {self.size!r}")
        if not isinstance(self.text, str):
            raise DocumentError(f"text must be a string, not {type(self.text).__name__}")
        if any(c in self.text for c in "\r\n\x00\x1b\x1c\x1d\x10"):
            # Control bytes inside text would be read by the printer as commands.
            raise DocumentError(f"text {self.text[:20]!r} contains a line break or control "
                                "character: use one Text per line")


@dataclass(frozen=True, slots=True)
class QR:
    """A QR symbol (ECC M) holding ``data``, centred, with a 4-module quiet zone."""

    data: str

    def __post_init__(self) -> None:
        if not isinstance(self.data, str) or not self.data:
            raise DocumentError("QR data must be a non-empty string")


@dataclass(frozen=True, slots=True)
class Rule:
    """A horizontal separator across the paper."""


@dataclass(frozen=True, slots=True)
class Feed:
    """Blank paper: ``lines`` empty lines (1-20)."""

    lines: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.lines, int) or not 1 <= self.lines <= 20:
            raise DocumentError(f"feed lines must be 1-20, not {self.lines!r}")


@dataclass(frozen=True, slots=True)
class Cut:
    """Cut the paper here (after feeding it past the cutter)."""


Block = Text | QR | Rule | Feed | Cut

_KINDS: dict[str, type[Text] | type[QR] | type[Rule] | type[Feed] | type[Cut]] = {
    "text": Text, "qr": QR, "rule": Rule, "feed": Feed, "cut": Cut}
_NAMES = {cls: name for name, cls in _KINDS.items()}


def _block_to_dict(block: Block) -> dict[str, Any]:
    d: dict[str, Any] = {"type": _NAMES[type(block)]}
    if isinstance(block, Text):
        d.update(text=block.text, size=block.size, align=block.align.value, bold=block.bold)
    elif isinstance(block, QR):
        d["data"] = block.data
    elif isinstance(block, Feed):
        d["lines"] = block.lines
    return d


def _block_from_dict(i: int, d: Any) -> Block:
    if not isinstance(d, dict) or d.get("type") not in _KINDS:
        raise DocumentError(f"block #{i}: not a block object with a known type: {d!r:.60}")
    kind = d["type"]
    try:
        if kind == "text":
            return Text(str(d["text"]), int(d.get("size", 1)), Align(d.get("align", "left")),
                        bool(d.get("bold", False)))
        if kind == "qr":
            return QR(str(d["data"]))
        if kind == "feed":
            return Feed(int(d.get("lines", 1)))
        return Rule() if kind == "rule" else Cut()
    except (KeyError, TypeError, ValueError) as exc:
        raise DocumentError(f"block #{i} ({kind}): {exc}") from None


@dataclass(frozen=True, slots=True)
class Document:
    """A slip to print: what kind of job it is (``card``, ``pickup``, ...) and its blocks."""

    job_kind: str
    blocks: list[Block] = field(default_factory=list)

    def to_json(self) -> str:
        """The document as compact JSON (the print queue stores this)."""
        return json.dumps({"job_kind": self.job_kind,
                           "blocks": [_block_to_dict(b) for b in self.blocks]},
                          ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Document:
        """Parse :meth:`to_json` output.

        Raises:
            DocumentError: not JSON, or a block is malformed (the message names it).
        """
        try:
            obj = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise DocumentError(f"document is not JSON: {exc}") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("job_kind"), str) \
                or not isinstance(obj.get("blocks"), list):
            raise DocumentError("document must be an object with job_kind and a blocks list")
        return cls(obj["job_kind"], [_block_from_dict(i, b) for i, b in enumerate(obj["blocks"])])

    def text_lines(self) -> list[str]:
        """Every text block's text, in order (for logs and tests)."""
        return [b.text for b in self.blocks if isinstance(b, Text)]
