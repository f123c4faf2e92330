"""How big a QR symbol a text needs: the check that keeps codes scannable from paper."""

from __future__ import annotations

import qrcode
import qrcode.constants
import qrcode.exceptions

CARD_MAX_VERSION = 6  # packaging-card URL, ECC M: small enough for a 58 mm receipt
CODE_MAX_VERSION = 10  # coupon and pickup codes, ECC M


def qr_version(text: str) -> int:
    """The smallest QR version holding ``text`` at ECC M, with optimal mode segments.

    Returns 41 when even version 40 cannot hold it.
    """
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M)
    qr.add_data(text, optimize=4)
    try:
        return int(qr.best_fit())
    except qrcode.exceptions.DataOverflowError:
        return 41
