from __future__ import annotations

import pytest
from PIL import Image
from pyzbar import pyzbar

from edge import tokens
from edge.cards import check_url_base
from edge.config import DEFAULT_CARD_URL_BASE
from edge.keys import SigningKey
from edge.qrfit import CARD_MAX_VERSION, CODE_MAX_VERSION, build_qr
from edge.rules import Identity
from hq.issuing.codes import sign_token
from tests.factory import sample_coupon, sample_pickup

KEY = SigningKey.generate("HQ2026A")


def decode_qr(text: str) -> tuple[int, str]:
    """Render ``text`` as the box would and read it back with pyzbar (the camera's decoder)."""
    qr = build_qr(text, border=4, box_size=4)
    img = qr.make_image().get_image().convert("L")
    found = pyzbar.decode(img, symbols=[pyzbar.ZBarSymbol.QRCODE])
    assert len(found) == 1
    return int(qr.version), found[0].data.decode("ascii")


def biggest_coupon() -> tokens.Coupon:
    """A coupon with every field at a generous real-world size."""
    return tokens.Coupon(
        "HQ2026A", "LS20261125-000123456", "LIVE-DOUBLE11-BJ", tokens.Channel.LIVESTREAM,
        tokens.Benefit(tokens.BenefitKind.FREE_ITEM, 2, "中杯热拿铁咖啡"),
        1_764_000_000, 1_766_000_000, 3, ("BJ001", "BJ002", "BJ003", "TJ001"))


def biggest_pickup() -> tokens.Pickup:
    return tokens.Pickup("HQ2026A", "ORD-20261125-00012345", "BJ001", "12345678",
                         1_764_000_000, 1_764_010_000, "吐司x2 牛角包x3 蛋挞x6 咖啡x1", "王**")


@pytest.mark.parametrize("token", [biggest_coupon(), biggest_pickup()])
def test_hq_codes_fit_version_10_and_decode(token: tokens.Coupon | tokens.Pickup) -> None:
    """GIVEN a coupon or pickup with large fields WHEN rendered as QR and read by pyzbar
    THEN it is alphanumeric mode within version 10-M and parses back to the same token."""
    code = sign_token(KEY, token)
    version, read = decode_qr(code)
    assert version <= CODE_MAX_VERSION
    assert read == code
    parsed = tokens.parse(read)
    assert isinstance(parsed, tokens.Signed) and parsed.token == token


@pytest.mark.parametrize("card", [
    tokens.Card("BJ001", "BJ001-T1", 4_000_000_000, 4_000_000_000),  # worst serial and time
    tokens.Card("BJ001", "BJ001-T1", 250_000, 1_764_000_000, "R1125-42"),  # with a receipt ref
    tokens.Card("SH-PUDONG-07", "till_2", 17, 1_764_000_000),  # device not under store prefix
])
def test_card_url_fits_version_6_and_decodes(card: tokens.Card) -> None:
    """GIVEN a card WHEN its URL on the default base is rendered and read back by pyzbar
    THEN it is within QR version 6-M and the URL's code parses to the same card."""
    device = SigningKey.generate(card.device_id)
    code = tokens.assemble(card, device.sign(tokens.signing_bytes(card)))
    url = tokens.card_url(DEFAULT_CARD_URL_BASE, code)
    version, read = decode_qr(url)
    assert version <= CARD_MAX_VERSION
    parsed = tokens.parse(tokens.code_from_url(read))
    assert isinstance(parsed, tokens.Signed) and parsed.token == card


def test_url_base_too_long_is_refused() -> None:
    """GIVEN a long URL base WHEN checked THEN it is refused, naming the version it needs."""
    from edge.cards import CardError

    with pytest.raises(CardError, match="too long"):
        check_url_base("https://join.example-bakery-group.com.cn/community/welcome/card/",
                       Identity("BJ001", "BJ001-T1"))
    assert check_url_base(DEFAULT_CARD_URL_BASE, Identity("BJ001", "BJ001-T1")) <= 6


