"""``edge provision BUNDLE``: a new box joins its store with a bundle from ``edge-hq enrol``.

It makes the box home (a fresh device key, mode 0600, that never leaves the box; HQ's
trust root; ``edge.toml`` with the store, the device and the ``[mqtt]`` table from the
bundle, the broker's CA beside it), then registers the device's public key with HQ over
MQTT, sending the bundle's one-time token and a signature by the new key
(``sync.contract.EnrolRequest``), and waits for HQ's answer. It connects as the bundle's
claim account (username ``sync.contract.claim_username(token)``, the token as password),
which may reach the enrolment topics of its store and nothing else. HQ's answer may carry
the box's own broker password, sealed to the device key: it is kept in
``mqtt-password`` (0600) and ``[mqtt]`` gets ``username`` (the device id) and
``password_file``. Running it again is safe: a box already enrolled for that store is left
as it is; one whose registration did not finish (HQ unreachable, a refused token) keeps
its key and tries again.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import threading
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from edge import config as box_config
from edge.box import Box, init_home
from edge.config import ConfigError
from edge.keys import parse_trust
from sync.contract import (
    QOS,
    EnrolReply,
    EnrolRequest,
    Topics,
    claim_username,
    enrol_reply_topic,
    enrol_topic,
)

ENROLLED: Final = "enrolled.json"
CA_NAME: Final = "hq-ca.pem"
PASSWORD_NAME: Final = "mqtt-password"  # the box's broker password, 0600, [mqtt] password_file


class ProvisionError(Exception):
    """Provisioning did not finish; ``code`` is HQ's reason or ``unreachable``/``bad_bundle``."""

    def __init__(self, code: str, message: str) -> None:
        """Carry the reason code and the words."""
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Outcome:
    """What provisioning did."""

    store: str
    device: str
    public_key: str
    already: bool  # the box was enrolled before this run
    credentials: bool = False  # the box holds broker credentials HQ issued


