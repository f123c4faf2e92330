"""Slips rendered to ESC/POS bytes and parsed back: text per encoding, cuts, QR on paper."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont
from pyzbar import pyzbar

from cli import edge as cli
from drivers import escpos_decode, escpos_render
from drivers.escpos_decode import DecodeError, FeedDots, NativeQR
from drivers.printer_profile import CJK_FONT, PrinterProfile, ProfileError, TextEncoding
from edge import slips, tokens
from edge.box import Box
from edge.printdoc import QR, Align, Cut, Document, DocumentError, Text
from edge.qrfit import CARD_MAX_VERSION, qr_version
from edge.verdict import Reason, Verdict
from hq.issuing.codes import CardCheck, verify_card

HEADLINE = "扫码入群 领新人礼"
HEADLINE_TRAD = "掃碼入群 領新人禮"
ISSUED = 1_764_000_000.0


def card_url() -> str:
    """A real card URL at its largest: worst-case serial and time, a full signature."""
    card = tokens.Card("BJ001", "BJ001-T1", 2**32, 2**32 - 1)
    return tokens.card_url("HTTPS://Q.EDGE.CN/", tokens.assemble(card, b"\xff" * tokens.SIG_LEN))


def card(headline: str = HEADLINE, url: str | None = None) -> Document:
    return slips.card_slip("望京店", headline, "新人礼: 到店免费咖啡一杯", url or card_url(), 42,
                           ISSUED, "谢谢惠顾", "zh")


def compact(text: str) -> str:
    return text.replace("\n", "").replace(" ", "")


@pytest.mark.parametrize("encoding", ["gb18030", "gbk", "utf-8"])
@pytest.mark.parametrize("paper", [58, 80])
def test_card_chinese_text_decodes_in_printer_encoding(encoding: str, paper: int) -> None:
    """GIVEN a printer set to GB18030, GBK or UTF-8
    WHEN a packaging card is rendered
    THEN the bytes carry the headline in that encoding, it decodes back, and there is a cut."""
    profile = PrinterProfile(paper, TextEncoding(encoding))
    stream = escpos_render.render(card(), profile)
    decoded = escpos_decode.decode(stream, encoding)
    assert "扫码入群".encode(encoding) in stream
    assert compact(HEADLINE) in compact(decoded.text)
    assert "望京店" in decoded.text and "谢谢惠顾" in decoded.text
    assert "卡号 42" in decoded.text
    assert decoded.cuts == 1
    assert not decoded.rasters  # every line went as text
    if encoding == "utf-8":
        assert escpos_render.UTF8_ON in stream
    else:
        assert stream.startswith(escpos_render.INIT + escpos_render.KANJI_ON)


def test_headline_wraps_at_its_space_on_58mm() -> None:
    """GIVEN the double-size headline, wider than 58 mm paper holds
    WHEN rendered
    THEN it breaks at its space into two whole phrases, each a double-size centred line."""
    decoded = escpos_decode.decode(escpos_render.render(card(), PrinterProfile(58)), "gb18030")
    big = [line for line in decoded.lines if line.size == 2]
    assert [line.text for line in big][1:3] == ["扫码入群", "领新人礼"]
    assert all(line.align is Align.CENTER and line.bold for line in big)


def test_big5_prints_traditional_as_text_and_simplified_as_image() -> None:
    """GIVEN a Big5 printer
    WHEN a card with a traditional headline and a test page (with simplified text) print
    THEN traditional text goes as Big5 bytes, and simplified lines Big5 lacks are rasters,
    never question marks."""
    profile = PrinterProfile(80, TextEncoding.BIG5)
    stream = escpos_render.render(card(HEADLINE_TRAD), profile)
    decoded = escpos_decode.decode(stream, "big5")
    assert HEADLINE_TRAD.encode("big5") in stream
    assert HEADLINE_TRAD in decoded.text
    page = escpos_render.render(slips.test_page("big5"), profile)
    page_decoded = escpos_decode.decode(page, "big5")
    assert slips.TEST_TRADITIONAL in page_decoded.text
    assert slips.TEST_SIMPLIFIED not in page_decoded.text
    assert "?" not in page_decoded.text
    assert len(page_decoded.rasters) >= 1
    with pytest.raises(UnicodeEncodeError):
        slips.TEST_SIMPLIFIED.encode("big5")


def _font_render(text: str, width: int) -> Image.Image:
    font = ImageFont.truetype(str(CJK_FONT), 24)
    img = Image.new("L", (width, 30), 255)
    ImageDraw.Draw(img).text((0, 2), text, font=font, fill=0)
    return img.point(lambda v: 0 if v < 128 else 255).convert("1")


def _agreement(a: Image.Image, b: Image.Image) -> float:
    pa, pb = a.convert("1").tobytes(), b.convert("1").tobytes()
    same = sum(bin(~(x ^ y) & 0xFF).count("1") for x, y in zip(pa, pb, strict=True))
    return same / (len(pa) * 8)


def test_image_mode_draws_chinese_with_the_cjk_font() -> None:
    """GIVEN a printer with no Chinese font (encoding image)
    WHEN a Chinese line and an ASCII line print
    THEN the ASCII line is text, the Chinese line a raster matching the font's own glyphs
    for that text and not for another text."""
    profile = PrinterProfile(80, TextEncoding.IMAGE)
    doc = Document("test", [Text("Order 88"), Text(HEADLINE), Cut()])
    stream = escpos_render.render(doc, profile)
    decoded = escpos_decode.decode(stream, "ascii")
    assert decoded.text == "Order 88"
    assert len(decoded.rasters) == 1 and decoded.cuts == 1
    printed = decoded.rasters[0]
    assert printed.width == profile.dots
    same = _agreement(printed, _font_render(HEADLINE, profile.dots))
    other = _agreement(printed, _font_render("谢谢惠顾 欢迎再来", profile.dots))
    assert same > 0.995
    assert other < same - 0.02


def _quiet_zone_modules(img: Image.Image) -> tuple[float, int, int]:
    """(smallest quiet zone in modules, module size in dots, modules per side)."""
    gray = img.convert("L")
    inverted = gray.point(lambda v: 255 - v)
    left, top, right, bottom = inverted.getbbox()
    row = [gray.getpixel((x, top)) for x in range(left, right)]
    run = next(i for i, v in enumerate(row) if v != 0)  # finder pattern: 7 black modules
    assert run % 7 == 0
    module = run // 7
    side = right - left
    assert side == bottom - top, "modules are not square"
    assert side % module == 0
    zone = min(left, top, img.width - right, img.height - bottom) / module
    return zone, module, side // module


@pytest.mark.parametrize("paper", [58, 80])
def test_image_qr_decodes_with_four_module_quiet_zone(paper: int) -> None:
    """GIVEN a printer without native QR
    WHEN a card prints
    THEN its QR raster decodes (pyzbar) to the card URL, at most version 6, square modules,
    and a quiet zone of at least 4 modules on every side."""
    url = card_url()
    assert qr_version(url) <= CARD_MAX_VERSION
    profile = PrinterProfile(paper, TextEncoding.GB18030, native_qr=False)
    decoded = escpos_decode.decode(escpos_render.render(card(url=url), profile), "gb18030")
    qr_imgs = [r for r in decoded.rasters if pyzbar.decode(r)]
    assert len(qr_imgs) == 1
    assert [s.data.decode() for s in pyzbar.decode(qr_imgs[0])] == [url]
    zone, module, modules = _quiet_zone_modules(qr_imgs[0])
    assert zone >= 4
    assert (modules - 17) // 4 <= CARD_MAX_VERSION
    assert module * (modules + 8) <= profile.dots


@pytest.mark.parametrize("paper", [58, 80])
def test_native_qr_command_carries_the_url(paper: int) -> None:
    """GIVEN a printer with native QR (GS ( k)
    WHEN a card prints
    THEN the stored payload is the URL at ECC M, re-rendering it decodes to the URL, and
    4-module feeds above and below plus centring give the quiet zone."""
    url = card_url()
    profile = PrinterProfile(paper, TextEncoding.GB18030, native_qr=True)
    decoded = escpos_decode.decode(escpos_render.render(card(url=url), profile), "gb18030")
    (qr,) = decoded.qr_codes
    assert qr.data == url and qr.ecc == "M"
    symbol = escpos_decode.qr_symbol(qr.data, qr.module_dots, qr.ecc)
    assert [s.data.decode() for s in pyzbar.decode(symbol)] == [url]
    i = decoded.items.index(qr)
    before, after = decoded.items[i - 1], decoded.items[i + 1]
    assert isinstance(before, FeedDots) and before.dots >= 4 * qr.module_dots
    assert isinstance(after, FeedDots) and after.dots >= 4 * qr.module_dots
    modules = 17 + 4 * qr_version(url)
    assert (modules + 8) * qr.module_dots <= profile.dots
    assert qr.module_dots == min(profile.max_module_dots, profile.dots // (modules + 8))


def test_pickup_slip_lists_number_items_and_window() -> None:
    """GIVEN a pickup order
    WHEN its slip prints
    THEN the pickup number, each item on its own line, customer and a cut are on paper."""
    doc = slips.pickup_slip("ORD-88", "0815", "吐司x2 牛角包x1", "王*", ISSUED, ISSUED + 3600)
    decoded = escpos_decode.decode(escpos_render.render(doc, PrinterProfile(58)), "gb18030")
    assert "取货号 0815" in decoded.text
    assert "订单：ORD-88" in decoded.text
    assert [ln.text.strip() for ln in decoded.lines if "x" in ln.text] == ["吐司x2", "牛角包x1"]
    assert "顾客：王*" in decoded.text
    assert decoded.cuts == 1


def test_redemption_slip_states_benefit_code_and_till() -> None:
    """GIVEN an accepted free-coffee coupon and a rejected replay
    WHEN their slips print (Chinese and English)
    THEN the benefit or the reason, code, till and receipt number are on paper."""
    ok = Verdict(True, None, "coupon", "LIVE-0001", ISSUED, True,
                 {"benefit": {"kind": "free_item", "value": 1, "item": "咖啡一杯"}}, 7)
    text = escpos_decode.decode(escpos_render.render(slips.redemption_slip(ok, "T1"),
                                                     PrinterProfile(58)), "gb18030").text
    assert "免费咖啡一杯" in text and "LIVE-0001" in text and "T1" in text and "7" in text
    assert "通过" in text
    bad = Verdict(False, Reason.ALREADY_USED_HERE, "coupon", "LIVE-0001", ISSUED, False,
                  {"used_at": ISSUED - 60, "used_till": "T2"})
    text = escpos_decode.decode(escpos_render.render(slips.redemption_slip(bad, "T1", "en"),
                                                     PrinterProfile(80)), "gb18030").text
    assert "REJECTED" in text and "Already used here" in text
    assert "Clock not verified" in text


def test_report_slip_and_test_page_print() -> None:
    """GIVEN a day's report and the test page
    WHEN they print on a GB18030 printer
    THEN each key and nested value is a line, the test page shows its encoding and QR."""
    report = {"day_start": ISSUED, "day_end": ISSUED + 86400, "accepted": 12, "rejected": 3,
              "by_reason": {"expired": 2, "forged": 1}, "voids": [{"decision": 4}]}
    text = escpos_decode.decode(escpos_render.render(slips.report_slip(report),
                                                     PrinterProfile(58)), "gb18030").text
    assert "营业报表" in text and "accepted: 12" in text and "  expired: 2" in text
    assert "voids: 1" in text and "decision=4" in text
    page = escpos_decode.decode(escpos_render.render(slips.test_page("gb18030"),
                                                     PrinterProfile(58)), "gb18030")
    assert "Text encoding: gb18030" in page.text
    assert slips.TEST_SIMPLIFIED in page.text and slips.TEST_TRADITIONAL in page.text
    assert [q.data for q in page.qr_codes] == [slips.TEST_PAGE_QR]


def test_document_json_round_trip_and_bad_json() -> None:
    """GIVEN a card document
    WHEN stored as JSON and read back, and when damaged JSON is read
    THEN it is equal, and damaged JSON raises DocumentError naming the block."""
    doc = card()
    assert Document.from_json(doc.to_json()) == doc
    with pytest.raises(DocumentError, match="not JSON"):
        Document.from_json("{")
    with pytest.raises(DocumentError, match="block #1"):
        Document.from_json('{"job_kind":"x","blocks":[{"type":"cut"},{"type":"text"}]}')
    with pytest.raises(DocumentError, match="known type"):
        Document.from_json('{"job_kind":"x","blocks":[{"type":"barcode"}]}')


def test_bad_blocks_and_profiles_are_refused() -> None:
    """GIVEN text with a line break or an ESC byte, a 3x size, a bad profile
    WHEN built
    THEN each raises a specific error (control bytes would become printer commands)."""
    with pytest.raises(DocumentError, match="control"):
        Text("a\nb")
    with pytest.raises(DocumentError, match="control"):
        Text("a\x1b@")
    with pytest.raises(DocumentError, match="size"):
        Text("a", size=3)
    with pytest.raises(ProfileError, match="encoding"):
        PrinterProfile.from_config({"encoding": "shift_jis"})
    with pytest.raises(ProfileError, match="paper_mm"):
        PrinterProfile.from_config({"paper_mm": 76})
    assert PrinterProfile.from_config({"paper_mm": 80, "encoding": "BIG5"}).columns == 48


def test_qr_too_big_for_paper_is_a_render_error() -> None:
    """GIVEN a QR payload too long for 3-dot modules on 58 mm, and one too long for any QR
    WHEN rendered
    THEN RenderError says why, instead of printing a clipped or unreadable symbol."""
    with pytest.raises(escpos_render.RenderError, match="wider than 384 dots"):
        escpos_render.render(Document("x", [QR("A" * 3000)]), PrinterProfile(58))
    with pytest.raises(escpos_render.RenderError, match="does not fit any QR"):
        escpos_render.render(Document("x", [QR("A" * 5000)]), PrinterProfile(80))
    assert escpos_render.render(Document("x", [QR("A" * 3000)]), PrinterProfile(80))


def test_decoder_names_unknown_and_truncated_commands() -> None:
    """GIVEN byte streams with an unknown command, a truncated raster, or bad GB18030 text
    WHEN decoded
    THEN DecodeError names the offset or the encoding."""
    with pytest.raises(DecodeError, match="ESC 0x7a at offset 2"):
        escpos_decode.decode(b"ab\x1bz")
    with pytest.raises(DecodeError, match="truncated GS v 0 image data"):
        escpos_decode.decode(b"\x1dv0\x00\x02\x00\x02\x00\xff")
    with pytest.raises(DecodeError, match="not gb18030"):
        escpos_decode.decode(b"\x81\n")
    assert "\ufffd" in escpos_decode.decode(b"\x81\n", strict=False).text


def test_wrap_counts_chinese_as_two_columns() -> None:
    """GIVEN mixed Chinese and ASCII text
    WHEN wrapped to 10 columns
    THEN no line is wider than 10 columns and nothing is lost."""
    text = "新人礼: 到店免费咖啡一杯 and more"
    lines = escpos_render.wrap(text, 10)
    assert all(escpos_render.text_width(line) <= 10 for line in lines)
    assert compact("".join(lines)) == compact(text)


def test_preview_png_shows_paper() -> None:
    """GIVEN a card's bytes
    WHEN rendered to a preview
    THEN the preview is paper-wide and its QR decodes to the card URL."""
    url = card_url()
    stream = escpos_render.render(card(url=url), PrinterProfile(58))
    png = escpos_decode.to_png(stream, "gb18030", 384)
    assert png.width == 384 and png.height > 400
    assert [s.data.decode() for s in pyzbar.decode(png)] == [url]
    assert isinstance(escpos_decode.decode(stream).qr_codes[0], NativeQR)


def test_edge_preview_writes_a_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """GIVEN a simulated printer's output file holding two cards
    WHEN `edge preview FILE --png OUT --json` runs, and again on a damaged file
    THEN the PNG is written and its QR decodes, the summary counts two slips; the damaged
    file exits 2 naming the problem."""
    url = card_url()
    sim = tmp_path / "printer-sim.bin"
    sim.write_bytes(escpos_render.render(card(url=url), PrinterProfile(58)) * 2)
    out = tmp_path / "paper.png"
    assert cli.main(["--home", str(tmp_path), "preview", str(sim), "--png", str(out),
                     "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["cuts"] == 2 and summary["qr"] == [url, url]
    with Image.open(out) as png:
        assert {s.data.decode() for s in pyzbar.decode(png)} == {url}
        two_high = png.height
    assert cli.main(["preview", str(sim), "--png", str(out), "--last", "1"]) == 0
    with Image.open(out) as png:
        assert png.height == two_high // 2
    sim.write_bytes(b"\x1b@\x1bz")
    assert cli.main(["preview", str(sim), "--png", str(out)]) == 2
    assert "unknown command ESC 0x7a" in capsys.readouterr().err


@pytest.mark.parametrize("native", [True, False])
def test_a_minted_card_prints_a_qr_hq_accepts(box: Box, native: bool) -> None:
    """GIVEN a box that mints a packaging card with a receipt reference (real key, ledger)
    WHEN its slip is rendered for a 58 mm printer and the QR read back from the bytes
    THEN the decoded URL is the minted one, and HQ's offline check finds it VALID."""
    issued = box.issue_card("R20261125-0042")
    texts = box.config.card
    doc = slips.card_slip(box.config.store_name, texts.headline, texts.gift, issued.url,
                          issued.serial, issued.issued_at, texts.footer)
    profile = PrinterProfile(58, TextEncoding.GB18030, native_qr=native)
    decoded = escpos_decode.decode(escpos_render.render(doc, profile), "gb18030")
    if native:
        (qr,) = decoded.qr_codes
        symbol = escpos_decode.qr_symbol(qr.data, qr.module_dots, qr.ecc)
    else:
        (symbol,) = decoded.rasters
    (found,) = pyzbar.decode(symbol)
    url = found.data.decode()
    assert url == issued.url
    devices = {box.identity.device_id: {"store": box.identity.store_id,
                                        "public_key": box.device_key.public_key.hex()}}
    assert verify_card(url, devices).outcome is CardCheck.VALID
    assert "望京店" in decoded.text and f"卡号 {issued.serial}" in decoded.text
