"""Drain a large outbox backlog to a loopback mosquitto, against raw paho floors of the same run.

    PYTHONPATH=. .venv/bin/python bench/sync_drain.py [--count 100000] [--batch 100]

Figures (events/s, each publish acknowledged by the broker, QoS 1):
  * raw, one event per message, waiting for each PUBACK (first --per-message events)
  * raw, one event per message, pipelined (max_inflight 20)
  * raw, batched: the drain's own payloads for the whole backlog, prepared in advance,
    published with max_inflight 20: the floor the drain is judged against
  * encode only: reading and encoding the backlog into those payloads, no network
  * marks only: marking the whole backlog sent, one range per batch, 20 batches per
    transaction (the drain's sent marks without the network)
  * prepare while offline: ``Outbox.seal`` with ``SyncService.presign``, what the service
    does with a backlog while the broker is out of reach (encoding, compressing and
    signing moved off the drain's path)
  * sign only: the device signature over each batch as sent (``se-sig``), no network
  * the drain: ``SyncService`` from a fresh connect until every event is marked sent in the
    ledger, (a) with the backlog prepared while offline, as after a real outage, and (b)
    cold: encoded and compressed during the drain (events written while sync was not
    running at all, e.g. the daemon stopped). The drain signs every message with the
    device key (one Ed25519 signature per batch, made while offline for prepared
    batches); the floor sends the same payloads unsigned, so the ratio includes the cost
    of signing, and (a) is also run without a device key for the difference.
Each is run with zlib batches (the default) and plain JSON batches; floors and drains are
interleaved and repeated, medians reported. The floor runs again just before each drain and
a drain's ratio is to that floor (the median of those ratios is printed), so a busy moment
of a shared machine weighs on both sides of a ratio alike. Confirmations are on during the drains: a
stand-in for HQ publishes a signed ``confirmed`` envelope of the highest acknowledged seq
to the device's ``hq`` topic every 50 ms (20 times HQ's own rate), which the box verifies
and applies while it drains (``--no-confirm`` turns the stand-in off).
Target: drain >= 0.5 x raw batched."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.machine import describe
from edge.keys import Purpose, SigningKey, TrustedKey
from edge.ledger import Ledger
from provisioning.localbroker import MOSQUITTO, Broker
from sync.contract import Confirmed, DataKind, HqData, Topics, seal, sign_device_message
from sync.outbox import Outbox
from sync.service import SyncService
from sync.settings import MqttSettings
from tests.sync_fixtures import IDENTITY, append_events


class RawClient:
    """A bare paho MQTT 5 client on its own network thread, counting PUBACKs."""

    def __init__(self, broker: Broker, inflight: int) -> None:
        self.acked = 0
        self.done = threading.Event()
        self.target = 0
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"raw-{inflight}",
                             protocol=MQTTProtocolVersion.MQTTv5)
        self.c.max_inflight_messages_set(inflight)
        self.c.max_queued_messages_set(0)
        self.c.on_publish = self._on_publish
        self.c.connect(broker.host, broker.port, 60)
        self.c.loop_start()

    def _on_publish(self, *_a: object) -> None:
        self.acked += 1
        if self.acked >= self.target:
            self.done.set()

    def one_by_one(self, topic: str, payloads: list[bytes]) -> float:
        t = time.perf_counter()
        for p in payloads:
            self.c.publish(topic, p, qos=1).wait_for_publish(10)
        return time.perf_counter() - t

    def pipelined(self, topic: str, payloads: list[bytes]) -> float:
        self.acked, self.target = 0, len(payloads)
        self.done.clear()
        t = time.perf_counter()
        for p in payloads:
            self.c.publish(topic, p, qos=1)
        if not self.done.wait(120):
            raise RuntimeError(f"only {self.acked} of {len(payloads)} acknowledged")
        return time.perf_counter() - t

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


class Confirmer:
    """HQ's confirmations, stood in for: every ``every_s``, the highest seq the broker has
    acknowledged (read from the box's ledger on a connection of its own), signed and
    published to the device's ``hq`` topic. HQ's own work (the broker delivering batches to
    ingest, its commits) happens on other machines, so it is left out of the figure; what
    is measured is the box receiving, verifying and applying confirmations while it drains.
    """

    def __init__(self, broker: Broker, key: SigningKey, ledger_path: Path,
                 every_s: float = 0.05) -> None:
        self.key, self.every_s, self.path = key, every_s, ledger_path
        self.sent = 0
        self.active = False  # only during a drain: none may reach the next one
        self._version = 0
        self._stop = threading.Event()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-hq",
                             protocol=MQTTProtocolVersion.MQTTv5)
        self.c.connect(broker.host, broker.port, 60)
        self.c.loop_start()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        told = 0
        db = sqlite3.connect(self.path, timeout=10)
        while not self._stop.wait(self.every_s):
            if not self.active:
                told = 0
                continue
            high = db.execute("SELECT COALESCE(MAX(last), 0) FROM outbox_acked").fetchone()[0]
            if high != told:
                told = high
                self._version += 1
                env = seal(self.key, HqData(DataKind.CONFIRMED, IDENTITY.store_id,
                                            self._version, time.time(),
                                            Confirmed(IDENTITY.device_id, told).to_dict()))
                self.c.publish(Topics().hq(IDENTITY.store_id, IDENTITY.device_id),
                               env.encode(), qos=1)
                self.sent += 1
        db.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.c.disconnect()
        self.c.loop_stop()


@dataclass
class Mode:
    """One payload mode's figures, events/s."""

    name: str
    size: float  # bytes per message
    encode: float
    sign: float
    mark: float
    floor: float
    cold: float
    seal: float
    prepared: float
    unsigned: float
    # Each drain's ratio to the floor run just before it, median over the repeats: what the
    # target is judged on (a floor measured next to its drain shares its noisy moment).
    cold_ratio: float
    prepared_ratio: float
    unsigned_ratio: float


DEVICE_KEY = SigningKey.generate(IDENTITY.device_id)


def _reset(ledger: Ledger) -> None:
    """Every event unsent again and nothing prepared (the wire texts are never pruned here)."""
    with ledger.immediate() as conn:
        conn.execute("DELETE FROM outbox_acked")
        conn.execute("DELETE FROM outbox_batch")
        conn.execute("UPDATE outbox_confirmed SET seq = 0")  # versions keep rising
    wire = ledger.conn.execute("SELECT COUNT(*) FROM outbox_wire").fetchone()[0]
    if wire != ledger.last_seq():
        raise RuntimeError(f"the drain pruned wire texts ({wire} left): figures would be off")


def _service(path: Path, settings: MqttSettings, signed: bool = True) -> SyncService:
    return SyncService(path, IDENTITY, settings, software="bench",
                       device_key=DEVICE_KEY if signed else None)


async def _drain(path: Path, settings: MqttSettings, count: int,
                 confirmer: Confirmer | None, service: SyncService | None = None) -> float:
    probe = Ledger(path)
    try:
        service = service or _service(path, settings)
        t = time.perf_counter()
        task = asyncio.create_task(service.run())
        if confirmer is not None:
            confirmer.active = True
        while probe.backlog():
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - t
        if confirmer is not None:
            confirmer.active = False
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sent = probe.last_seq() - probe.backlog()
        if sent < count:
            raise RuntimeError(f"only {sent} of {count} marked sent")
        return elapsed
    finally:
        probe.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each drain and floor")
    ap.add_argument("--per-message", type=int, default=10_000,
                    help="events for the one-per-message floors (they are slow)")
    ap.add_argument("--no-confirm", action="store_true",
                    help="no HQ confirmations during the drains")
    args = ap.parse_args()
    version = subprocess.run([MOSQUITTO, "-h"], capture_output=True, text=True).stdout
    print(f"machine: {describe()}; paho {paho.mqtt.__version__}; "
          f"{version.splitlines()[0] if version else 'mosquitto ?'}")
    with tempfile.TemporaryDirectory() as tmp:
        broker = Broker(Path(tmp) / "broker")
        broker.start()
        try:
            path = Path(tmp) / "ledger.sqlite"
            ledger = Ledger(path)
            t = time.perf_counter()
            append_events(ledger, args.count)
            with ledger.immediate() as conn:
                ledger.put_setting(conn, "sync_policy", {
                    "batch_size": args.batch, "linger_ms": 200, "outbox_max_age_s": 86400,
                    "outbox_max_rows": 10_000_000, "alarm_backlog": 10_000_000})
            hq_key = SigningKey.generate("bench-hq")
            with ledger.immediate() as conn:
                ledger.put_trusted_key(conn, TrustedKey(hq_key.key_id, hq_key.public_key,
                                                        frozenset({Purpose.DATA})))
            confirmer = None if args.no_confirm else Confirmer(broker, hq_key, path)
            print(f"backlog: {args.count} decision events written in "
                  f"{time.perf_counter() - t:.2f} s; batch size {args.batch}")
            outbox = Outbox(ledger, IDENTITY)
            singles = [json.dumps(e.to_wire(IDENTITY.store_id, IDENTITY.device_id),
                                  ensure_ascii=False, separators=(",", ":")).encode()
                       for e in outbox.events(0, args.per_message)]
            topic = Topics().events("BENCH", "RAW")
            raw1 = RawClient(broker, 1)
            rate_one = len(singles) / raw1.one_by_one(topic, singles)
            raw1.close()
            raw20 = RawClient(broker, 20)
            rate_pipe = len(singles) / raw20.pipelined(topic, singles)
            results = []
            for compress in (True, False):
                outbox = Outbox(ledger, IDENTITY, compress)
                batches, cursor = [], 0
                t = time.perf_counter()
                while (b := outbox.next_batch(cursor, args.batch)) is not None:
                    batches.append(b.payload)
                    cursor = b.last
                rate_encode = args.count / (time.perf_counter() - t)
                topic_box = Topics().events(IDENTITY.store_id, IDENTITY.device_id)
                first = outbox.next_batch(0, args.batch)
                assert first is not None
                ctype = first.content_type
                t = time.perf_counter()
                for p in batches:
                    sign_device_message(DEVICE_KEY, topic_box, ctype, p)
                rate_sign = args.count / (time.perf_counter() - t)
                ranges = [(first, first + args.batch - 1)
                          for first in range(1, args.count + 1, args.batch)]
                t = time.perf_counter()
                for i in range(0, len(ranges), 20):
                    ledger.mark_sent(ranges[i:i + 20])
                rate_mark = args.count / (time.perf_counter() - t)
                _reset(ledger)
                # No session kept between drains: a confirmation queued for the box after one
                # drain must not confirm the next one's events before they are sent.
                settings = MqttSettings(host=broker.host, port=broker.port, compress=compress,
                                        session_expiry_s=0)
                floor: list[float] = []
                cold: list[float] = []
                seal: list[float] = []
                prepared: list[float] = []
                unsigned: list[float] = []
                ratios: dict[str, list[float]] = {"cold": [], "prepared": [], "unsigned": []}

                def paired(name: str, drain: float, floor: list[float] = floor,
                           ratios: dict[str, list[float]] = ratios) -> float:
                    """The drain's time, its ratio kept against a floor run just before it."""
                    ratios[name].append(floor[-1] / drain)
                    return drain

                for _ in range(args.repeat):  # interleaved, so a noisy moment hits all alike
                    floor.append(raw20.pipelined(topic, batches))
                    cold.append(paired("cold", asyncio.run(
                        _drain(path, settings, args.count, confirmer))))
                    _reset(ledger)
                    service = _service(path, settings)
                    t = time.perf_counter()  # prepared and signed, as the service does offline
                    outbox.seal(args.batch, most=args.count, presign=service.presign)
                    seal.append(time.perf_counter() - t)
                    floor.append(raw20.pipelined(topic, batches))
                    prepared.append(paired("prepared", asyncio.run(
                        _drain(path, settings, args.count, confirmer, service))))
                    _reset(ledger)
                    outbox.seal(args.batch, most=args.count)  # the same, nothing signed
                    floor.append(raw20.pipelined(topic, batches))
                    unsigned.append(paired("unsigned", asyncio.run(
                        _drain(path, settings, args.count, confirmer,
                               _service(path, settings, False)))))
                    _reset(ledger)
                results.append(Mode("zlib" if compress else "plain",
                                    sum(len(p) for p in batches) / len(batches), rate_encode,
                                    rate_sign, rate_mark, *(args.count / statistics.median(x)
                                                 for x in (floor, cold, seal, prepared,
                                                           unsigned)),
                                    *(statistics.median(ratios[k])
                                      for k in ("cold", "prepared", "unsigned"))))
            raw20.close()
            if confirmer is not None:
                print(f"confirmations: {confirmer.sent} published during the drains, every "
                      f"{confirmer.every_s * 1000:.0f} ms while the acknowledged seq moved")
                confirmer.close()
            else:
                print("confirmations: off (--no-confirm)")
            ledger.close()
        finally:
            broker.kill()
    print(f"single events {sum(map(len, singles)) / len(singles):.0f} B each; medians of "
          f"{args.repeat} interleaved runs below")
    print(f"raw one per message, wait each ack : {rate_one:>10,.0f} events/s")
    print(f"raw one per message, inflight 20   : {rate_pipe:>10,.0f} events/s")
    for m in results:
        print(f"-- batches of {args.batch}, {m.name} ({m.size:,.0f} B per message)")
        print(f"   raw batched, prepared, inflight 20 : {m.floor:>10,.0f} events/s (floor)")
        print(f"   encode only (SQLite -> payloads)   : {m.encode:>10,.0f} events/s "
              "(reading and encoding, no network)")
        print(f"   sign only (one signature a batch)  : {m.sign:>10,.0f} events/s "
              f"({1e6 * args.batch / m.sign:.0f} us per batch, no network)")
        print(f"   marks only (20 batches a commit)   : {m.mark:>10,.0f} events/s "
              "(marking ranges sent, no network)")
        print(f"   prepare + sign while offline (seal): {m.seal:>10,.0f} events/s "
              "(done before the outage ends)")
        print(f"   drain, backlog prepared offline    : {m.prepared:>10,.0f} events/s "
              f"= {m.prepared_ratio:.2f} of the floor (target >= 0.50: "
              f"{'met' if m.prepared_ratio >= 0.5 else 'MISSED'}); "
              f"{m.prepared / rate_pipe:.1f}x the pipelined per-message floor")
        print(f"   same drain, unsigned (no device key): {m.unsigned:>9,.0f} events/s "
              f"= {m.unsigned_ratio:.2f} of the floor (signed / unsigned = "
              f"{m.prepared / m.unsigned:.2f})")
        print(f"   drain, cold backlog (encoded now)  : {m.cold:>10,.0f} events/s "
              f"= {m.cold_ratio:.2f} of the floor")


if __name__ == "__main__":
    main()