def test_signature_binds_kind() -> None:
    """GIVEN a coupon's signature WHEN its payload is relabelled as another kind
    THEN the signed bytes differ (the prefix is signed), so the signature cannot carry over."""
    coupon = sample_coupon("HQ2026A")
    assert tokens.signing_bytes(coupon).startswith(b"SEC1")
    assert tokens.signing_bytes(sample_pickup("HQ2026A")).startswith(b"SEP1")


def test_lowercase_scanner_output_parses_to_same_token() -> None:
    """GIVEN a scanner that lowercases text WHEN parsed THEN the same token comes out."""
    code = sign_token(KEY, sample_coupon("HQ2026A"))
    a, b = tokens.parse(code), tokens.parse(code.lower())
    assert isinstance(a, tokens.Signed) and isinstance(b, tokens.Signed)
    assert a.token == b.token and a.signature == b.signature


GOOD = sign_token(KEY, sample_coupon("HQ2026A"))


@pytest.mark.parametrize("text, detail", [
    ("", "empty"),
    ("   \r\n", "empty"),
    ("6901234567892", "not a store-edge code"),  # an EAN-13 from a shelf
    ("https://weixin.qq.com/g/xyz", "not a store-edge code"),
    ("SEX1" + GOOD[4:], "not a store-edge code"),
    (GOOD[:60], "damaged"),
    (GOOD[:-3], "damaged"),
    (GOOD + "0", "damaged"),
    ("SEC1", "damaged"),
    ("SEC1" + "0" * 99, "damaged"),
    ("X" * 10_000_000, "too long"),
    (b"\xff\xfe\x00SEC1", "non-ASCII"),
    (b"\x00" * 5000, "too long"),
    ("SEC1ÄÖÜ", "damaged"),
])
def test_parse_rejects_with_typed_reason(text: str | bytes, detail: str) -> None:
    """GIVEN junk, truncated, oversize or foreign input WHEN parsed
    THEN a FormatError (never an exception) says what is wrong."""
    result = tokens.parse(text)
    assert isinstance(result, tokens.FormatError)
    assert detail in result.detail


def test_card_ids_outside_id6_are_refused_at_issue() -> None:
    """GIVEN a store id with a character outside 0-9A-Za-z_- WHEN a card is built THEN it fails
    loudly at issue time rather than producing an unreadable card."""
    card = tokens.Card("BJ 001", "D1", 1, 1)
    with pytest.raises(ValueError, match="not in"):
        tokens.signing_bytes(card)


def test_qr_image_decodes_same_as_camera_would() -> None:
    """GIVEN a coupon QR written to PNG by edge-hq WHEN the image is decoded by pyzbar
    THEN the text equals the code (the camera path uses the same decoder)."""
    code = GOOD
    img = build_qr(code, border=4, box_size=6).make_image().get_image()
    assert isinstance(img, Image.Image)
    data = pyzbar.decode(img.convert("L"))
    assert [d.data.decode() for d in data] == [code]


def test_qr_version_of_oversize_text_is_too_big_not_a_crash() -> None:
    """GIVEN text beyond QR version 40 WHEN sized THEN TOO_BIG (41) comes back, no exception."""
    from edge.qrfit import TOO_BIG, qr_version

    assert qr_version("A" * 5000) == TOO_BIG
    assert qr_version("A" * 100) < TOO_BIG


def test_a_coupon_with_no_uses_is_damaged_even_when_signed() -> None:
    """GIVEN a coupon payload with max_uses 0 (which the writer refuses), correctly signed
    WHEN it is parsed THEN it is a FormatError, as the fuzzer's first finding showed
    (tests/fuzz/crashes/codes/): the reader accepts only what the writer can make."""
    payload = bytearray(tokens.signing_bytes(sample_coupon(KEY.key_id)))
    # max_uses (varint 1) then a zero store count end the payload: set the varint to 0.
    assert payload[-2:] == b"\x01\x00"
    payload[-2] = 0
    raw = bytes(payload[tokens.PREFIX_LEN:]) + KEY.sign(bytes(payload))
    text = tokens.PREFIXES[tokens.Kind.COUPON] + tokens.base41.encode(raw)
    got = tokens.parse(text)
    assert isinstance(got, tokens.FormatError) and "max_uses 0" in str(got)
