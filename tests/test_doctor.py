"""``edge doctor``: every check passes on a healthy box, and each failure is explained with
its fix, in Chinese by default. Real parts: a real broker (down, up, TLS), a real corrupt
ledger page, a real full tmpfs, real key files and a pseudo-terminal scanner."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from cli.edge import main
from edge.ledger import Ledger
from provisioning import doctor
from provisioning.dev import ensure_demo_home
from provisioning.localbroker import Broker
from tests.test_sync_tls import pki  # noqa: F401  (the CA and certificates, a fixture)

if TYPE_CHECKING:
    from tests.smalldisk import SmallDisk

pytest_plugins = ["tests.smalldisk"]


@pytest.fixture
def scanner_port() -> Iterator[str]:
    """A pseudo-terminal standing in for a serial scanner's device node."""
    master, slave = pty.openpty()
    try:
        yield os.ttyname(slave)
    finally:
        os.close(master)
        os.close(slave)


def healthy_home(home: Path, broker: Broker, scanner: str, extra: str = "") -> Path:
    """A demo home with a broker, a simulated printer, a scanner port, a trusted clock and
    HQ's config applied (version 3)."""
    assert ensure_demo_home(home)
    with (home / "edge.toml").open("a") as f:
        f.write(f'\n[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\n{extra}'
                f'\n[printer]\nurl = "simulate:"\n\n[scanner]\nport = "{scanner}"\n')
    ledger = Ledger(home / "ledger.sqlite")
    try:
        with ledger.immediate() as conn:
            ledger.advance_trusted_time(conn, time.time() - 30, "test")
            ledger.put_setting(conn, "config_version", 3)
    finally:
        ledger.close()
    return home


def by_check(home: Path) -> dict[str, doctor.Finding]:
    return {f.check: f for f in doctor.run(home, timeout=2)}


def edge_doctor(home: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["--home", str(home), "doctor", *args])
    return code, capsys.readouterr().out


def test_healthy_box_passes_and_the_broker_going_down_fails(
        tmp_path: Path, broker: Broker, scanner_port: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    """GIVEN a configured, enrolled box with a reachable broker, a printer and a scanner
    WHEN edge doctor runs, then the broker is killed, then started again
    THEN every check is ok (exit 0, 全部正常); with the broker down the HQ-link check fails
    in Chinese with the network fix (exit 1); once it is back, exit 0 again."""
    home = healthy_home(tmp_path / "home", broker, scanner_port)
    code, out = edge_doctor(home, capsys)
    assert code == 0, out
    assert "全部正常" in out and "[FAIL]" not in out
    found = by_check(home)
    assert {c: f.outcome for c, f in found.items()} == {
        "config": "ok", "keys": "ok", "clock": "ok", "disk": "ok", "ledger": "ok",
        "printer": "ok", "scanner": "ok", "camera": "skip", "broker": "ok", "enrolment": "ok"}
    assert "总部配置 v3" in found["enrolment"].words()
    broker.kill()
    code, out = edge_doctor(home, capsys)
    assert code == 1
    assert f"连不上总部服务器 127.0.0.1:{broker.port}" in out and "检查网络" in out
    broker.start()
    code, out = edge_doctor(home, capsys, "--lang", "en", "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] is True
    assert [c["message"] for c in report["checks"] if c["check"] == "broker"] == [
        f"HQ's broker answers (127.0.0.1:{broker.port}, -)"]


def test_tls_broker_with_the_wrong_ca_fails_tls(tmp_path: Path, pki: Path,  # noqa: F811
                                               scanner_port: str) -> None:
    """GIVEN a TLS broker whose certificate HQ's CA signed
    WHEN the box trusts another CA, then the right one
    THEN the HQ-link check fails as a TLS verification failure (with the clock-first fix),
    then passes saying TLS."""
    broker = Broker(tmp_path / "mq", listener_options=(
        f"cafile {pki}/ca.crt\ncertfile {pki}/server.crt\nkeyfile {pki}/server.key"))
    broker.start()
    try:
        home = healthy_home(tmp_path / "home", broker, scanner_port,
                            f'tls = true\nca_file = "{pki}/rogue.crt"\n')
        found = by_check(home)["broker"]
        assert found.outcome is doctor.Outcome.FAIL and found.case == "tls"
        assert "加密连接验证失败" in found.words() and "本机时间" in found.fix()
        assert "CERTIFICATE_VERIFY_FAILED" in found.detail
        toml = home / "edge.toml"
        toml.write_text(toml.read_text().replace("rogue.crt", "ca.crt"))
        found = by_check(home)["broker"]
        assert found.outcome is doctor.Outcome.OK and "TLS" in found.words()
    finally:
        broker.kill()


def test_refused_credentials_are_explained(tmp_path: Path, scanner_port: str) -> None:
    """GIVEN a broker that needs a password WHEN the box has a wrong one
    THEN the HQ-link check says the broker refused this box's credentials, in Chinese,
    with the broker's reason code for support."""
    (tmp_path / "mq").mkdir()
    pw = tmp_path / "mq" / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pw), "BJ001-T1", "s3cret"],
                   check=True, capture_output=True, timeout=30)
    broker = Broker(tmp_path / "mq", listener_options=f"password_file {pw}", anonymous=False)
    broker.start()
    try:
        home = healthy_home(tmp_path / "home", broker, scanner_port,
                            'username = "BJ001-T1"\npassword = "wrong"\n')
        found = by_check(home)["broker"]
        assert found.case == "refused_auth" and "凭据无效" in found.words()
        assert "重新登记" in found.fix() and found.detail == "CONNACK 0x87: not authorized"
    finally:
        broker.kill()


