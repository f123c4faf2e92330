"""Secrets (issue 11, attack 13): passwords from the environment or a file, never in ps or logs.

Real child processes (`edge sync`, `edge-hq ingest`) against a mosquitto that requires a
password; their /proc/PID/cmdline and every line they log are searched for the secrets.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cli import hq as hq_cli
from edge.keys import SigningKey
from hq.db import Database
from provisioning import brokerauth
from provisioning.brokerauth import HQ_INGEST_USER, DeviceAccount
from provisioning.localbroker import Broker, free_port
from sync.contract import SIG_PROPERTY, EventBatch, Topics, sign_device_message
from sync.settings import MqttSettings, SettingsError
from tests.daemon_fixtures import make_home, running
from tests.hq_support import event, wait_until
from tests.sync_fixtures import DEVICE, STORE
from tests.test_broker_acl import connect
from tests.test_sync_cli import _home

pytestmark = pytest.mark.network
ROOT = Path(__file__).resolve().parent.parent
BOX_PW = "box-Pa55-7f3a9c"
INGEST_PW = "ingest-Pa55-0b1e2d"
DB_NAME = "secret-hq.sqlite"
T = Topics("se")


@pytest.fixture
def auth_broker(tmp_path: Path) -> Iterator[tuple[Broker, int]]:
    """mosquitto requiring a password: the box's and HQ ingest's (on HQ's listener)."""
    pw, acl = brokerauth.write_files(tmp_path / "auth",
                                     [DeviceAccount(STORE, DEVICE, BOX_PW),
                                      DeviceAccount("S1", "D1", "d1-pw")],
                                     {HQ_INGEST_USER: INGEST_PW})
    hq_port = free_port()
    b = Broker(tmp_path / "broker", anonymous=False,
               listener_options=brokerauth.mosquitto_lines(pw, acl, hq_port))
    b.start()
    yield b, hq_port
    b.stop()


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("EDGE_MQTT_PASSWORD", "HQ_MQTT_PASSWORD", "HQ_DB_URL")}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("source", ["env", "file"])
def test_edge_sync_takes_its_password_from_env_or_file_and_never_shows_it(
        tmp_path: Path, auth_broker: tuple[Broker, int], source: str) -> None:
    """GIVEN a broker that requires the box's password, and the password only in
    EDGE_MQTT_PASSWORD or in [mqtt] password_file WHEN `edge sync -v` runs as a process THEN
    it connects and delivers its event, and neither its command line (/proc/PID/cmdline)
    nor anything it printed or logged holds the password."""
    broker, hq_port = auth_broker
    hq, _rc = connect(hq_port, HQ_INGEST_USER, INGEST_PW)
    hq.subscribe(T.all_events())
    mqtt = f'host = "127.0.0.1"\nport = {broker.port}\nusername = "{DEVICE}"'
    extra: dict[str, str] = {}
    if source == "file":
        secret = tmp_path / "mqtt-password"
        secret.write_text(BOX_PW + "\n")
        mqtt += f'\npassword_file = "{secret}"'
    else:
        extra["EDGE_MQTT_PASSWORD"] = BOX_PW
    home = _home(tmp_path, mqtt)
    out, err = tmp_path / "out.log", tmp_path / "err.log"
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen([sys.executable, "-m", "cli.edge", "--home", str(home), "sync",
                                 "-v"], env=_env(**extra), stdout=o, stderr=e)
    try:
        wait_until(lambda: bool(hq.received()), what="the box's event at HQ")
        cmdline = _cmdline(proc.pid)
    finally:
        _stop(proc)
        hq.close()
    assert "cli.edge" in cmdline and BOX_PW not in cmdline
    logged = out.read_text() + err.read_text()
    assert "online" in logged and BOX_PW not in logged
    assert BOX_PW not in (home / "edge.toml").read_text()


