"""Key roles on the box (issue 11, attack 7): each HQ key signs only its own kinds, and
only the trust root changes the set of trusted keys (``docs/security.md``)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from cli.hq import main
from edge import tokens
from edge.hqdata import required_purpose
from edge.keys import Purpose, SigningKey, TrustedKey
from edge.ledger import Ledger
from edge.rules import Counter
from edge.storeconfig import TRUST_VERSION_SETTING, Outcome, Rejection
from edge.verdict import Reason
from hq.issuing.codes import sign_token
from sync.contract import DataKind, HqData, RemoteUse, Topics, encode_remote_uses, seal
from sync.inbound import Inbound
from tests.sync_fixtures import IDENTITY, config_body, key_entry, sealed

ROLES = {"coupon": (Purpose.COUPON, Purpose.PICKUP), "config": (Purpose.CONFIG,),
         "data": (Purpose.DATA,), "trust": (Purpose.TRUST,)}


def _keys(tag: str) -> dict[str, SigningKey]:
    return {role: SigningKey.generate(f"{role}-{tag}") for role in ROLES}


def _record(key: SigningKey, role: str) -> TrustedKey:
    return TrustedKey(key.key_id, key.public_key, frozenset(ROLES[role]))


def _entries(keys: dict[str, SigningKey]) -> list[dict[str, Any]]:
    return [key_entry(k, tuple(p.value for p in ROLES[role])) for role, k in keys.items()]


def _trust_list(root: SigningKey, keys: dict[str, SigningKey], version: int) -> dict[str, Any]:
    return seal(root, HqData(DataKind.TRUST, "*", version, time.time(),
                             {"keys": _entries(keys)})).to_object()


def _config(key: SigningKey, version: int, trust: dict[str, Any] | None = None,
            **over: Any) -> bytes:
    body = config_body()
    del body["keys"]
    body.update(over)
    if trust is not None:
        body["trust"] = trust
    return sealed(key, DataKind.CONFIG, version, body)


def _uses(key: SigningKey, version: int) -> bytes:
    return sealed(key, DataKind.REMOTE_USES, version,
                  encode_remote_uses([RemoteUse("C:X", "SH002", 1, time.time())]))


def _box(tmp_path: Path, keys: dict[str, SigningKey]) -> tuple[Ledger, Inbound]:
    ledger = Ledger(tmp_path / "box.sqlite")
    with ledger.immediate() as conn:
        for role, key in keys.items():
            ledger.put_trusted_key(conn, _record(key, role))
    return ledger, Inbound(ledger, IDENTITY, Topics("se"))


def _outcome(inbound: Inbound, topic: str, raw: bytes) -> tuple[Outcome, Rejection | None]:
    result = inbound.handle(topic, raw)
    assert result is not None
    return result.outcome, result.reason


def _coupon(key: SigningKey, coupon_id: str) -> str:
    now = int(time.time())
    return sign_token(key, tokens.Coupon(key.key_id, coupon_id, "LIVE1125",
                                         tokens.Channel.LIVESTREAM,
                                         tokens.Benefit(tokens.BenefitKind.FREE_ITEM, 1, "咖啡"),
                                         now - 60, now + 3600))


def test_every_kind_but_config_and_trust_needs_the_data_role() -> None:
    """GIVEN every kind an HQ-to-box envelope can carry THEN config needs a config key, a
    trust list the trust root, and every other kind (today's and any added) a data key."""
    special = {DataKind.CONFIG: Purpose.CONFIG, DataKind.TRUST: Purpose.TRUST}
    for kind in DataKind:
        assert required_purpose(kind) is special.get(kind, Purpose.DATA)


def test_a_data_key_cannot_change_config_or_trust(tmp_path: Path) -> None:
    """GIVEN a box trusting one key per role (coupon, config, data, trust root)
    WHEN the data key signs a config; signs a trust list adding an attacker's key inside a
    config the config key signed; the config key itself lists an attacker's key; the
    config key signs remote uses
    THEN each is refused as untrusted_key and the box's config and trusted set stay;
    the data key's remote uses and the config key's config are applied."""
    keys = _keys("a")
    ledger, inbound = _box(tmp_path, keys)
    attacker = SigningKey.generate("evil")
    before = ledger.trusted_keys()
    grabbed = {**keys, "config": attacker}
    for raw in (_config(keys["data"], 1),
                _config(keys["config"], 1, _trust_list(keys["data"], grabbed, 1)),
                _config(keys["config"], 1, keys=_entries(grabbed))):
        assert _outcome(inbound, inbound.config_topic, raw) == (Outcome.REJECTED,
                                                                Rejection.UNTRUSTED_KEY)
    assert _outcome(inbound, inbound.data_topic, _uses(keys["config"], 1)) == (
        Outcome.REJECTED, Rejection.UNTRUSTED_KEY)
    assert ledger.trusted_keys() == before and int(ledger.setting("config_version")) == 0
    assert _outcome(inbound, inbound.data_topic, _uses(keys["data"], 1))[0] is Outcome.APPLIED
    assert _outcome(inbound, inbound.config_topic, _config(keys["config"], 1))[0] is \
        Outcome.APPLIED
    assert ledger.trusted_keys() == before
    ledger.close()


def test_the_trust_root_rotates_every_key_and_the_box_learns_the_set_from_a_config(
        tmp_path: Path) -> None:
    """GIVEN a box trusting one key per role
    WHEN the root signs a list of all-new coupon, config and data keys (itself kept) and
    HQ pushes it inside a config already signed by the new config key
    THEN the box applies it: the old config, data and coupon keys are refused, the new
    ones work;
    WHEN the root hands over to a new root, and later the old root signs another list
    THEN the old root's list is refused and the new root's applied; an older list from
    the current root is refused as stale."""
    old, new = _keys("old"), _keys("new")
    ledger, inbound = _box(tmp_path, old)
    counter = Counter(ledger, IDENTITY)
    assert counter.redeem(_coupon(old["coupon"], "OLD-1")).accepted
    rotated = {**new, "trust": old["trust"]}
    cfg = _config(new["config"], 1, _trust_list(old["trust"], rotated, 1))
    assert _outcome(inbound, inbound.config_topic, cfg)[0] is Outcome.APPLIED
    assert {k.key_id for k in ledger.trusted_keys()} == {k.key_id for k in rotated.values()}
    assert int(ledger.setting(TRUST_VERSION_SETTING)) == 1
    assert _outcome(inbound, inbound.config_topic, _config(old["config"], 2)) == (
        Outcome.REJECTED, Rejection.UNTRUSTED_KEY)
    assert _outcome(inbound, inbound.data_topic, _uses(old["data"], 1))[1] is \
        Rejection.UNTRUSTED_KEY
    assert _outcome(inbound, inbound.data_topic, _uses(new["data"], 1))[0] is Outcome.APPLIED
    assert counter.redeem(_coupon(old["coupon"], "OLD-2")).reason is Reason.UNKNOWN_KEY
    assert counter.redeem(_coupon(new["coupon"], "NEW-1")).accepted
    # The root hands over: v2 names the new root only.
    assert _outcome(inbound, inbound.config_topic,
                    _config(new["config"], 2, _trust_list(old["trust"], new, 2)))[0] is \
        Outcome.APPLIED
    assert _outcome(inbound, inbound.config_topic,
                    _config(new["config"], 3, _trust_list(old["trust"], rotated, 3))) == (
        Outcome.REJECTED, Rejection.UNTRUSTED_KEY)
    assert _outcome(inbound, inbound.config_topic,
                    _config(new["config"], 3, _trust_list(new["trust"], new, 1))) == (
        Outcome.REJECTED, Rejection.STALE)
    assert _outcome(inbound, inbound.config_topic,
                    _config(new["config"], 3, _trust_list(new["trust"], new, 3)))[0] is \
        Outcome.APPLIED
    assert int(ledger.setting(TRUST_VERSION_SETTING)) == 3
    ledger.close()


def test_a_box_provisioned_before_key_roles_migrates_with_its_first_trust_list(
        tmp_path: Path) -> None:
    """GIVEN a box provisioned before key roles (one HQ key: coupon, pickup, config)
    WHEN that key signs remote uses THEN they apply, as before;
    WHEN a stranger's key signs a config carrying a list its own root signed THEN it is
    refused; WHEN the old key signs a config carrying the new root's first list (which
    keeps the old key for coupons and config only)
    THEN the box applies it, and from then on the old key signs no data and cannot
    change the set."""
    legacy = SigningKey.generate("HQ1")
    ledger = Ledger(tmp_path / "box.sqlite")
    with ledger.immediate() as conn:
        ledger.put_trusted_key(conn, TrustedKey(legacy.key_id, legacy.public_key, frozenset(
            {Purpose.COUPON, Purpose.PICKUP, Purpose.CONFIG})))
    inbound = Inbound(ledger, IDENTITY, Topics("se"))
    assert _outcome(inbound, inbound.data_topic, _uses(legacy, 1))[0] is Outcome.APPLIED
    evil = _keys("evil")
    assert _outcome(inbound, inbound.config_topic,
                    _config(evil["config"], 1, _trust_list(evil["trust"], evil, 1)))[1] is \
        Rejection.UNTRUSTED_KEY
    roles = _keys("r")
    first = {**roles, "coupon": legacy}
    entries = _entries(first)
    entries[0]["purposes"] = ["config", "coupon", "pickup"]  # the old key keeps its jobs
    listed = seal(roles["trust"], HqData(DataKind.TRUST, "*", 1, time.time(),
                                         {"keys": entries})).to_object()
    assert _outcome(inbound, inbound.config_topic, _config(legacy, 1, listed))[0] is \
        Outcome.APPLIED
    assert {k.key_id for k in ledger.trusted_keys()} == {k.key_id for k in first.values()}
    assert _outcome(inbound, inbound.data_topic, _uses(legacy, 2))[1] is \
        Rejection.UNTRUSTED_KEY
    assert _outcome(inbound, inbound.data_topic, _uses(roles["data"], 2))[0] is Outcome.APPLIED
    assert _outcome(inbound, inbound.config_topic,
                    _config(legacy, 2, keys=_entries(evil))) == (
        Outcome.REJECTED, Rejection.UNTRUSTED_KEY)
    ledger.close()


def test_hq_keeps_roles_apart(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """GIVEN an HQ home
    WHEN a trust-root key is made with another purpose THEN keygen refuses (exit 2);
    WHEN ingest is started with a key that can sign data and config THEN it refuses before
    connecting, naming why; sign-trust signs the home's keys, version 1 then 2."""
    home = ["--home", str(tmp_path / "hq")]
    assert main([*home, "keygen", "--key-id", "root", "--purposes", "trust,config"]) == 2
    assert "trust purpose alone" in capsys.readouterr().err
    assert main([*home, "keygen", "--key-id", "root", "--purposes", "trust"]) == 0
    assert main([*home, "keygen", "--key-id", "cfg", "--purposes", "config"]) == 0
    assert main([*home, "keygen", "--key-id", "both", "--purposes", "data,config"]) == 0
    capsys.readouterr()
    assert main([*home, "ingest", "--db", f"sqlite:///{tmp_path / 'hq.sqlite'}",
                 "--broker", "mqtt://127.0.0.1:9"]) == 2
    assert "data-only key" in capsys.readouterr().err
    for version in (1, 2):
        assert main([*home, "sign-trust"]) == 0
        assert json.loads(capsys.readouterr().out)["version"] == version
    trust = json.loads((tmp_path / "hq" / "trust.json").read_text())
    payload = json.loads(trust["payload"])
    assert (payload["kind"], payload["store"], trust["key_id"]) == ("trust", "*", "root")