def read_bundle(path: Path) -> dict[str, Any]:
    """The bundle in the file at ``path``, checked for the fields provisioning uses.

    Raises:
        ProvisionError: ``bad_bundle`` when it is unreadable or incomplete.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, ValueError) as exc:
        raise ProvisionError("bad_bundle", f"{path} is not an enrolment bundle: {exc}") from None
    return parse_bundle(text, str(path))


def parse_bundle(text: str, where: str) -> dict[str, Any]:
    """The bundle in ``text`` (a file's or a scanned QR's), checked for the fields used.

    Raises:
        ProvisionError: ``bad_bundle`` naming ``where`` when it is not a bundle.
    """
    try:
        bundle = json.loads(text)
        if not isinstance(bundle, dict):
            raise TypeError("not a JSON object")
        broker = bundle["broker"]
        for key, kind in (("store", str), ("token", str), ("trust", list)):
            if not isinstance(bundle[key], kind):
                raise TypeError(f"{key} must be {kind.__name__}")
        if not isinstance(broker["host"], str) or not isinstance(broker["port"], int):
            raise TypeError("broker host and port")
        parse_trust(bundle["trust"])
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise ProvisionError("bad_bundle", f"{where} is not an enrolment bundle: {exc}"
                             ) from None
    return bundle


def _mqtt_table(bundle: dict[str, Any], with_ca: bool) -> str:
    b = bundle["broker"]
    lines = ["", "[mqtt]", f"host = {json.dumps(b['host'])}", f"port = {int(b['port'])}",
             f"root = {json.dumps(b.get('root', 'se'))}"]
    if b.get("tls"):
        lines.append("tls = true")
        if with_ca:
            lines.append(f'ca_file = "{CA_NAME}"')
    return "\n".join(lines) + "\n"


def provision(bundle_in: Path | dict[str, Any], home: Path, device: str,
              timeout: float = 30.0, printer: str | None = None,
              scanner: str | None = None) -> Outcome:
    """Make (or finish) the box home at ``home`` as ``device`` of the bundle's store.

    ``bundle_in`` is the bundle file or a bundle already read (``--scan``). A new home gets
    ``[printer] url = printer`` and ``[scanner] port = scanner`` when given; an existing
    one is not changed.

    Raises:
        ProvisionError: a bad bundle, HQ unreachable, or HQ refused (``token_used``,
            ``token_expired``, ``wrong_store``...): the message says which.
        edge.config.ConfigError: a bad device id, or the home belongs to another store.
    """
    bundle = read_bundle(bundle_in) if isinstance(bundle_in, Path) else bundle_in
    store = bundle["store"]
    if (home / box_config.CONFIG_NAME).exists():
        cfg = box_config.load(home)
        if cfg.store_id != store:
            raise ConfigError(f"{home} is the box of store {cfg.store_id}, not {store}: "
                              "a factory reset comes first")
        device = cfg.device_id
        if (home / ENROLLED).exists():
            box = Box.open(home)
            try:
                return Outcome(store, device, box.device_key.public_key.hex(), True,
                               (home / PASSWORD_NAME).exists())
            finally:
                box.close()
    else:
        ca = bundle.get("ca")
        init_home(home, store, device, parse_trust(bundle["trust"]), str(bundle.get("name", "")))
        if ca:
            (home / CA_NAME).write_text(ca)
        with (home / box_config.CONFIG_NAME).open("a", encoding="utf-8") as f:
            if printer:
                f.write(f"\n[printer]\nurl = {json.dumps(printer)}\n")
            if scanner:
                f.write(f"\n[scanner]\nport = {json.dumps(scanner)}\n")
            f.write(_mqtt_table(bundle, bool(ca)))  # last: credentials are appended to it
    box = Box.open(home)
    try:
        key = box.device_key
        request = EnrolRequest(bundle["token"], store, device, key.public_key.hex())
        request = EnrolRequest(request.token, store, device, request.public_key,
                               key.sign(request.message()).hex())
        _match_owner(home)  # the key and ledger are the service user's even if HQ refuses
        reply = _exchange(bundle, home, request, timeout)
        if not reply.ok:
            raise ProvisionError(reply.code, reply.message)
        if reply.username:
            _keep_credentials(home, reply, key.unseal)
    finally:
        box.close()
    (home / ENROLLED).write_text(json.dumps({"store": store, "device": device,
                                             "at": time.time(), "hq": reply.message}) + "\n")
    _match_owner(home)
    return Outcome(store, device, request.public_key, False, bool(reply.username))


def _match_owner(home: Path) -> None:
    """Run as root in the service user's folder: hand it what was made there.

    ``install.sh`` makes ``/var/lib/store-edge`` the service user's (0700); ``sudo edge
    provision`` would otherwise leave a device key and ledger the daemon cannot read.
    """
    st = home.stat()
    if os.geteuid() != 0 or st.st_uid == 0:
        return
    for folder, dirs, files in os.walk(home):
        for name in dirs + files:
            path = os.path.join(folder, name)
            if os.lstat(path).st_uid != st.st_uid:
                os.lchown(path, st.st_uid, st.st_gid)


def _keep_credentials(home: Path, reply: EnrolReply, unseal: Callable[[bytes], bytes]) -> None:
    """Open HQ's sealed password, keep it 0600 and point ``[mqtt]`` at it.

    Raises:
        ProvisionError: ``bad_reply`` when the password does not open with the device key.
    """
    try:
        password = unseal(base64.b64decode(reply.sealed_password, validate=True)).decode()
    except (ValueError, binascii.Error) as exc:
        raise ProvisionError("bad_reply", f"HQ's credentials do not open: {exc}") from None
    tmp = home / (PASSWORD_NAME + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(password + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, home / PASSWORD_NAME)
    path = home / box_config.CONFIG_NAME
    mqtt_table = tomllib.loads(path.read_text(encoding="utf-8")).get("mqtt", {})
    if "username" not in mqtt_table:
        # provision wrote [mqtt] last, so these lines land in it (checked below).
        with path.open("a", encoding="utf-8") as f:
            f.write(f"username = {json.dumps(reply.username)}\n"
                    f'password_file = "{PASSWORD_NAME}"\n')
    mqtt_table = tomllib.loads(path.read_text(encoding="utf-8")).get("mqtt", {})
    if mqtt_table.get("username") != reply.username:
        raise ProvisionError("bad_config", f"{path}: [mqtt] username is "
                                           f"{mqtt_table.get('username')!r}, HQ issued "
                                           f"{reply.username!r}: fix it by hand")


def _exchange(bundle: dict[str, Any], home: Path, request: EnrolRequest,
              timeout: float) -> EnrolReply:
    """Send the request and wait for HQ's reply (subscribed before sending)."""
    b = bundle["broker"]
    topics = Topics(b.get("root", "se"))
    reply_topic = enrol_reply_topic(topics, request.store, request.device)
    got: list[EnrolReply] = []
    subscribed, answered = threading.Event(), threading.Event()
    refused: list[str] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2,
                         client_id=f"se-enrol-{request.store}-{request.device}",
                         protocol=MQTTProtocolVersion.MQTTv5)
    # The claim account: a broker that checks passwords knows it from HQ; one that does
    # not (a development broker) ignores it.
    client.username_pw_set(claim_username(request.token), request.token)
    if b.get("tls"):
        client.tls_set(ca_certs=str(home / CA_NAME) if bundle.get("ca") else None)

    def on_connect(c: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        if rc.is_failure:
            refused.append(str(rc))
            subscribed.set()
            return
        c.subscribe(reply_topic, qos=QOS)

    client.on_connect = on_connect
    client.on_subscribe = lambda *_: subscribed.set()

    def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            got.append(EnrolReply.decode(bytes(msg.payload)))
        except ValueError:
            return
        answered.set()

    client.on_message = on_message
    try:
        client.connect(b["host"], int(b["port"]), keepalive=30)
    except (OSError, ValueError) as exc:
        raise ProvisionError("unreachable", f"cannot reach HQ's broker {b['host']}:{b['port']}:"
                                            f" {exc}") from None
    client.loop_start()
    try:
        if not subscribed.wait(timeout):
            raise ProvisionError("unreachable", f"no answer from HQ's broker {b['host']}")
        if refused:
            raise ProvisionError("claim_refused", f"HQ's broker refused this bundle's "
                                                  f"account: {refused[0]}")
        client.publish(enrol_topic(topics, request.store, request.device), request.encode(),
                       qos=QOS).wait_for_publish(timeout)
        if not answered.wait(timeout):
            raise ProvisionError("unreachable", f"HQ did not answer within {timeout:.0f} s "
                                                "(is edge-hq enrol-serve running?)")
    finally:
        client.disconnect()
        client.loop_stop()
    return got[0]
