"""Issue 14's "done when": install, enrol, provision, sync over TLS with per-device ACLs.

HQ keeps mosquitto's accounts (``--broker-auth``): a bundle's token is its claim account,
an enrolled box gets its own password sealed to its device key. Everything is real:
mosquitto with TLS (a CA made here with openssl), the generated password file and ACL,
``edge-hq enrol-serve`` and ``edge provision``/``doctor``/``sync`` as processes,
``install.sh`` into a root tree.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cli import hq as hq_cli
from edge.box import Box
from edge.keys import Purpose, SigningKey
from hq.broker import BrokerOptions
from hq.db import Database
from hq.ingest.eventstore import EventStore
from hq.ingest.worker import IngestWorker
from hq.issuing import keystore
from hq.issuing.enrol_service import EnrolService
from hq.issuing.registry import DeviceRegistry
from provisioning import brokeraccounts, brokerauth
from provisioning.brokerauth import HQ_ENROL_USER, HQ_INGEST_USER, HQ_PUBLISH_USER
from provisioning.localbroker import Broker, free_port
from sync.contract import EnrolReply, Topics, claim_username
from tests.test_broker_acl import connect
from tests.test_install import install
from tests.test_sync_tls import pki  # noqa: F401  (a CA and a broker certificate)

pytestmark = pytest.mark.network

STORE = "BJ001"
HQ_PASSWORDS = {HQ_INGEST_USER: "ingest-pw", HQ_PUBLISH_USER: "publish-pw",
                HQ_ENROL_USER: "enrol-pw"}


@dataclass
class Hq:
    home: Path
    auth: Path  # mosquitto's password file and ACL
    passwords: Path  # HQ's users' passwords (JSON)
    broker: Broker
    hq_port: int  # HQ's own listener (plain, loopback)
    pid_file: Path

    def cli(self, *args: str) -> list[str]:
        return ["--home", str(self.home), *args, "--broker-auth", str(self.auth),
                "--passwords", str(self.passwords), "--broker-pid-file", str(self.pid_file)]


@pytest.fixture
def hq(tmp_path: Path, pki: Path) -> Iterator[Hq]:  # noqa: F811
    """HQ's keys; mosquitto with TLS for stores, a plain listener for HQ, files from HQ."""
    home = tmp_path / "hq"
    keystore.create_key(home, "HQ1", [Purpose.COUPON, Purpose.PICKUP, Purpose.CONFIG])
    passwords = tmp_path / "hq-passwords.json"
    fd = os.open(passwords, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(HQ_PASSWORDS, f)
    auth = tmp_path / "auth"
    assert hq_cli.main(["--home", str(home), "broker-auth", "--out", str(auth),
                        "--passwords", str(passwords)]) == 0
    hq_port = free_port()
    pid_file = tmp_path / "mq" / "mosquitto.pid"
    broker = Broker(tmp_path / "mq", anonymous=False, listener_options=(
        f"cafile {pki}/ca.crt\ncertfile {pki}/server.crt\nkeyfile {pki}/server.key\n"
        + brokerauth.mosquitto_lines(auth / "passwords", auth / "acl", hq_port)
        + f"pid_file {pid_file}\n"))
    broker.start()
    yield Hq(home, auth, passwords, broker, hq_port, pid_file)
    broker.stop()


def edge(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.edge", "--home", str(home), *args],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def enrol_serve(hq: Hq) -> Iterator[subprocess.Popen[str]]:
    """`edge-hq enrol-serve` as hq-enrol on HQ's listener, once it has subscribed."""
    env = {**os.environ, "HQ_MQTT_PASSWORD": HQ_PASSWORDS[HQ_ENROL_USER]}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.hq", *hq.cli("enrol-serve", "--broker",
                                                f"mqtt://127.0.0.1:{hq.hq_port}",
                                                "--username", HQ_ENROL_USER)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, env=env)
    ready = threading.Event()
    lines: list[str] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if "serving enrolments" in line:
                ready.set()
    threading.Thread(target=read, daemon=True).start()
    assert ready.wait(30), "".join(lines)
    yield proc
    proc.terminate()
    proc.wait(10)


