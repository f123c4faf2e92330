"""Enrolment: ``edge-hq enrol`` makes a bundle (file and QR), ``edge provision`` on a new
box registers its fresh key with HQ over a real broker using the one-time token; a token
used twice, expired or for another store is refused with words for the installer."""

from __future__ import annotations

import json
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest
import zxingcpp

from cli import hq as hq_cli
from cli.edge import main as edge
from edge.box import Box
from edge.keys import Purpose, SigningKey
from hq.broker import BrokerOptions
from hq.issuing import enrolment, keystore
from hq.issuing.enrol_service import EnrolService
from provisioning.localbroker import Broker
from sync.contract import EnrolRequest
from tests.test_sync_tls import pki  # noqa: F401  (a CA and a broker certificate)

STORE = "BJ001"


@pytest.fixture
def hq_home(tmp_path: Path) -> Path:
    home = tmp_path / "hq"
    keystore.create_key(home, "HQ1", [Purpose.COUPON, Purpose.PICKUP, Purpose.CONFIG])
    return home


@pytest.fixture
def service(hq_home: Path, broker: Broker) -> Iterator[EnrolService]:
    s = EnrolService(hq_home, BrokerOptions(host=broker.host, port=broker.port))
    s.start()
    assert s.subscribed.wait(10)
    yield s
    s.stop()


def make_bundle(hq_home: Path, broker: Broker, out: Path, capsys: pytest.CaptureFixture[str],
                *extra: str) -> Path:
    assert hq_cli.main(["--home", str(hq_home), "enrol", "--store", STORE, "--out", str(out),
                        "--broker", f"mqtt://{broker.host}:{broker.port}", *extra]) == 0
    capsys.readouterr()
    return out


