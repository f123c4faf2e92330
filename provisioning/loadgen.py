"""Many stores on one machine: simulated boxes ("twins") against one broker and HQ ingest.

A twin is a box without its daemon: its own SQLite ledger (the real outbox), the real
``edge.rules.Counter`` deciding on coupon codes, the real ``sync.service.SyncService``
publishing its events with its own device key (registered at HQ as ``edge-hq
register-device`` does) and its own client id (``se-{store}-{device}``), receiving HQ's
confirmations and fan-out like a real box. Each twin redeems one coupon every
``period_s`` (its own store's coupon: no fan-out), and the service publishes presence as
a box does. Fan-out probes (a single-use coupon for stores A and B, redeemed at A) time
how long B takes to hold A's use as a remote use.

Twins run as asyncio tasks, many to a process, in several processes (``procs``): one
paho client per twin costs a socket and a few kB; one process per twin would cost tens of
MB each; one process for all would put 2,000 twins' publishing, signing and SQLite work
on one core and needs more file descriptors than a process may hold (about ten per
twin: a socket and three SQLite connections). Their ledgers go to ``folder`` (default
under /dev/shm): the fsyncs of 2,000 boxes' disks are not what is measured, HQ is.

HQ is ``edge-hq ingest`` (the command line, as production runs it) with 1..n workers on
one shared subscription, one of them sending fan-out and confirmations, over a SQLite
or PostgreSQL database. ``run`` returns a :class:`Report`; ``bench/stores_load.py``
prints it and ``tests/system/test_load.py`` checks a short run loses and duplicates
nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
import queue
import random
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from edge import tokens
from edge.keys import Purpose, SigningKey, TrustedKey
from edge.ledger import Ledger
from edge.rules import Counter, Identity
from hq.db import Database
from hq.issuing import keystore
from hq.issuing.codes import sign_token
from hq.issuing.issued import record_issued
from provisioning.localbroker import Broker
from sync.contract import ContractError, EventBatch, Topics
from sync.service import SyncService
from sync.settings import MqttSettings

log = logging.getLogger(__name__)

FD_PER_TWIN = 12  # a socket, three SQLite connections (file, WAL), spare
LOAD_MAX_USES = 1_000_000  # a store's load coupon: used once per decision, never used up


@dataclass(frozen=True)
class LoadSpec:
    """One load run."""

    stores: int = 50
    workers: int = 1  # edge-hq ingest processes on one shared subscription
    seconds: float = 30.0  # of load, after every twin is online
    period_s: float = 10.0  # one decision per store this often
    procs: int = 2  # twin processes
    probe_every_s: float = 1.0  # a fan-out probe A -> B this often
    folder: Path | None = None  # ledgers and HQ home; default a temporary folder
    db_url: str | None = None  # HQ's database; default SQLite in the HQ home
    settle_s: float = 60.0  # after the load: the longest wait for HQ to hold every event


@dataclass
class Report:
    """What a run measured (times in seconds, memory in MiB)."""

    stores: int
    workers: int
    seconds: float
    offered: int  # decisions the twins were to make: one per store per period
    decisions: int  # made by the twins during the load (probes included)
    at_hq: int  # decision events HQ stored (all of them once settled)
    duplicates: int  # (device, event id) stored twice, or stored under two seqs
    missing: int  # decisions a twin made that HQ does not hold
    events_per_s: float  # decision events HQ stored per second of load
    latency_p50: float  # a decision's time to HQ's commit (hq_event.received_at - at)
    latency_p99: float
    latency_max: float
    # The same in two parts, split where a passive subscriber saw the batch at the broker:
    # the twin's (redemption, linger, publish) and HQ's (delivery to a worker, its commit).
    box_p99: float
    hq_p50: float
    hq_p99: float
    fanout_p50: float  # a use at store A until store B's ledger holds it
    fanout_p99: float
    probes: int
    probes_seen: int
    rss_per_twin_kib: float  # a twin process's growth from start to all online, per twin
    rss_per_worker_mib: list[float]
    settled_s: float  # after the load, until HQ held every decision
    rejects: int  # hq_reject rows (none expected)
    notes: list[str] = field(default_factory=list)
    worker_counters: list[dict[str, int]] = field(default_factory=list)  # each worker's

    @property
    def kept_up(self) -> bool:
        """Whether HQ kept up.

        Nothing lost, HQ committed what the broker had in seconds (not a backlog), and held
        every decision soon after the load ended.
        """
        return (self.generated and self.missing == 0 and self.duplicates == 0
                and self.hq_p99 <= 5.0 and self.settled_s <= 10.0)

    @property
    def generated(self) -> bool:
        """Whether the twins made the rate asked (else the run says nothing of HQ)."""
        return self.decisions >= 0.9 * self.offered


# -- the twins' side (each twin process) ------------------------------------------------


@dataclass(frozen=True)
class TwinJob:
    """What one twin process runs (picklable: it crosses to a spawned process)."""

    index: int
    stores: list[str]
    folder: str
    host: str
    port: int
    coupon_seed: bytes
    coupon_key_id: str
    data_public: bytes
    data_key_id: str
    period_s: float
    seconds: float
    probe_every_s: float  # 0: no probes from this process
    db_url: str  # HQ's database: probes record their coupon as issued (HQ's own word)


def store_ids(n: int) -> list[str]:
    """``S0001``..: the load's store ids."""
    return [f"S{i:04d}" for i in range(1, n + 1)]


