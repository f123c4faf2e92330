"""How big a QR symbol a text needs: the check that keeps codes scannable from paper."""

from __future__ import annotations

import qrcode
import qrcode.constants
import qrcode.exceptions

CARD_MAX_VERSION = 6  # packaging-card URL, ECC M: small enough for a 58 mm receipt
CODE_MAX_VERSION = 10  # coupon and pickup codes, ECC M
TOO_BIG = 41


def build_qr(text: str, border: int = 4, box_size: int = 1) -> qrcode.QRCode:
    """The smallest ECC-M QR symbol for ``text``, fitted, with a ``border``-module quiet zone.

    qrcode's segment optimiser may split off a short digit run into its own segment and
    end up *larger* than one alphanumeric segment, so both are tried and the smaller kept.

    Raises:
        qrcode.exceptions.DataOverflowError: even version 40 cannot hold ``text``.
    """
    best: qrcode.QRCode | None = None
    for optimize in (0, 4):
        qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=border,
                           box_size=box_size)
        qr.add_data(text, optimize=optimize)
        try:
            qr.make(fit=True)
        except (qrcode.exceptions.DataOverflowError, ValueError):
            continue  # qrcode says "Invalid version (was 41...)" past version 40
        if best is None or qr.version < best.version:
            best = qr
    if best is None:
        raise qrcode.exceptions.DataOverflowError(f"{len(text)} characters do not fit any QR")
    return best


def qr_version(text: str) -> int:
    """The smallest QR version holding ``text`` at ECC M; 41 when none can."""
    try:
        return int(build_qr(text).version)
    except qrcode.exceptions.DataOverflowError:
        return TOO_BIG
