"""The daemon's sync part against a real mosquitto: status online/backlog, events delivered."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from edged.localapi import Client
from provisioning.dev import samples
from provisioning.localbroker import Broker
from sync.contract import EventBatch, Topics
from tests.daemon_fixtures import make_home, next_event, running

pytestmark = pytest.mark.network


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return make_home(tmp_path)


class HqListener:
    """HQ's side for this test: every event id published on the device's events topic."""

    def __init__(self, port: int) -> None:
        self.ids: list[str] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="hq-test",
                                  protocol=MQTTProtocolVersion.MQTTv5)
        self.client.on_message = self._message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(Topics("se").events("BJ001", "BJ001-T1"), qos=1)
        self.client.loop_start()

    def _message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        ctype = getattr(msg.properties, "ContentType", None)
        batch = EventBatch.decode(msg.payload, ctype)
        with self.lock:
            self.ids += [e["id"] for e in batch.events]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


async def sync_state(client: Client, online: bool, min_backlog: int = 0,
                     max_backlog: int = 1 << 30) -> dict[str, Any]:
    async with asyncio.timeout(20):
        while True:
            st = await client.request("status")
            if st["online"] is online and min_backlog <= st["backlog"] <= max_backlog:
                return st
            await asyncio.sleep(0.05)


async def test_scans_reach_hq_and_status_follows_the_link(home: Path, broker: Broker) -> None:
    """GIVEN a daemon whose [mqtt] points at a real mosquitto, and HQ listening
    WHEN a coupon is scanned, the broker is stopped, another code scanned, the broker
    started, and a pickup scanned
    THEN HQ receives the first decision; status is online with backlog 0, then offline with
    a backlog while the broker is down (the scan still decided), then online with 0 (the
    outage's events sent); HQ receives the decision made after; subscribers got sync
    events."""
    with (home / "edge.toml").open("a") as f:
        f.write(f'\n[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\n'
                "backoff_min_s = 0.1\nbackoff_max_s = 0.5\nconnect_timeout_s = 2.0\n")
    hq = HqListener(broker.port)
    coupon = samples(home)["coupons"][0]
    try:
        async with running(home) as r:
            await r.client.subscribe()
            first = await r.client.request("scan", code=coupon)
            online = await sync_state(r.client, True, 0, 0)
            async with asyncio.timeout(20):
                while first["event_id"] not in hq.ids:
                    await asyncio.sleep(0.05)
            sync_event = await next_event(r.client, "sync")
            await asyncio.to_thread(broker.stop)
            await sync_state(r.client, False)
            second = await r.client.request("scan", code="6901234567892")
            offline = await sync_state(r.client, False, 1)
            await asyncio.to_thread(broker.start)
            await sync_state(r.client, True, 0, 0)  # the outage's backlog was sent
            hq.close()
            hq = HqListener(broker.port)  # HQ back on the restarted broker
            third = await r.client.request("scan", code=samples(home)["pickups"][0]["number"])
            async with asyncio.timeout(20):
                while third["event_id"] not in hq.ids:
                    await asyncio.sleep(0.05)
    finally:
        hq.close()
    assert first["accepted"] and online["sync"]["state"] == "running"
    assert offline["last_contact"] is not None and offline["alarm"] is False
    assert "online" in sync_event and "backlog" in sync_event
    assert second["accepted"] is False and third["accepted"] is True
    assert json.dumps(offline)  # the status stays JSON through a broker outage