def device_of(store: str) -> str:
    """The one till of a simulated store."""
    return f"{store}-T1"


def _coupon(key: SigningKey, coupon_id: str, stores: tuple[str, ...], max_uses: int,
            now: int) -> tokens.Coupon:
    return tokens.Coupon(key.key_id, coupon_id, "load", tokens.Channel.LIVESTREAM,
                         tokens.Benefit(tokens.BenefitKind.FREE_ITEM, 1, "coffee"),
                         now - 3600, now + 86400, max_uses, stores)


def _rss_mib(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Twin:
    """One simulated box: its ledger, Counter and SyncService."""

    def __init__(self, folder: Path, store: str, trust: list[TrustedKey],
                 settings: MqttSettings) -> None:
        self.identity = Identity(store, device_of(store))
        self.path = folder / f"{self.identity.device_id}.sqlite"
        self.key = SigningKey.generate(self.identity.device_id)
        ledger = Ledger(self.path)
        with ledger.immediate() as conn:
            for k in trust:
                ledger.put_trusted_key(conn, k)
        ledger.close()
        self.settings = settings
        self.service = SyncService(self.path, self.identity, settings, software="loadgen",
                                   device_key=self.key)
        self.counter: Counter | None = None  # opened on the redeeming thread
        self.code = ""  # the store's load coupon
        self.decisions = 0


class TwinProcess:
    """The twins of one process, driven by one asyncio loop.

    Redemptions run on the loop, as the daemon runs them: their commits are short (the
    ledgers are in memory-backed files), and a thread of their own would wait for the
    interpreter lock at every SQLite call while the loop is busy.
    """

    def __init__(self, job: TwinJob) -> None:
        self.job = job
        self.coupon_key = SigningKey(job.coupon_key_id, job.coupon_seed)
        trust = [TrustedKey(job.coupon_key_id, self.coupon_key.public_key,
                            frozenset({Purpose.COUPON})),
                 TrustedKey(job.data_key_id, job.data_public, frozenset({Purpose.DATA}))]
        # Resends are HQ's business here only if something is lost: never sooner than the
        # run's end; HQ's confirmations move it anyway.
        settings = MqttSettings(host=job.host, port=job.port, backoff_min_s=1.0,
                                backoff_max_s=10.0)
        folder = Path(job.folder)
        self.twins = [Twin(folder, s, trust, settings) for s in job.stores]
        now = int(time.time())
        for t in self.twins:
            t.code = sign_token(self.coupon_key, _coupon(
                self.coupon_key, f"L-{t.identity.store_id}", (t.identity.store_id,),
                LOAD_MAX_USES, now))
        # HQ's database is written (a probe's coupon recorded) off the loop: its lock may
        # wait on the ingest workers.
        self.recorder = ThreadPoolExecutor(1, thread_name_prefix="record")
        self.fanout: list[float] = []
        self.probes = 0

    def public_keys(self) -> dict[str, tuple[str, str]]:
        """Each twin's device id -> (store, public key hex), for HQ's registry."""
        return {t.identity.device_id: (t.identity.store_id, t.key.public_key.hex())
                for t in self.twins}

    def _redeem(self, twin: Twin, code: str) -> bool:
        if twin.counter is None:
            twin.counter = Counter(Ledger(twin.path), twin.identity)
        return twin.counter.redeem(code, till="T1").accepted

    async def run(self, connect: MpEvent, go: MpEvent, report: Callable[[str, Any], None]
                  ) -> dict[str, Any]:
        """Connect on ``connect``, load on ``go``, until every decision is sent; figures."""
        loop = asyncio.get_running_loop()
        base_rss = _rss_mib()
        await loop.run_in_executor(None, connect.wait)
        tasks = [asyncio.create_task(t.service.run()) for t in self.twins]
        deadline = time.monotonic() + 120
        while not all(t.service.state.online for t in self.twins):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{sum(not t.service.state.online for t in self.twins)}"
                                   " twins never came online")
            await asyncio.sleep(0.1)
        online_rss = _rss_mib()
        report("online", len(self.twins))
        await loop.run_in_executor(None, go.wait)
        start = time.monotonic()
        end = start + self.job.seconds
        load = [asyncio.create_task(self._decide(t, end)) for t in self.twins]
        probing = (asyncio.create_task(self._probe(end)) if self.job.probe_every_s
                   and len(self.twins) >= 2 else None)
        await asyncio.gather(*load)
        if probing is not None:
            await probing
        # Every decision sent (the broker acknowledged it: the ledger says so, the service's
        # state may lag a second) before the twins stop.
        deadline = time.monotonic() + 120
        while (any(t.counter.ledger.backlog() for t in self.twins if t.counter is not None)
               and time.monotonic() < deadline):
            await asyncio.sleep(0.1)
        decided = {t.identity.device_id: t.decisions for t in self.twins}
        ids = {t.identity.device_id: _decision_ids(t.path) for t in self.twins}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for t in self.twins:
            if t.counter is not None:
                t.counter.ledger.close()
        self.recorder.shutdown()
        return {"decided": decided, "ids": ids, "fanout": self.fanout, "probes": self.probes,
                "base_rss": base_rss, "online_rss": online_rss}

    async def _decide(self, twin: Twin, end: float) -> None:
        await asyncio.sleep(random.uniform(0, self.job.period_s))  # stores are not in step
        while time.monotonic() < end:
            due = time.monotonic() + self.job.period_s
            if not self._redeem(twin, twin.code):
                raise RuntimeError(f"{twin.identity.store_id} refused its load coupon")
            twin.decisions += 1
            twin.service.wake()
            await asyncio.sleep(max(0.0, due - time.monotonic()))

    async def _probe(self, end: float) -> None:
        """Fan-out probes until the load ends, one every ``probe_every_s``.

        A single-use coupon for A and B, issued (recorded at HQ) and redeemed at A; the
        time until B's ledger holds A's use.
        """
        loop = asyncio.get_running_loop()
        db = Database(self.job.db_url)
        pending: list[asyncio.Task[None]] = []
        try:
            n = 0
            while time.monotonic() < end - 2 * self.job.probe_every_s:
                a, b = random.sample(self.twins, 2)
                n += 1
                coupon_id = f"P{self.job.index}-{n}"
                now = int(time.time())
                coupon = _coupon(self.coupon_key, coupon_id,
                                 (a.identity.store_id, b.identity.store_id), 1, now)
                await loop.run_in_executor(self.recorder, _record, db, coupon)
                code = sign_token(self.coupon_key, coupon)
                t0 = time.monotonic()
                if self._redeem(a, code):
                    a.decisions += 1
                a.service.wake()
                self.probes += 1
                pending.append(asyncio.create_task(self._seen(b, f"C:{coupon_id}", t0)))
                await asyncio.sleep(self.job.probe_every_s)
            await asyncio.gather(*pending)
        finally:
            db.close()

    async def _seen(self, twin: Twin, code_id: str, t0: float, timeout_s: float = 60) -> None:
        conn = sqlite3.connect(f"file:{twin.path}?mode=ro", uri=True, timeout=10)
        try:
            while time.monotonic() - t0 < timeout_s:
                if conn.execute("SELECT 1 FROM remote_use WHERE code_id = ?",
                                (code_id,)).fetchone():
                    self.fanout.append(time.monotonic() - t0)
                    return
                await asyncio.sleep(0.01)
        finally:
            conn.close()


