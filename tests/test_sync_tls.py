"""sync over TLS: a CA file plus a per-device client certificate, or username/password."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from pathlib import Path

import pytest

from provisioning.localbroker import Broker
from sync.service import SyncService, SyncState
from sync.settings import MqttSettings
from tests.sync_fixtures import IDENTITY, append_events, new_ledger

pytestmark = pytest.mark.network


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def _issue(d: Path, name: str, cn: str, ca: str = "ca", ext: str = "") -> None:
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=d)
    extra = []
    if ext:
        (d / f"{name}.ext").write_text(ext + "\n")
        extra = ["-extfile", f"{name}.ext"]
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-out", f"{name}.crt", "-days", "1", *extra, cwd=d)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a broker certificate for 127.0.0.1, a device certificate, and a rogue CA."""
    d = tmp_path_factory.mktemp("pki")
    for ca in ("ca", "rogue"):
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.crt", "-days", "1",
                 "-subj", f"/CN=store-edge test {ca}", cwd=d)
    _issue(d, "server", "127.0.0.1", ext="subjectAltName=IP:127.0.0.1")
    _issue(d, "device", "se-BJ001-BJ001-T1")
    return d


async def _deliver(tmp_path: Path, settings: MqttSettings, expect_online: bool) -> list[SyncState]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    ledger = new_ledger(tmp_path / "box.sqlite")
    append_events(ledger, 25)
    states: list[SyncState] = []
    task = asyncio.create_task(SyncService(tmp_path / "box.sqlite", IDENTITY, settings,
                                           states.append).run())
    try:
        for _ in range(300):
            if expect_online and ledger.backlog() == 0:
                break
            if not expect_online and len(states) >= 1 and not task.done():
                await asyncio.sleep(0.5)  # a few attempts
                break
            await asyncio.sleep(0.02)
        assert (ledger.backlog() == 0) is expect_online
        return states
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        ledger.close()


async def test_tls_with_client_certificate(tmp_path: Path, pki: Path) -> None:
    """GIVEN a TLS broker that requires a client certificate WHEN the box connects with the
    CA file and its device certificate THEN its events are delivered; WHEN it trusts another
    CA THEN it stays offline saying why, and keeps its events."""
    broker = Broker(tmp_path / "mq", listener_options=(
        f"cafile {pki}/ca.crt\ncertfile {pki}/server.crt\nkeyfile {pki}/server.key\n"
        "require_certificate true\nuse_identity_as_username true"), anonymous=False)
    broker.start()
    try:
        base = MqttSettings(port=broker.port, tls=True, ca_file=pki / "ca.crt",
                            backoff_min_s=0.05, backoff_max_s=0.2, connect_timeout_s=2)
        await _deliver(tmp_path / "good", base.with_(cert_file=pki / "device.crt",
                                                     key_file=pki / "device.key"), True)
        states = await _deliver(tmp_path / "rogue", base.with_(
            ca_file=pki / "rogue.crt", cert_file=pki / "device.crt",
            key_file=pki / "device.key"), False)
        assert not states[-1].online and "CERTIFICATE_VERIFY_FAILED" in states[-1].detail
    finally:
        broker.kill()


async def test_tls_with_username_and_password(tmp_path: Path, pki: Path) -> None:
    """GIVEN a TLS broker with a password file WHEN the box uses a wrong password THEN the
    broker refuses it and the state says so; WITH the right one THEN events are delivered."""
    (tmp_path / "mq").mkdir()
    pw = tmp_path / "mq" / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pw), "BJ001-T1", "s3cret"], check=True,
                   capture_output=True, timeout=30)
    pw.chmod(0o600)
    broker = Broker(tmp_path / "mq", listener_options=(
        f"cafile {pki}/ca.crt\ncertfile {pki}/server.crt\nkeyfile {pki}/server.key\n"
        f"password_file {pw}"), anonymous=False)
    broker.start()
    try:
        base = MqttSettings(port=broker.port, tls=True, ca_file=pki / "ca.crt",
                            username="BJ001-T1", backoff_min_s=0.05, backoff_max_s=0.2,
                            connect_timeout_s=2)
        states = await _deliver(tmp_path / "bad", base.with_(password="wrong"), False)
        assert "refused" in states[-1].detail
        await _deliver(tmp_path / "good", base.with_(password="s3cret"), True)
    finally:
        broker.kill()