def test_corrupt_ledger_page(tmp_path: Path, broker: Broker, scanner_port: str,
                             capsys: pytest.CaptureFixture[str]) -> None:
    """GIVEN a box whose ledger has a b-tree page overwritten with garbage
    WHEN edge doctor runs
    THEN the ledger check fails as damaged (quick_check's words in the detail) with the
    restore fix, and the exit status is 1."""
    home = healthy_home(tmp_path / "home", broker, scanner_port)
    path = home / "ledger.sqlite"
    page = sqlite_page_size(path)
    with path.open("r+b") as f:  # page 3 onwards: table b-trees; page 1 is the header
        f.seek(page * 3)
        f.write(b"\xff" * page)
    code, out = edge_doctor(home, capsys)
    assert code == 1
    assert "账本文件已损坏" in out and "edge restore" in out
    assert by_check(home)["ledger"].detail


def sqlite_page_size(path: Path) -> int:
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return int(conn.execute("PRAGMA page_size").fetchone()[0])
    finally:
        conn.close()


def test_full_disk(small_disk: SmallDisk, broker: Broker, scanner_port: str) -> None:
    """GIVEN a box home on a tmpfs that is then filled
    WHEN edge doctor runs
    THEN the disk check fails saying how little is free, with the free-space fix."""
    home = healthy_home(small_disk.path / "home", broker, scanner_port)
    small_disk.fill()
    found = by_check(home)["disk"]
    assert found.outcome is doctor.Outcome.FAIL and "存储空间快满了" in found.words()
    assert "journalctl --vacuum-size" in found.fix()


@pytest.mark.parametrize(("damage", "case", "words"), [
    ("mode", "open", "可被其他用户读取"),
    ("garbage", "bad", "已损坏"),
    ("missing", "missing", "设备密钥不见了"),
])
def test_bad_key_file(tmp_path: Path, broker: Broker, scanner_port: str, damage: str,
                      case: str, words: str) -> None:
    """GIVEN a box whose device key is readable by others, holds garbage, or is gone
    WHEN edge doctor runs
    THEN the key check fails with those words, and enrolment says there is no usable key."""
    home = healthy_home(tmp_path / "home", broker, scanner_port)
    key = home / "device.key"
    if damage == "mode":
        key.chmod(0o644)
    elif damage == "garbage":
        key.write_text("not hex at all\n")
    else:
        key.unlink()
    found = by_check(home)
    assert found["keys"].case == case and words in found["keys"].words()
    assert found["keys"].fix()
    assert found["enrolment"].case == "no_key"


def test_bad_config_clock_and_devices(tmp_path: Path, broker: Broker, scanner_port: str) -> None:
    """GIVEN a box with a typo in edge.toml; then a clock a day behind its trusted time, the
    paper out, the scanner unplugged and a camera that is not there
    THEN the config check names the key and the others are not checked; then the clock,
    printer, scanner and camera checks each fail with their own words and fix."""
    home = healthy_home(tmp_path / "home", broker, scanner_port)
    toml = home / "edge.toml"
    good = toml.read_text()
    toml.write_text(good + '\n[api]\nsockett = "x"\n')
    found = by_check(home)
    assert found["config"].case == "bad" and "api.sockett" in found["config"].words()
    assert all(f.case == "not_checked" for c, f in found.items() if c != "config")
    toml.write_text(good.replace(scanner_port, "/dev/ttyACM97")
                    + '\n[camera]\nsource = 97\n')
    (home / "printer-sim.bin.state").write_text("no_paper")
    ledger = Ledger(home / "ledger.sqlite")
    try:
        with ledger.immediate() as conn:
            ledger.advance_trusted_time(conn, time.time() + 2 * 86400, "test")
    finally:
        ledger.close()
    found = by_check(home)
    assert found["clock"].case == "behind" and "慢了 2.0 d" in found["clock"].words()
    assert found["printer"].case == "no_paper" and found["printer"].fix() == "装入打印纸"
    assert found["scanner"].case == "missing" and "/dev/ttyACM97" in found["scanner"].words()
    assert "dev/ttyACM0" in found["scanner"].fix()
    assert found["camera"].case == "missing" and "/dev/video97" in found["camera"].words()
    assert all(f.outcome is doctor.Outcome.FAIL
               for c, f in found.items() if c in ("clock", "printer", "scanner", "camera"))


async def test_devices_judged_by_the_running_daemon(tmp_path: Path) -> None:
    """GIVEN the daemon running with its (simulated) printer, which it holds
    WHEN edge doctor runs, then the printer's paper runs out
    THEN the printer is judged from the daemon's status (working), then the printer check
    fails with the daemon's words for it."""
    import asyncio

    from tests.daemon_fixtures import start_process, wait_socket

    home = tmp_path / "home"
    assert ensure_demo_home(home)
    with (home / "edge.toml").open("a") as f:
        f.write('\n[printer]\nurl = "simulate:"\n')
    proc = start_process(home, "--log-level", "WARNING")
    try:
        client = await wait_socket(home, proc)
        found = await asyncio.to_thread(by_check, home)
        assert found["printer"].case == "daemon_ok"
        (home / "printer-sim.bin.state").write_text("no_paper")
        async with asyncio.timeout(20):
            while (await client.request("status"))["printer"]["state"] != "failed":
                await asyncio.sleep(0.1)
        await client.close()
        found = await asyncio.to_thread(by_check, home)
        assert found["printer"].outcome is doctor.Outcome.FAIL
        assert found["printer"].case == "daemon_failed"
        assert "门店服务报告故障" in found["printer"].words()
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
