"""The two command lines, end to end, in-process: HQ makes keys and codes, a box redeems."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from pyzbar import pyzbar

from cli import edge as edge_cli
from cli import hq as hq_cli


@pytest.fixture
def homes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path]:
    hq_home, box_home = tmp_path / "hq", tmp_path / "box"
    assert hq_cli.main(["--home", str(hq_home), "keygen", "--key-id", "HQ1"]) == 0
    assert hq_cli.main(["--home", str(hq_home), "trust"]) == 0
    trust = tmp_path / "trust.json"
    trust.write_text(capsys.readouterr().out.split("\n", 1)[1])
    assert edge_cli.main(["--home", str(box_home), "init", "--store", "BJ001", "--device",
                          "BJ001-T1", "--trust", str(trust), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert hq_cli.main(["--home", str(hq_home), "register-device", "--device", "BJ001-T1",
                        "--store", "BJ001", "--public-key", info["public_key"]]) == 0
    capsys.readouterr()
    return hq_home, box_home


def _out(capsys: pytest.CaptureFixture[str]) -> str:
    return capsys.readouterr().out.strip()


def test_issue_redeem_void_events(homes: tuple[Path, Path], tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    """GIVEN keys and a box WHEN HQ issues a coupon (with a PNG) and the box redeems it twice,
    voids, and lists events THEN exit codes tell accept from reject, the PNG decodes to the
    code, and the events are waiting to sync."""
    hq_home, box_home = homes
    png = tmp_path / "c.png"
    assert hq_cli.main(["--home", str(hq_home), "issue", "coupon", "--id", "C1", "--campaign",
                        "LIVE", "--benefit", "percent:95", "--png", str(png)]) == 0
    code = _out(capsys)
    assert [d.data.decode() for d in pyzbar.decode(Image.open(png).convert("L"))] == [code]
    box = ["--home", str(box_home)]
    assert edge_cli.main([*box, "check", code]) == 0
    assert "95折" in _out(capsys)
    assert edge_cli.main([*box, "redeem", code, "--json", "--till", "T1"]) == 0
    first = json.loads(_out(capsys))
    assert first["accepted"] and first["decision_id"] == 1
    assert edge_cli.main([*box, "--lang", "en", "redeem", code]) == 1
    assert "Already used here" in _out(capsys)
    assert edge_cli.main([*box, "void", "1", "--reason", "mistake", "--json"]) == 0
    assert json.loads(_out(capsys))["voided"] is True
    assert edge_cli.main([*box, "void", "1", "--reason", "again"]) == 1
    assert "already voided" in capsys.readouterr().err
    assert edge_cli.main([*box, "events", "--json"]) == 0
    events = json.loads(_out(capsys))
    assert [e["type"] for e in events["events"]] == ["decision", "decision", "void",
                                                     "void_refused"]
    assert [e["seq"] for e in events["events"]] == [1, 2, 3, 4]


def test_pickup_import_and_typed_number(homes: tuple[Path, Path],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """GIVEN an HQ pickup code imported into the box WHEN its short number is typed
    THEN the order is collected; the orders list shows it collected."""
    hq_home, box_home = homes
    assert hq_cli.main(["--home", str(hq_home), "issue", "pickup", "--order", "O1", "--store",
                        "BJ001", "--number", "0815", "--items", "吐司x2"]) == 0
    code = _out(capsys)
    box = ["--home", str(box_home)]
    assert edge_cli.main([*box, "orders", "import", code]) == 0
    assert edge_cli.main([*box, "redeem", "0815"]) == 0
    assert "吐司x2" in _out(capsys)
    assert edge_cli.main([*box, "orders", "list", "--json"]) == 0
    assert [o["status"] for o in json.loads(_out(capsys))] == ["collected"]


def test_card_minted_and_verified_by_hq(homes: tuple[Path, Path],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """GIVEN a registered box WHEN it mints a card THEN HQ verifies it offline; a tampered
    URL or an unregistered device is refused with exit 1."""
    hq_home, box_home = homes
    assert edge_cli.main(["--home", str(box_home), "card", "--receipt", "R42"]) == 0
    url = _out(capsys)
    assert hq_cli.main(["--home", str(hq_home), "verify-card", url, "--json"]) == 0
    result = json.loads(_out(capsys))
    assert result["outcome"] == "valid" and result["card"]["receipt_ref"] == "R42"
    tampered = url[:-1] + ("1" if url[-1] != "1" else "2")
    assert hq_cli.main(["--home", str(hq_home), "verify-card", tampered]) == 1
    assert _out(capsys).split(":")[0] in {"forged", "bad_format"}
    assert hq_cli.main(["--home", str(tmp_home := hq_home.parent / "other"), "verify-card",
                        url]) == 1
    assert _out(capsys).startswith("unknown_device")
    assert not tmp_home.exists()


@pytest.mark.parametrize("argv, message", [
    (["issue", "coupon", "--id", "C", "--campaign", "X", "--benefit", "percent:150"],
     "benefit"),
    (["issue", "pickup", "--order", "O", "--store", "S", "--number", "12"], "3-8 digits"),
    (["issue", "coupon", "--id", "C" * 70, "--campaign", "X", "--benefit", "off:500"],
     "over 64 bytes"),
    (["keygen", "--key-id", "bad id!"], "key id"),
])
def test_hq_bad_input_is_a_clear_error(homes: tuple[Path, Path], argv: list[str],
                                       message: str, capsys: pytest.CaptureFixture[str]) -> None:
    """GIVEN bad arguments WHEN edge-hq runs THEN exit 2 and the error names the problem."""
    hq_home, _ = homes
    with pytest.raises(SystemExit) as exc:
        code = hq_cli.main(["--home", str(hq_home), *argv])
        raise SystemExit(code)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_box_commands_without_home_explain(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """GIVEN no box home WHEN a command runs THEN exit 2 and it says to run edge init."""
    assert edge_cli.main(["--home", str(tmp_path / "none"), "redeem", "X"]) == 2
    assert "edge init" in capsys.readouterr().err


def test_init_refuses_to_overwrite_device_key(homes: tuple[Path, Path],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """GIVEN an initialised home WHEN init runs again THEN it refuses: the key is kept."""
    _, box_home = homes
    key = (box_home / "device.key").read_text()
    assert edge_cli.main(["--home", str(box_home), "init", "--store", "BJ001", "--device",
                          "BJ001-T1"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (box_home / "device.key").read_text() == key
    assert (box_home / "device.key").stat().st_mode & 0o777 == 0o600