def make_bundle(hq: Hq, pki: Path, out: Path, *extra: str) -> Path:  # noqa: F811
    assert hq_cli.main(hq.cli("enrol", "--store", STORE, "--out", str(out), "--broker",
                              f"mqtts://127.0.0.1:{hq.broker.port}", "--ca-file",
                              str(pki / "ca.crt"), *extra)) == 0
    return out


@pytest.mark.slow
def test_install_enrol_provision_sync_doctor(tmp_path: Path, hq: Hq, pki: Path,  # noqa: F811
                                             enrol_serve: subprocess.Popen[str],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """GIVEN install.sh run into a root tree (users, venv, /var/lib/store-edge 0700, units),
    a TLS mosquitto whose password file and ACL HQ writes, edge-hq enrol-serve as hq-enrol
    WHEN HQ makes a bundle, the box provisions into the tree's state folder with it, runs
    doctor, prints a card and syncs, and provisions again
    THEN the box holds its own password (0600) that [mqtt] points at, the token's claim
    account cannot publish events; every file made as root belongs to the service user;
    doctor passes over TLS; HQ's ingest (as hq-ingest, the
    registry from enrolment) stores the card event; the second run changes nothing."""
    tree = tmp_path / "root"
    (tree / "etc").mkdir(parents=True)
    for name in ("passwd", "group", "shadow", "gshadow"):
        (tree / "etc" / name).write_bytes((Path("/etc") / name).read_bytes())
    assert "units enabled, not started" in install(tree)
    home = tree / "var/lib/store-edge"
    assert stat.S_IMODE(home.stat().st_mode) == 0o700 and not any(home.iterdir())

    bundle = make_bundle(hq, pki, tmp_path / "bj001.bundle")
    token = json.loads(bundle.read_text())["token"]
    done = edge("provision", str(bundle), "--device", "BJ001-T1", "--timeout", "20",
                "--lang", "en", home=home)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "enrolled: store BJ001, device BJ001-T1" in done.stdout
    password = home / "mqtt-password"
    assert stat.S_IMODE(password.stat().st_mode) == 0o600
    service_uid = home.stat().st_uid  # the tree's store-edge user, from install.sh
    assert service_uid != 0
    assert {p.stat().st_uid for p in home.rglob("*")} == {service_uid}  # sudo edge provision
    box = Box.open(home)
    try:
        assert box.config.raw["mqtt"]["username"] == "BJ001-T1"
        assert box.config.raw["mqtt"]["password_file"] == "mqtt-password"
        public = box.device_key.public_key
    finally:
        box.close()
    assert keystore.load_devices(hq.home)["BJ001-T1"]["public_key"] == public.hex()
    assert password.read_text().strip() not in (hq.auth / "passwords").read_text()
    assert "user BJ001-T1" in (hq.auth / "acl").read_text()

    claim, rc = connect(hq.broker.port, claim_username(token), token, tls_ca=pki / "ca.crt")
    try:
        assert not rc.is_failure  # the token's account lives until the token expires
        assert claim.publish(Topics("se").events(STORE, "BJ001-T1"), b"forged").is_failure
    finally:
        claim.close()

    doctor = edge("doctor", "--lang", "en", home=home)
    assert doctor.returncode == 0, doctor.stdout
    assert "TLS" in doctor.stdout

    db = Database(f"sqlite:///{tmp_path / 'hq.sqlite'}")
    worker = IngestWorker(EventStore(db, Topics("se"), DeviceRegistry(hq.home)),
                          BrokerOptions(port=hq.hq_port, username=HQ_INGEST_USER,
                                        password=HQ_PASSWORDS[HQ_INGEST_USER]),
                          "hq-ingest-1", "g", 600)
    worker.start()
    try:
        assert worker.wait_subscribed()
        assert edge("card", home=home).returncode == 0
        synced = edge("sync", "--until-drained", "--timeout", "30", home=home)
        assert synced.returncode == 0, synced.stdout + synced.stderr
        deadline = time.monotonic() + 30
        while worker.counters.new_events < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert worker.counters.new_events >= 1 and worker.counters.rejected == 0
    finally:
        worker.stop()
        db.close()

    before = {p.name: p.read_bytes() for p in home.iterdir() if p.is_file()
              and not p.name.startswith("ledger")}
    again = edge("provision", str(bundle), "--device", "BJ001-T1", "--lang", "en", home=home)
    assert again.returncode == 0 and "already enrolled" in again.stdout
    assert {p.name: p.read_bytes() for p in home.iterdir() if p.is_file()
            and not p.name.startswith("ledger")} == before


def test_expired_claim_and_credentials_retry(tmp_path: Path, hq: Hq, pki: Path,  # noqa: F811
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """GIVEN the TLS broker whose accounts HQ writes
    WHEN a box provisions with an expired bundle; then with a good one while HQ's
    credential issuer fails; then again once it works
    THEN the expired bundle's account is refused by the broker, in words for the
    installer; the failing issuer's answer says to retry and the box keeps its key; the
    retry (same token, same key) is answered ok with a password that logs in as the box."""
    expired = make_bundle(hq, pki, tmp_path / "old.bundle", "--ttl", "0")
    done = edge("provision", str(expired), "--device", "BJ001-T1", "--timeout", "10",
                home=tmp_path / "a")
    assert done.returncode == 1 and "拒绝了此登记文件" in done.stderr, done.stderr

    good = make_bundle(hq, pki, tmp_path / "new.bundle")
    opts = BrokerOptions(port=hq.hq_port, username=HQ_ENROL_USER,
                         password=HQ_PASSWORDS[HQ_ENROL_USER])

    def broken(_store: str, _device: str) -> str:
        raise brokeraccounts.BrokerAccountsError("disk full")

    accounts = brokeraccounts.BrokerAccounts(hq.home, hq.auth, HQ_PASSWORDS, "se", hq.pid_file)
    home = tmp_path / "b"
    for issuer, expect in ((broken, 1), (accounts.issue, 0)):
        service = EnrolService(hq.home, opts, credentials=issuer)
        service.start()
        try:
            assert service.subscribed.wait(10)
            done = edge("provision", str(good), "--device", "BJ001-T2", "--timeout", "10",
                        home=home)
        finally:
            service.stop()
        assert done.returncode == expect, done.stdout + done.stderr
        if expect:
            assert "无法发放连接凭据" in done.stderr and not (home / "mqtt-password").exists()
            first_key = (home / "device.key").read_bytes()
    assert (home / "device.key").read_bytes() == first_key
    box, rc = connect(hq.broker.port, "BJ001-T2", (home / "mqtt-password").read_text().strip(),
                      tls_ca=pki / "ca.crt")
    try:
        assert not rc.is_failure
        assert not box.publish(Topics("se").events(STORE, "BJ001-T2"), b"mine").is_failure
        assert box.publish(Topics("se").events(STORE, "BJ001-T1"), b"not mine").is_failure
    finally:
        box.close()


def test_sealed_password_opens_only_with_the_device_key() -> None:
    """GIVEN a reply carrying a password sealed to one device key
    WHEN it is encoded and decoded, and opened with that key and with another
    THEN it round-trips, opens with its key only; a reply with a username and no sealed
    password is not a reply."""
    import base64

    from edge.keys import seal_to
    from sync.contract import ContractError

    key, other = SigningKey.generate("d"), SigningKey.generate("x")
    sealed = base64.b64encode(seal_to(key.public_key, b"s3cret")).decode()
    reply = EnrolReply.decode(EnrolReply("ok", "", "BJ001-T1", sealed).encode())
    assert reply.username == "BJ001-T1"
    assert key.unseal(base64.b64decode(reply.sealed_password)) == b"s3cret"
    with pytest.raises(ValueError, match="cannot open"):
        other.unseal(base64.b64decode(reply.sealed_password))
    with pytest.raises(ContractError, match="go together"):
        EnrolReply.decode(b'{"code": "ok", "username": "BJ001-T1"}')