def _decision_ids(path: Path) -> list[str]:
    """The event ids of the decisions in a twin's outbox (none is pruned in a run)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return [str(r[0]) for r in conn.execute(
            "SELECT event_id FROM outbox WHERE type = 'decision'")]
    finally:
        conn.close()


def _record(db: Database, coupon: tokens.Coupon) -> None:
    with db.tx() as cur:
        record_issued(cur, coupon, time.time())


def twin_main(job: TwinJob, keys: Any, connect: MpEvent, go: MpEvent, results: Any) -> None:
    """A twin process: make the twins, hand their keys out, run the load, report."""
    logging.basicConfig(level=logging.WARNING)
    # Each twin's sync uses threads for its marks and checks: hand the interpreter lock
    # over sooner than every 5 ms, so they do not wait behind a busy loop.
    sys.setswitchinterval(0.001)
    parent = os.getppid()

    def orphaned() -> None:  # the run that started us is gone: nobody will say go or stop
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(3)

    threading.Thread(target=orphaned, daemon=True, name="orphaned").start()
    try:
        proc = TwinProcess(job)
        keys.put((job.index, proc.public_keys()))

        def report(kind: str, value: Any) -> None:
            results.put((job.index, kind, value))

        out = asyncio.run(proc.run(connect, go, report))
        results.put((job.index, "done", out))
    except BaseException as exc:
        results.put((job.index, "error", repr(exc)))
        raise


# -- HQ's side and the run ---------------------------------------------------------------


def raise_fd_limit(need: int) -> None:
    """Raise this process's open-file limit toward ``need`` (children inherit it).

    Raises:
        RuntimeError: the hard limit is below ``need``.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return
    if hard != resource.RLIM_INFINITY and hard < need:
        raise RuntimeError(f"{need} open files needed, the hard limit is {hard} (ulimit -Hn)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


def register_devices(home: Path, devices: dict[str, tuple[str, str]]) -> None:
    """Register every twin's key with HQ at once (``keystore.register_device``'s file)."""
    known = keystore.load_devices(home)
    for device, (store, public_hex) in devices.items():
        known[device] = {"store": store, "public_key": public_hex}
    tmp = home / "devices.json.tmp"
    tmp.write_text(json.dumps(known, indent=1, sort_keys=True))
    os.replace(tmp, home / "devices.json")


def start_ingest(home: Path, db_url: str, broker: Broker, workers: int,
                 logs: Path) -> list[subprocess.Popen[bytes]]:
    """``edge-hq ingest`` workers on one shared subscription; the first sends fan-out."""
    procs = []
    for i in range(workers):
        cmd = [sys.executable, "-m", "cli.hq", "--home", str(home), "ingest", "--db", db_url,
               "--broker", f"mqtt://{broker.host}:{broker.port}", "--client-id",
               f"hq-load-{i + 1}", "--session-expiry", "600"]
        if i:
            cmd.append("--no-fanout")
        out = open(logs / f"ingest-{i + 1}.log", "wb")  # noqa: SIM115 (closed with the process)
        procs.append(subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                      cwd=Path(__file__).resolve().parent.parent))
    return procs


