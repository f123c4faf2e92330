"""Base41: RFC 9285 (base45) block layout over a URL-safe QR-alphanumeric alphabet.

Base45's alphabet contains space, ``%`` and ``+``, which break inside URLs and get
trimmed or mangled by keyboard-wedge scanners. Dropping them (and ``/``, so a token is
one URL path segment) leaves 41 symbols; 41**3 >= 2**16 and 41**2 >= 2**8, so the
same 2-bytes-to-3-chars blocks still work and the density equals base45's while
every character stays in QR alphanumeric mode.
"""

from __future__ import annotations

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ$*-.:"
_BASE = len(ALPHABET)
_INDEX = {c: i for i, c in enumerate(ALPHABET)}


class Base41Error(ValueError):
    """The text is not valid base41."""


def encode(data: bytes) -> str:
    """Encode bytes: each 2-byte block to 3 symbols, a trailing byte to 2."""
    out: list[str] = []
    for i in range(0, len(data) - 1, 2):
        n = data[i] * 256 + data[i + 1]
        c, n = n % _BASE, n // _BASE
        d, e = n % _BASE, n // _BASE
        out += (ALPHABET[c], ALPHABET[d], ALPHABET[e])
    if len(data) % 2:
        n = data[-1]
        out += (ALPHABET[n % _BASE], ALPHABET[n // _BASE])
    return "".join(out)


def decode(text: str) -> bytes:
    """Decode base41 text strictly.

    Raises:
        Base41Error: on a symbol outside the alphabet, a length of 1 mod 3, or a block
            whose value does not fit its byte count (non-canonical encodings are refused
            so each byte string has exactly one text form).
    """
    if len(text) % 3 == 1:
        raise Base41Error("length is not a whole number of blocks")
    try:
        values = [_INDEX[c] for c in text]
    except KeyError as exc:
        raise Base41Error(f"character {exc.args[0]!r} is not base41") from None
    out = bytearray()
    for i in range(0, len(values) - 2, 3):
        n = values[i] + values[i + 1] * _BASE + values[i + 2] * _BASE * _BASE
        if n > 0xFFFF:
            raise Base41Error("block value out of range")
        out += n.to_bytes(2, "big")
    if len(values) % 3 == 2:
        n = values[-2] + values[-1] * _BASE
        if n > 0xFF:
            raise Base41Error("final block value out of range")
        out.append(n)
    return bytes(out)