def provision(home: Path, bundle: Path, device: str, capsys: pytest.CaptureFixture[str]
              ) -> tuple[int, str, str]:
    code = edge(["--home", str(home), "provision", str(bundle), "--device", device,
                 "--timeout", "10"])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_bundle_provision_and_a_second_use(tmp_path: Path, hq_home: Path, broker: Broker,
                                           service: EnrolService,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """GIVEN HQ with its keys and the enrolment service on a real broker
    WHEN HQ makes a bundle for BJ001, a new box provisions with it, provisions again, and a
    second box tries the same bundle
    THEN the bundle file is 0600 and its QR decodes to the same bundle; the box has a 0600
    device key whose public half HQ now lists for BJ001-T1, trusts HQ's keys, has the
    broker in [mqtt] and passes edge doctor; the second run changes nothing; the second
    box is refused in Chinese (此登记文件已用过) and HQ's registry is unchanged."""
    bundle = make_bundle(hq_home, broker, tmp_path / "bj001.bundle", capsys)
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o600
    decoded = zxingcpp.read_barcodes(cv2.imread(str(bundle) + ".png"))
    assert [json.loads(r.text) for r in decoded] == [json.loads(bundle.read_text())]

    box_home = tmp_path / "box"
    code, out, err = provision(box_home, bundle, "BJ001-T1", capsys)
    assert code == 0, err
    assert "本机已登记：门店 BJ001，设备 BJ001-T1" in out
    assert stat.S_IMODE((box_home / "device.key").stat().st_mode) == 0o600
    box = Box.open(box_home)
    try:
        public = box.device_key.public_key.hex()
        assert [k.key_id for k in box.ledger.trusted_keys()] == ["HQ1"]
        assert box.config.raw["mqtt"]["port"] == broker.port
    finally:
        box.close()
    assert keystore.load_devices(hq_home)["BJ001-T1"] == {"store": STORE, "public_key": public}
    assert edge(["--home", str(box_home), "doctor"]) == 0, capsys.readouterr().out
    capsys.readouterr()

    code, out, _ = provision(box_home, bundle, "BJ001-T1", capsys)
    assert code == 0 and "早已登记" in out
    assert Box.open(box_home).device_key.public_key.hex() == public

    code, _, err = provision(tmp_path / "box2", bundle, "BJ001-T2", capsys)
    assert code == 1 and "此登记文件已用过" in err
    assert set(keystore.load_devices(hq_home)) == {"BJ001-T1"}


def test_expired_bundle_and_hq_unreachable(tmp_path: Path, hq_home: Path, broker: Broker,
                                           service: EnrolService,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """GIVEN a bundle whose token has expired, and a good one
    WHEN a box provisions with the expired one; then with the good one while the broker is
    down; then again with the broker back
    THEN the first is refused as expired; the second says HQ cannot be reached and keeps
    the key it made; the third enrols that same key."""
    expired = make_bundle(hq_home, broker, tmp_path / "old.bundle", capsys, "--ttl", "0")
    code, _, err = provision(tmp_path / "a", expired, "BJ001-T1", capsys)
    assert code == 1 and "已过期" in err
    good = make_bundle(hq_home, broker, tmp_path / "new.bundle", capsys)
    service.stop()
    broker.kill()
    home = tmp_path / "b"
    code, _, err = provision(home, good, "BJ001-T2", capsys)
    assert code == 1 and "连不上总部" in err
    kept = Box.open(home)
    public = kept.device_key.public_key.hex()
    kept.close()
    broker.start()
    again = EnrolService(hq_home, BrokerOptions(host=broker.host, port=broker.port))
    again.start()
    try:
        assert again.subscribed.wait(10)
        code, _out, err = provision(home, good, "BJ001-T2", capsys)
        assert code == 0, err
    finally:
        again.stop()
    assert keystore.load_devices(hq_home)["BJ001-T2"]["public_key"] == public


def test_redeem_refusals(hq_home: Path) -> None:
    """GIVEN a token for BJ001
    WHEN it is offered for another store, with a signature by another key, or with a
    device name HQ has under another key
    THEN each is refused with its own code and nothing is registered, and the token still
    works for a proper request."""
    bundle = enrolment.make_bundle(hq_home, STORE, enrolment.Broker("127.0.0.1", 1883))
    key, other = SigningKey.generate("d"), SigningKey.generate("x")

    def request(store: str, device: str, signer: SigningKey) -> EnrolRequest:
        r = EnrolRequest(bundle["token"], store, device, key.public_key.hex())
        return EnrolRequest(r.token, store, device, r.public_key,
                            signer.sign(r.message()).hex())

    assert enrolment.redeem(hq_home, request("SH001", "SH001-T1", key)).code == "wrong_store"
    assert enrolment.redeem(hq_home, request(STORE, "BJ001-T1", other)).code == "bad_signature"
    keystore.register_device(hq_home, "BJ001-T9", STORE, other.public_key)
    assert enrolment.redeem(hq_home, request(STORE, "BJ001-T9", key)).code == "device_exists"
    assert enrolment.redeem(hq_home, EnrolRequest("nope", STORE, "BJ001-T1", "00", "00"),
                            time.time()).code == "token_unknown"
    assert set(keystore.load_devices(hq_home)) == {"BJ001-T9"}
    assert enrolment.redeem(hq_home, request(STORE, "BJ001-T1", key)).ok


def test_provisioned_box_syncs_over_tls(tmp_path: Path, hq_home: Path, pki: Path,  # noqa: F811
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """GIVEN a TLS-only broker with HQ's CA, and the enrolment service on it
    WHEN HQ makes a bundle for mqtts://127.0.0.1 with that CA and a box provisions with it
    THEN the box keeps the CA beside its config, edge doctor passes (HQ link over TLS),
    and edge sync gets online and drained over TLS."""
    broker = Broker(tmp_path / "mq", listener_options=(
        f"cafile {pki}/ca.crt\ncertfile {pki}/server.crt\nkeyfile {pki}/server.key"))
    broker.start()
    opts = BrokerOptions(host=broker.host, port=broker.port, tls=True,
                         ca_file=str(pki / "ca.crt"))
    service = EnrolService(hq_home, opts)
    service.start()
    try:
        assert service.subscribed.wait(10)
        bundle = make_bundle(hq_home, broker, tmp_path / "tls.bundle", capsys, "--broker",
                             f"mqtts://127.0.0.1:{broker.port}", "--ca-file",
                             str(pki / "ca.crt"))
        home = tmp_path / "box"
        code, _out, err = provision(home, bundle, "BJ001-T1", capsys)
        assert code == 0, err
        assert (home / "hq-ca.pem").read_text() == (pki / "ca.crt").read_text()
        assert edge(["--home", str(home), "doctor", "--lang", "en"]) == 0
        assert "TLS" in capsys.readouterr().out
        assert edge(["--home", str(home), "sync", "--until-drained", "--timeout", "20"]) == 0
    finally:
        service.stop()
        broker.kill()