def _wait_subscribed(logs: Path, workers: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        texts = [(logs / f"ingest-{i + 1}.log").read_text(errors="replace")
                 for i in range(workers)]
        if all("subscribed" in t for t in texts):
            return
        for t in texts:
            if "Traceback" in t:
                raise RuntimeError(f"an ingest worker failed:\n{t[-2000:]}")
        time.sleep(0.1)
    raise RuntimeError("the ingest workers did not subscribe in time")


class Observer:
    """A passive subscriber to every box's events topic.

    It notes when each decision reached the broker (its own non-shared subscription; HQ's
    workers share theirs).
    """

    def __init__(self, broker: Broker) -> None:
        self.arrived: dict[tuple[str, str], float] = {}
        self.bad = 0
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="loadgen-observer",
                                  protocol=MQTTProtocolVersion.MQTTv5)
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_a: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.client.subscribe(Topics().events("+", "+"), qos=0)
        if not subscribed.wait(30):
            raise RuntimeError("the observer did not subscribe")

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        now = time.time()
        ctype = getattr(msg.properties, "ContentType", None)
        try:
            batch = EventBatch.decode(bytes(msg.payload), ctype)
        except ContractError:
            self.bad += 1
            return
        for e in batch.events:
            self.arrived.setdefault((batch.device, str(e["id"])), now)

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def run(spec: LoadSpec) -> Report:
    """Run ``spec``: broker, HQ workers, twins; the load; then HQ's database, checked."""
    # A twin process holds its twins' files; the broker one socket per twin.
    per_proc = -(-spec.stores // max(1, spec.procs))
    raise_fd_limit(max(per_proc * FD_PER_TWIN, spec.stores) + 1024)
    own = spec.folder is None
    shm = Path("/dev/shm")
    root = Path(tempfile.mkdtemp(prefix="loadgen-", dir=shm if shm.is_dir() else None)
                ) if spec.folder is None else spec.folder
    try:
        return _run(spec, root)
    finally:
        if own:
            shutil.rmtree(root, ignore_errors=True)


def _run(spec: LoadSpec, root: Path) -> Report:
    home, logs = root / "hq", root / "logs"
    for d in (home, logs):
        d.mkdir(parents=True, exist_ok=True)
    db_url = spec.db_url or f"sqlite:///{root / 'hq.sqlite'}"
    data = keystore.create_key(home, "hq-data", [Purpose.DATA])
    coupon_key = SigningKey.generate("load-cpn")
    broker = Broker(root / "broker", max_queued_messages=1_000_000)
    broker.start()
    ctx = multiprocessing.get_context("spawn")  # no forked paho or SQLite state
    keys, results = ctx.Queue(), ctx.Queue()
    connect, go = ctx.Event(), ctx.Event()
    stores = store_ids(spec.stores)
    nprocs = max(1, min(spec.procs, spec.stores))
    procs: list[Any] = []
    workers: list[subprocess.Popen[bytes]] = []
    observer: Observer | None = None
    try:
        for i in range(nprocs):
            folder = root / f"twins-{i}"
            folder.mkdir()
            job = TwinJob(i, stores[i::nprocs], str(folder), broker.host, broker.port,
                          coupon_key.seed, coupon_key.key_id, data.public_key, data.key_id,
                          spec.period_s, spec.seconds, spec.probe_every_s if i == 0 else 0.0,
                          db_url)
            p = ctx.Process(target=twin_main, args=(job, keys, connect, go, results),
                            name=f"twins-{i}")
            p.start()
            procs.append(p)
        devices: dict[str, tuple[str, str]] = {}
        for _ in procs:
            devices.update(_get(keys, procs, 300)[1])
        register_devices(home, devices)
        db = Database(db_url)  # creates HQ's schema before the workers open it
        now = int(time.time())
        with db.tx() as cur:  # HQ issued each store's load coupon for that store alone
            for s in stores:
                record_issued(cur, _coupon(coupon_key, f"L-{s}", (s,), LOAD_MAX_USES, now),
                              now)
        observer = Observer(broker)
        workers = start_ingest(home, db_url, broker, spec.workers, logs)
        _wait_subscribed(logs, spec.workers)
        connect.set()
        online = 0
        while online < len(procs):
            _i, kind, value = _get(results, procs, 300)
            if kind == "error":
                raise RuntimeError(f"a twin process failed: {value}")
            online += kind == "online"
        t_go = time.time()
        go.set()
        outs: list[dict[str, Any]] = []
        while len(outs) < len(procs):
            _i, kind, value = _get(results, procs, spec.seconds + 300)
            if kind == "error":
                raise RuntimeError(f"a twin process failed: {value}")
            if kind == "done":
                outs.append(value)
        t_sent = time.time()
        decided = {d: n for o in outs for d, n in o["decided"].items()}
        total = sum(decided.values())
        # HQ has every decision once its workers have committed them.
        deadline = time.monotonic() + spec.settle_s
        held = 0
        while time.monotonic() < deadline:
            held = int(db.query("SELECT COUNT(*) FROM hq_event WHERE type='decision'")[0][0])
            if held >= total:
                break
            time.sleep(0.2)
        settled = time.time() - t_sent
        worker_rss = [_rss_mib(w.pid) for w in workers if w.poll() is None]
        counters = _stop_workers(workers, logs)
        report = _report(spec, db, decided, outs, t_go, settled, worker_rss, observer.arrived)
        report.worker_counters = counters
        return report
    finally:
        if observer is not None:
            observer.close()
        connect.set()
        go.set()
        _stop_workers(workers, logs)
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
        broker.stop()


def _stop_workers(workers: list[subprocess.Popen[bytes]], logs: Path) -> list[dict[str, int]]:
    """Stop the ingest workers (SIGTERM: each prints its counters last); their counters."""
    for w in workers:
        if w.poll() is None:
            w.terminate()
    counters = []
    for i, w in enumerate(workers):
        with contextlib.suppress(subprocess.TimeoutExpired):
            w.wait(20)
        if w.poll() is None:
            w.kill()
            w.wait()
        lines = (logs / f"ingest-{i + 1}.log").read_text(errors="replace").splitlines()
        with contextlib.suppress(IndexError, ValueError):
            counters.append(json.loads(lines[-1]))
    return counters


def _get(q: Any, procs: list[Any], timeout_s: float) -> Any:
    """The next item on ``q``; fails when a twin process died instead of reporting."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return q.get(timeout=1.0)
        except queue.Empty:
            dead = [p.name for p in procs if p.exitcode not in (None, 0)]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"twin processes {dead or 'silent'}") from None


def _report(spec: LoadSpec, db: Database, decided: dict[str, int], outs: list[dict[str, Any]],
            t_go: float, settled: float, worker_rss: list[float],
            arrived: dict[tuple[str, str], float]) -> Report:
    rows = db.query("SELECT device, event_id, at, received_at FROM hq_event"
                    " WHERE type='decision'")
    made = {(d, i) for o in outs for d, got in o["ids"].items() for i in got}
    held: set[tuple[str, str]] = set()
    duplicates = 0
    latency, box, hq = [], [], []
    for device, event_id, at, received in rows:
        key = (str(device), str(event_id))
        duplicates += key in held  # stored twice (under two seqs)
        held.add(key)
        if float(at) >= t_go:
            latency.append(float(received) - float(at))
            if key in arrived:
                box.append(arrived[key] - float(at))
                hq.append(float(received) - arrived[key])
    missing = len(made - held)
    extra = len(held - made)
    counted = sum(decided.values())
    fanout = [x for o in outs for x in o["fanout"]]
    twins = sum(len(o["decided"]) for o in outs)
    per_twin = sum(o["online_rss"] - o["base_rss"] for o in outs) / max(twins, 1)
    rejects = int(db.query("SELECT COUNT(*) FROM hq_reject")[0][0])
    db.close()
    total = len(made)
    notes = [] if total == counted else [f"twins counted {counted} decisions, their outboxes"
                                         f" hold {total}"]
    if extra:
        notes.append(f"{extra} decisions at HQ that no twin holds")
    offered = int(spec.stores * spec.seconds / spec.period_s)
    if total < 0.9 * offered:
        notes.append(f"the twins made {total} of {offered} decisions: this machine could not"
                     " run them at the rate; the run says nothing of HQ's limit")
    return Report(spec.stores, spec.workers, spec.seconds, offered, total, len(rows),
                  duplicates + extra,
                  missing, len(latency) / spec.seconds, _quantile(latency, 0.5),
                  _quantile(latency, 0.99), max(latency, default=float("nan")),
                  _quantile(box, 0.99), _quantile(hq, 0.5), _quantile(hq, 0.99),
                  _quantile(fanout, 0.5), _quantile(fanout, 0.99),
                  sum(int(o["probes"]) for o in outs), len(fanout), per_twin * 1024,
                  worker_rss, settled, rejects, notes)