def test_edge_hq_ingest_reads_broker_and_database_secrets_from_env(
        tmp_path: Path, auth_broker: tuple[Broker, int]) -> None:
    """GIVEN HQ_MQTT_PASSWORD and HQ_DB_URL in the environment only WHEN `edge-hq ingest`
    runs as a process THEN it authenticates as hq-ingest, stores a box's events in the
    database HQ_DB_URL names, and neither its command line nor its log holds the password
    or the database URL."""
    broker, hq_port = auth_broker
    home = tmp_path / "hqhome"
    db_path = tmp_path / DB_NAME
    log = tmp_path / "ingest.log"
    env = _env(HQ_MQTT_PASSWORD=INGEST_PW, HQ_DB_URL=f"sqlite:///{db_path}")
    key = SigningKey.generate("D1")  # HQ believes only what a registered box signed
    assert hq_cli.main(["--home", str(home), "register-device", "--device", "D1", "--store",
                        "S1", "--public-key", key.public_key.hex()]) == 0
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.hq", "--home", str(home), "ingest", "--no-fanout",
             "--broker", f"mqtt://127.0.0.1:{hq_port}", "--username", HQ_INGEST_USER,
             "--client-id", "hq-ingest-1"],
            env=env, stdout=subprocess.DEVNULL, stderr=log_file)
    try:
        wait_until(lambda: b"subscribed (group" in log.read_bytes(), what="ingest subscribed")
        cmdline = _cmdline(proc.pid)
        box, _rc = connect(broker.port, "D1", "d1-pw")
        payload, ctype = EventBatch("S1", "D1", [event("S1", "D1", 1)]).encode()
        props = Properties(PacketTypes.PUBLISH)
        props.ContentType = ctype
        props.UserProperty = (SIG_PROPERTY, sign_device_message(key, T.events("S1", "D1"),
                                                                ctype, payload))
        assert not box.publish(T.events("S1", "D1"), payload, properties=props).is_failure
        box.close()
        wait_until(lambda: b"ingesting as" in log.read_bytes(), what="ingest logged")
        check = Database(f"sqlite:///{db_path}")
        try:
            wait_until(lambda: check.query("SELECT COUNT(*) FROM hq_event")[0][0] == 1,
                       what="the event stored")
        finally:
            check.close()
    finally:
        _stop(proc)
    assert "ingest" in cmdline and INGEST_PW not in cmdline and DB_NAME not in cmdline
    logged = log.read_text()
    assert "ingesting as" in logged and INGEST_PW not in logged and DB_NAME not in logged


def test_secrets_on_the_command_line_are_refused_without_echoing_them(tmp_path: Path) -> None:
    """GIVEN `edge-hq` WHEN given a broker URL or a database URL with a password on its
    command line THEN it exits 2 saying where the password belongs, and the message shows
    the URL with the password masked."""
    home = tmp_path / "hqhome"
    env = _env()
    for args, where in ((["report", "--db", "postgresql://hq:DbPa55word@db.example/hq"],
                         "HQ_DB_URL"),
                        (["ingest", "--no-fanout", "--broker",
                          "mqtt://hq-ingest:MqPa55word@127.0.0.1:1"], "HQ_MQTT_PASSWORD")):
        done = subprocess.run([sys.executable, "-m", "cli.hq", "--home", str(home), *args],
                              env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, done.stderr
        assert where in done.stderr and "***" in done.stderr
        assert "Pa55word" not in done.stderr + done.stdout


def test_mqtt_settings_resolve_the_password_and_never_print_it(tmp_path: Path) -> None:
    """GIVEN [mqtt] tables WHEN the password comes from the environment, a file, or a
    systemd credential THEN each is used in that order, repr() never shows it, and
    password plus password_file together are refused."""
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt-password").write_text("from-credential")
    table = {"username": "D", "password_file": str(secret)}
    assert MqttSettings.from_mapping(table, environ={}).password == "from-file"
    assert MqttSettings.from_mapping(
        table, environ={"EDGE_MQTT_PASSWORD": "from-env"}).password == "from-env"
    s = MqttSettings.from_mapping({"username": "D"},
                                  environ={"CREDENTIALS_DIRECTORY": str(creds)})
    assert s.password == "from-credential" and "from-credential" not in repr(s)
    with pytest.raises(SettingsError, match="not both"):
        MqttSettings.from_mapping({**table, "password": "x"}, environ={})
    secret.write_text("")
    with pytest.raises(SettingsError, match="empty"):
        MqttSettings.from_mapping(table, environ={})


async def test_edge_status_and_the_daemon_log_hold_no_password(
        tmp_path: Path, auth_broker: tuple[Broker, int], caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """GIVEN the real daemon syncing to a broker that requires the box's password, given
    in EDGE_MQTT_PASSWORD WHEN it is online and asked for its status THEN neither the status
    the local API returns (what `edge status` prints) nor any line it logged holds it."""
    broker, _hq_port = auth_broker
    home = make_home(tmp_path)
    with (home / "edge.toml").open("a", encoding="utf-8") as f:
        f.write(f'\n[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\nusername = "{DEVICE}"\n'
                "keepalive_s = 5\nbackoff_min_s = 0.05\nbackoff_max_s = 0.5\n")
    monkeypatch.setenv("EDGE_MQTT_PASSWORD", BOX_PW)
    caplog.set_level(logging.DEBUG)
    async with running(home) as r:
        for _ in range(200):
            status = await r.client.request("status")
            if status["online"]:
                break
            await asyncio.sleep(0.05)
    assert status["online"], status["sync"]
    assert BOX_PW not in json.dumps(status) and BOX_PW not in caplog.text
