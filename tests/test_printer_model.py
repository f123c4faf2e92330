"""Printer profiles from python-escpos's capabilities database (``[printer] model``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyzbar import pyzbar

from drivers import escpos_decode, escpos_render
from drivers.printer_profile import PrinterProfile, ProfileError, TextEncoding
from edge import config as box_config
from edge import slips, tokens
from edge.config import ConfigError
from edged import config as daemon_config
from edged.devices import check


def test_model_fills_width_dpi_and_qr_support(tmp_path: Path) -> None:
    """GIVEN printer models python-escpos knows WHEN a profile is built from the model
    THEN its width in dots, dot pitch and native QR support come from the database: an
    80 mm Epson at 180 dpi and a 58 mm printer without a QR command."""
    epson = PrinterProfile.from_config({"model": "TM-T88V"}, tmp_path)
    assert (epson.paper_mm, epson.dots, epson.columns, epson.native_qr) == (80, 512, 42, True)
    assert epson.dot_mm == pytest.approx(25.4 / 180, abs=1e-3)
    cheap = PrinterProfile.from_config({"model": "POS-5890"}, tmp_path)
    assert (cheap.paper_mm, cheap.dots, cheap.native_qr) == (58, 384, False)
    assert not list(tmp_path.glob("cache/escpos/tmp*"))  # escpos's stray temp folder removed


def test_explicit_keys_override_the_model(tmp_path: Path) -> None:
    """GIVEN a model and explicit keys WHEN the profile is built THEN the table wins."""
    p = PrinterProfile.from_config({"model": "POS-5890", "native_qr": True,
                                    "encoding": "big5"}, tmp_path)
    assert p.native_qr is True and p.encoding is TextEncoding.BIG5 and p.dots == 384


def test_unknown_model_is_a_clear_error(tmp_path: Path) -> None:
    """GIVEN a model python-escpos does not know WHEN the profile is built THEN the error
    names it and lists models it does know."""
    with pytest.raises(ProfileError, match=r"'NOPE-1' is not in python-escpos.*TM-|e\.g\."):
        PrinterProfile.from_config({"model": "NOPE-1"}, tmp_path)


def test_card_prints_to_the_models_width_and_decodes(tmp_path: Path) -> None:
    """GIVEN an Epson TM-T88V (512 dots) without native QR WHEN a card prints THEN the QR
    raster is as wide as the paper's 512 dots and decodes to the card URL."""
    card = tokens.Card("BJ001", "BJ001-T1", 7, 1_764_000_000)
    url = tokens.card_url("HTTPS://Q.EDGE.CN/", tokens.assemble(card, b"\x01" * 64))
    profile = PrinterProfile.from_config({"model": "TM-T88V", "native_qr": False}, tmp_path)
    doc = slips.card_slip("望京店", "扫码入群 领新人礼", "礼", url, 7, 1_764_000_000, "谢谢", "zh")
    decoded = escpos_decode.decode(escpos_render.render(doc, profile), "gb18030")
    qrs = [r for r in decoded.rasters if pyzbar.decode(r)]
    assert [s.data.decode() for s in pyzbar.decode(qrs[0])] == [url]
    assert qrs[0].width == 512


def _daemon_config(home: Path, printer: str) -> daemon_config.DaemonConfig:
    (home / "edge.toml").write_text(
        '[store]\nid = "BJ001"\ndevice = "BJ001-T1"\n\n[printer]\n' + printer, encoding="utf-8")
    return daemon_config.load(box_config.load(home))


def test_daemon_accepts_model_and_absent_after_and_names_a_bad_model(tmp_path: Path) -> None:
    """GIVEN a [printer] table with model and absent_after WHEN the daemon checks its devices
    THEN both are accepted; a model python-escpos does not know is one config error naming
    it."""
    good = _daemon_config(tmp_path, 'url = "simulate:"\nmodel = "TM-T20II"\nabsent_after = 5\n')
    profile = check(good).profile
    assert profile is not None and profile.name == "TM-T20II" and profile.dots == 576
    bad = _daemon_config(tmp_path, 'url = "simulate:"\nmodel = "X"\n')
    with pytest.raises(ConfigError, match=r"printer: printer\.model 'X'"):
        check(bad)
