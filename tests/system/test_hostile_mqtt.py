"""Hostile MQTT payloads on the box's own topics of a real broker while it serves scans.

Anyone with broker access can publish on a store's config and data topics and a device's
``hq`` topic: garbage, invalid UTF-8, deep or truncated JSON, unsigned envelopes, forged
signatures, a rogue key, configs meant for another store. The box refuses each with its
reason (``config_rejected``; junk before the signature is known good is coalesced, with a
count), keeps serving the counter, and applies nothing.
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
from pathlib import Path

import pytest

from edge.keys import Purpose, SigningKey
from edged.localapi import Client
from hq.issuing import keystore
from provisioning.dev import DEVICE, STORE, hq_home
from provisioning.localbroker import Broker
from sync.contract import DataKind, Topics
from tests.daemon_fixtures import make_home
from tests.daemon_proc import DaemonProcess
from tests.hq_support import client as mqtt_client
from tests.hq_support import wait_until
from tests.sync_fixtures import config_body, sealed
from tests.system.proof import record, scale
from tests.system.storm import audit, code_mix, scan_order, sync_to

pytestmark = pytest.mark.network

TOPICS = Topics()


def junk(i: int, rng: random.Random, rogue: SigningKey, hq: SigningKey) -> bytes:
    """The ``i``-th hostile payload, kinds in turn (``hq``: HQ's real config key)."""
    kind = i % 10
    if kind == 8:  # signed by HQ, fresh, but the body breaks the schema
        return sealed(hq, DataKind.CONFIG, 1000 + i, {"schema": 1, "keys": "not a list"})
    if kind == 9:  # signed by HQ, but a version at or below the applied one (a replay)
        return sealed(hq, DataKind.CONFIG, 0, config_body(hq))
    if kind == 0:
        return rng.randbytes(rng.randrange(1, 400))
    if kind == 1:
        return b"\xff\xfe" + rng.randbytes(30) + b"\xc3\x28"
    if kind == 2:
        return b"[" * 50_000 + b"]" * 50_000  # deeper than any parser should follow
    if kind == 3:
        return sealed(rogue, DataKind.CONFIG, 1, config_body(rogue))[:-rng.randrange(1, 40)]
    if kind == 4:
        return json.dumps({"key_id": "hq-config", "payload": json.dumps(
            {"kind": "config", "store": STORE, "version": 9, "issued_at": 1.0,
             "body": {}})}).encode()  # unsigned
    if kind == 5:
        return sealed(rogue, DataKind.CONFIG, 10 + i, config_body(rogue))  # forged key
    if kind == 6:
        return sealed(rogue, DataKind.ORDERS, 10 + i, {"orders": [{"x": "y" * 1000}]})
    return json.dumps({"key_id": "x", "payload": "{}", "sig": "!!" * 40}).encode()


async def test_hostile_mqtt_while_serving_is_refused_recorded_and_never_stops_the_counter(
        tmp_path: Path) -> None:
    """GIVEN the real daemon syncing to a real mosquitto and serving scans
    WHEN hundreds of hostile payloads (garbage, forged, rogue-key, and configs HQ signed
    that break the schema or replay an old version) arrive on its config, data and hq
    topics between scans
    THEN every scan gets its right verdict throughout and the daemon stays up; every hostile
    payload is recorded as refused (config_rejected events, counts included, add up to what
    was sent once the daemon stops); the box's config is untouched; no gap in the outbox."""
    n = scale(240, 20_000)
    scans = scale(120, 2_000)
    rng = random.Random(8)
    broker = Broker(tmp_path / "broker")
    broker.start()
    home = make_home(tmp_path)
    sync_to(home, broker.port)
    codes = code_mix(home, scans // 2 + 1, rng, prefix="H")
    order = scan_order(codes, scans, rng)
    rogue = SigningKey.generate("hq-config")  # HQ's key id, not HQ's key
    hq_key = keystore.signing_key(hq_home(home), Purpose.CONFIG)
    topics = (TOPICS.config(STORE), TOPICS.data(STORE), TOPICS.hq(STORE, DEVICE))
    daemon = DaemonProcess(home).start()
    proc = daemon.proc
    assert proc is not None
    pub = mqtt_client(broker, "hostile-publisher")
    seen: list[tuple[int, bool]] = []
    uses: dict[str, int] = {}
    wrong: list[str] = []
    sent = 0
    try:
        client = Client(daemon.path, timeout=10)
        await client.connect()
        async with asyncio.timeout(20):  # subscribed, so no payload goes past it unseen
            while not str((await client.request("status"))["sync"]["detail"]
                          ).startswith("online"):
                await asyncio.sleep(0.05)
        per_scan = max(1, n // scans)
        for code in order:
            for _ in range(per_scan):
                if sent < n:
                    # The last few go to the config and data topics only, which the
                    # daemon handles in order with the final message below; the hq topic's
                    # are applied on another thread, long done by then.
                    topic = topics[sent % (2 if sent >= n - 30 else 3)]
                    info = pub.publish(topic, junk(sent, rng, rogue, hq_key), qos=1)
                    info.wait_for_publish(10)
                    sent += 1
            v = await client.request("scan", code=code.text, till="MQ")
            seen.append((int(v["decision_id"]), bool(v["accepted"])))
            if bool(v["accepted"]) != (uses.get(code.code_id, 0) < code.allowed):
                wrong.append(f"{code.kind} {code.code_id}: {v}")
            uses[code.code_id] = uses.get(code.code_id, 0) + bool(v["accepted"])
            await asyncio.sleep(0)
        # A last one signed with HQ's real key but for another store: refused on its own
        # (not coalesced), after every hostile payload on that topic.
        pub.publish(topics[0], sealed(hq_key, DataKind.CONFIG, 99, config_body(hq_key),
                                      store="XX999"), qos=1).wait_for_publish(10)
        wait_until(lambda: refusals(home, "wrong_store") >= 1, what="the last refusal")
        assert proc.poll() is None, "the daemon died"
        status = await client.request("status")
        await client.close()
    finally:
        pub.disconnect()
        pub.loop_stop()
        daemon.stop()  # flushes the coalesced counts
        broker.stop()
    refused = refusals(home)
    result = audit(home / "ledger.sqlite", seen, codes)
    record("hostile MQTT payloads while serving", runs=1, faults=sent, verdicts=len(seen),
           lost=len(result.lost) + max(0, sent + 1 - refused),
           doubled=sum(result.doubled.values()), gaps=result.gaps,
           crashes=int(proc.returncode not in (0, None) and proc.returncode != -15))
    assert not wrong, wrong[:5]
    assert status["scans"] >= len(seen)
    assert refused == sent + 1, f"{sent + 1} hostile payloads, {refused} refusals recorded"
    assert status["config_version"] == 0  # nothing hostile was applied
    assert not result.lost and not result.doubled and result.gaps == 0


def refusals(home: Path, reason: str | None = None) -> int:
    """Refused HQ messages recorded (coalesced ones by their count)."""
    db = sqlite3.connect(home / "ledger.sqlite")
    try:
        bodies = [json.loads(b) for (b,) in db.execute(
            "SELECT body FROM outbox WHERE type = 'config_rejected'")]
    finally:
        db.close()
    return sum(int(b.get("count", 1)) for b in bodies
               if reason is None or b.get("reason") == reason)

