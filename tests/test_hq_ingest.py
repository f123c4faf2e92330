"""HQ ingest against a real mosquitto: once-only storage, gaps, rejects, scale-out, restarts."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from cli.hq import main
from edge.keys import SigningKey
from hq.db import Database
from sync.contract import CONTENT_JSON_ZLIB, Presence, PresenceState, Reported
from tests.hq_support import TOPICS, Hq, RawBox, event, hq_fixture, url, wait_until  # noqa: F401

pytestmark = pytest.mark.network


def test_batch_ingested_once_and_redelivery_is_a_no_op(hq: Hq) -> None:
    """GIVEN an ingest worker and a box
    WHEN the box publishes a batch of 5 events, then the very same batch again
    THEN HQ stores 5 events once, counts 5 duplicates, and keeps each event's id and seq."""
    w = hq.worker()
    box = hq.box("S1", "D1")
    batch = [event("S1", "D1", s) for s in range(1, 6)]
    box.send(batch)
    box.send(batch)
    wait_until(lambda: w.counters.messages == 2, what="two messages handled")
    assert hq.count() == 5
    assert w.counters.new_events == 5 and w.counters.duplicates == 5
    rows = hq.dbs[0].query("SELECT seq, event_id FROM hq_event ORDER BY seq")
    assert rows == [(e["seq"], e["id"]) for e in batch]
    assert hq.count("SELECT max_seq FROM hq_device WHERE device='D1'") == 5
    box.close()


def test_gap_reported_then_healed(hq: Hq) -> None:
    """GIVEN a device whose batches arrive as seq 1-2, then 5-6
    WHEN seq 3-4 arrive later
    THEN HQ opened a gap 3-4 with 2 missing, and marks it filled once both arrived."""
    w = hq.worker()
    box = hq.box("S1", "D1")
    box.send([event("S1", "D1", s) for s in (1, 2)])
    box.send([event("S1", "D1", s) for s in (5, 6)])
    wait_until(lambda: w.counters.messages == 2)
    assert hq.dbs[0].query("SELECT seq_from, seq_to, missing, filled_at FROM hq_gap") == [
        (3, 4, 2, None)]
    box.send([event("S1", "D1", 3)])
    wait_until(lambda: w.counters.messages == 3)
    assert hq.count("SELECT missing FROM hq_gap") == 1
    box.send([event("S1", "D1", 4)])
    wait_until(lambda: w.counters.messages == 4)
    missing, filled = hq.dbs[0].query("SELECT missing, filled_at FROM hq_gap")[0]
    assert missing == 0 and filled is not None
    assert hq.count() == 6
    box.close()


def test_malformed_messages_recorded_and_ingest_keeps_running(hq: Hq) -> None:
    """GIVEN an ingest worker
    WHEN boxes send garbage, a corrupt zlib batch, a batch naming another device, a seq of
    0, a reused seq with another id, a bad status, a bad report, an empty batch, a NaN
    time, a seq over 2**62, then a good batch
    THEN each bad one is a reject row with its reason and its whole payload, and the good
    batch is stored."""
    w = hq.worker()
    box = hq.box("S1", "D1")
    first = event("S1", "D1", 1)
    box.send([first])
    box.raw(TOPICS.events("S1", "D1"), b"\xff\xfenot json")
    box.raw(TOPICS.events("S1", "D1"), b"x\x9cdefinitely not zlib", CONTENT_JSON_ZLIB)
    box.raw(TOPICS.events("S1", "D1"), zlib.compress(b"[1,2]"), CONTENT_JSON_ZLIB)
    box.send([event("S1", "D2", 2)])  # event says D2 on D1's topic
    box.send([event("S1", "D1", 0)])
    box.send([event("S1", "D1", 1)])  # seq 1 again, another event id
    box.raw(TOPICS.status("S1", "D1"), b'{"state": "sleeping"}')
    box.raw(TOPICS.reported("S1", "D1"), b'{"applied": 3}')
    box.send([])
    box.raw(TOPICS.events("S1", "D1"), b'{"v":1,"store":"S1","device":"D1","events":[{"id":"x",'
            b'"seq":3,"type":"decision","at":NaN,"body":{}}]}')
    box.send([event("S1", "D1", 2**63)])
    box.send([event("S1", "D1", 2)])
    wait_until(lambda: w.counters.messages == 13, what="all 13 messages handled")
    reasons = [r[0] for r in hq.dbs[0].query("SELECT reason FROM hq_reject ORDER BY id")]
    assert reasons == ["bad_batch", "bad_batch", "bad_batch", "topic_mismatch", "bad_seq",
                       "seq_reused", "bad_presence", "bad_reported", "bad_event", "bad_event",
                       "bad_seq"]
    raw = hq.dbs[0].query("SELECT raw FROM hq_reject ORDER BY id")[0][0]
    assert base64.b64decode(raw) == b"\xff\xfenot json"
    details = [r[0] for r in hq.dbs[0].query("SELECT detail FROM hq_reject ORDER BY id")]
    assert "not JSON" in details[0] and "zlib" in details[1] and "JSON object" in details[2]
    assert first["id"] in details[5]
    assert hq.dbs[0].query("SELECT seq, event_id FROM hq_event ORDER BY seq")[0] == (
        1, first["id"])
    assert hq.count() == 2
    box.close()


def test_presence_and_reported_are_recorded(hq: Hq) -> None:
    """GIVEN a worker
    WHEN a box publishes a retained birth message and a config report
    THEN HQ keeps its state, backlog, software, outbox alarm, reported version and data
    versions; a worker that
    subscribes later gets them as retained replays, which do not move "last seen"."""
    w = hq.worker()
    box = hq.box("S1", "D1")
    box.raw(TOPICS.status("S1", "D1"), Presence(PresenceState.ONLINE, "0.1.0", 4, 17, True,
                                                1.0e9, alarm=True).encode(), retain=True)
    box.raw(TOPICS.reported("S1", "D1"), Reported(4, 5, "tampered", 1.0e9,
                                                  data_versions={"orders": 3}).encode(),
            retain=True)
    wait_until(lambda: w.counters.messages == 2)
    assert hq.dbs[0].query("SELECT state, software, config_version, backlog, reported_version,"
                           " reported_rejected, reported_error, alarm, data_versions"
                           " FROM hq_device") == [
        ("online", "0.1.0", 4, 17, 4, 5, "tampered", 1, '{"orders": 3}')]
    box.close()
    seen = hq.dbs[0].query("SELECT last_seen FROM hq_device")[0][0]
    w2 = hq.worker("hq-ingest-2")  # gets both as retained messages on subscribe
    wait_until(lambda: w2.counters.messages == 2, what="retained replay")
    assert hq.dbs[0].query("SELECT last_seen FROM hq_device")[0][0] == seen


def test_two_workers_split_the_load_and_the_union_is_complete(hq: Hq) -> None:
    """GIVEN two ingest workers in one shared-subscription group, on one database
    WHEN 4 devices publish 30 batches of 10 events each
    THEN both workers took some batches, no batch went to both, and all 1200 events are
    stored once with no gap."""
    w1 = hq.worker("hq-ingest-1")
    w2 = hq.worker("hq-ingest-2")
    boxes = [hq.box("S1", f"D{i}") for i in range(4)]
    for b in range(30):
        for box in boxes:
            box.send([event("S1", box.device, b * 10 + s) for s in range(1, 11)])
    wait_until(lambda: w1.counters.messages + w2.counters.messages == 120, what="120 batches")
    assert w1.counters.messages > 0 and w2.counters.messages > 0
    assert w1.counters.duplicates + w2.counters.duplicates == 0
    assert hq.count() == 1200
    assert hq.dbs[0].query("SELECT device, COUNT(*), MIN(seq), MAX(seq) FROM hq_event"
                           " GROUP BY device ORDER BY device") == [
        (f"D{i}", 300, 1, 300) for i in range(4)]
    assert hq.count("SELECT COUNT(*) FROM hq_gap WHERE missing > 0") == 0
    for box in boxes:
        box.close()


def _publish_while_ingest_is_down(hq: Hq, restart_broker: bool) -> None:
    w = hq.worker("hq-ingest-1")
    w.stop()
    hq.workers.remove(w)
    box = hq.box("S1", "D1")
    for b in range(3):
        box.send([event("S1", "D1", b * 2 + s) for s in (1, 2)])
    box.close()
    if restart_broker:
        hq.broker.restart()  # graceful: the queued session is saved and reloaded
    w2 = hq.worker("hq-ingest-1")
    wait_until(lambda: hq.count() == 6, what="6 events after restart")
    # counted after the commit that stored them (and they may share one)
    wait_until(lambda: w2.counters.messages == 3, what="3 batches counted")
    assert w2.counters.new_events == 6 and w2.counters.duplicates == 0


def test_events_published_while_ingest_is_down_arrive_when_it_is_back(hq: Hq) -> None:
    """GIVEN an ingest worker that subscribed once with a persistent session, then stopped
    WHEN a box publishes 3 batches while it is down
    THEN a worker with the same client id gets all of them when it comes back."""
    _publish_while_ingest_is_down(hq, restart_broker=False)


@pytest.mark.broker_needs("persistence", reason="the worker's queued session must survive "
                          "a broker restart")
def test_events_published_while_ingest_is_down_arrive_after_broker_restart(hq: Hq) -> None:
    """GIVEN an ingest worker that subscribed once with a persistent session, then stopped
    WHEN a box publishes 3 batches while it is down, and the broker itself restarts
    THEN a worker with the same client id gets all of them when it comes back."""
    _publish_while_ingest_is_down(hq, restart_broker=True)


@pytest.mark.broker_needs("shared_redelivery", reason="the batch the stopped worker never "
                          "acknowledged must come again to its resumed shared subscription")
def test_database_failure_is_retried_and_nothing_is_acknowledged_until_stored(
        hq: Hq) -> None:
    """GIVEN an ingest worker whose database refuses event inserts (a trigger aborts them)
    WHEN a box publishes a batch
    THEN the worker retries it, stores nothing and acknowledges nothing; stopped in that
    state and started again, the broker redelivers the batch; once the database works
    again the same batch is stored, once."""
    w = hq.worker("hq-ingest-1")
    db = hq.dbs[0]
    if db.dialect == "sqlite":
        db.query("CREATE TRIGGER refuse BEFORE INSERT ON hq_event"
                 " BEGIN SELECT RAISE(ABORT, 'disk on fire'); END")
    else:
        db.query("CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN"
                 " RAISE EXCEPTION 'disk on fire'; END $$ LANGUAGE plpgsql")
        db.query("CREATE TRIGGER refuse BEFORE INSERT ON hq_event"
                 " FOR EACH ROW EXECUTE FUNCTION refuse()")
    box = hq.box("S1", "D1")
    box.send([event("S1", "D1", 1), event("S1", "D1", 2)])
    wait_until(lambda: w.counters.db_errors >= 2, what="retries")
    assert hq.count() == 0 and w.counters.messages == 0
    w.stop()  # unacknowledged: the broker keeps it for this session
    hq.workers.remove(w)
    # the redelivered batch arrives before the SUBACK and holds paho's thread: no waiting
    w2 = hq.worker("hq-ingest-1", wait=False)
    wait_until(lambda: w2.counters.db_errors >= 1, what="the batch redelivered, still failing")
    db.query("DROP TRIGGER refuse" + ("" if db.dialect == "sqlite" else " ON hq_event"))
    wait_until(lambda: hq.count() == 2, what="the batch stored once the database works")
    wait_until(lambda: w2.counters.messages == 1)
    assert w2.counters.new_events == 2 and w2.counters.duplicates == 0
    box.close()


def test_ingest_command_runs_until_sigterm(hq: Hq, tmp_path: Path) -> None:
    """GIVEN `edge-hq ingest` started as a process with a data key in its HQ home
    WHEN a box registered after it started publishes a batch and the process gets SIGTERM
    THEN the events are in the database and the process exits 0 printing its counters."""
    home = tmp_path / "home"
    assert main(["--home", str(home), "keygen", "--key-id", "dat", "--purposes", "data"]) == 0
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    log = tmp_path / "ingest.log"
    with log.open("wb") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "cli.hq", "--home", str(home), "ingest",
                                 "--db", hq.db_url, "--broker", url(hq.broker),
                                 "--client-id", "cli-worker"], env=env,
                                stdout=subprocess.PIPE, stderr=log_file)
    try:
        wait_until(lambda: b"subscribed (group" in log.read_bytes(),
                   what="the ingest process subscribed")
        # Registered after the process started: the worker reads the registry again.
        key = SigningKey.generate("D1")
        assert main(["--home", str(home), "register-device", "--device", "D1", "--store", "S1",
                     "--public-key", key.public_key.hex()]) == 0
        box = RawBox(hq.broker, "S1", "D1", key)
        box.send([event("S1", "D1", s) for s in (1, 2, 3)])
        check = Database(hq.db_url)
        wait_until(lambda: check.query("SELECT COUNT(*) FROM hq_event")[0][0] == 3,
                   what="3 events stored by the process")
        check.close()
        box.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, log.read_text()
    assert json.loads(out)["new_events"] == 3


def test_a_message_hq_fails_on_is_kept_whole_for_re_ingest(hq: Hq) -> None:
    """GIVEN a message HQ's code failed on (not the database)
    WHEN the worker records the failure
    THEN hq_reject holds it with reason internal_error, the error, and the exact payload."""
    store = hq.worker().store
    payload = bytes(range(256)) * 10
    out = store.record_failure(TOPICS.events("S1", "D1"), payload, KeyError("facts"))
    assert out.reject == "internal_error"
    row = hq.dbs[0].query("SELECT store, device, reason, detail, raw FROM hq_reject")[0]
    assert row[:4] == ("S1", "D1", "internal_error", "KeyError: 'facts'")
    assert base64.b64decode(row[4]) == payload


def test_an_event_body_is_stored_as_json_dumps_writes_it(hq_db_url: str) -> None:
    """GIVEN a batch whose event body has non-ASCII text, floats, nulls, nesting and a NaN
    WHEN HQ stores it
    THEN hq_event.body is exactly json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    (HQ builds that text with a reused encoder, not json.dumps per event)."""
    from hq.ingest.eventstore import EventStore
    from hq.issuing.registry import DeviceRegistry
    from sync.contract import EventBatch

    body = {"accepted": True, "kind": "coupon", "code_id": "C:1", "note": "买一送一 ☕\n\"q\"",
            "facts": {"price": 12.5, "big": 1e16, "tiny": 5e-324, "nan": float("nan"),
                      "list": [1, None, False, {"k": []}]}}
    db = Database(hq_db_url)
    try:
        store = EventStore(db, TOPICS, DeviceRegistry())
        store.ingest_batch("S1", "D1", EventBatch("S1", "D1", [event("S1", "D1", 1, body=body)]))
        stored = db.query("SELECT body FROM hq_event")[0][0]
    finally:
        db.close()
    assert stored == json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def test_a_decoded_body_is_stored_with_its_values_whichever_encoder(hq_db_url: str) -> None:
    """GIVEN two batches as a box sends them, one strict JSON (non-ASCII, big and tiny
    floats, nesting) and one with a NaN (not strict JSON: Python's json took it)
    WHEN HQ decodes and stores them
    THEN the first body reads back with every value (orjson wrote it), the second is
    exactly as json.dumps writes it, NaN included (orjson would have written null)."""
    import math

    from hq.ingest.eventstore import EventStore
    from hq.issuing.registry import DeviceRegistry
    from sync.contract import EventBatch

    body = {"accepted": True, "kind": "coupon", "code_id": "C:1", "note": "买一送一 ☕\n\"q\"",
            "facts": {"price": 12.5, "big": 1e16, "tiny": 5e-324, "n": 2**63,
                      "list": [1, None, False, {"k": []}]}}
    strict = EventBatch.decode(*EventBatch("S1", "D1", [event("S1", "D1", 1, body=body)])
                               .encode())
    odd = EventBatch.decode(*EventBatch("S1", "D1", [event("S1", "D1", 2, body={
        **body, "nan": float("nan")})]).encode())
    assert strict.strict and not odd.strict
    db = Database(hq_db_url)
    try:
        store = EventStore(db, TOPICS, DeviceRegistry())
        store.ingest_batch("S1", "D1", strict)
        store.ingest_batch("S1", "D1", odd)
        first, second = (r[0] for r in db.query("SELECT body FROM hq_event ORDER BY seq"))
    finally:
        db.close()
    assert json.loads(first) == body
    assert second == json.dumps(odd.events[0]["body"], ensure_ascii=False,
                                separators=(",", ":"))
    assert math.isnan(json.loads(second)["nan"])


def test_a_body_is_stored_as_the_box_sent_it(hq_db_url: str) -> None:
    """GIVEN signed batches as a box sends them: one plain (non-ASCII, floats, an integer
    past 64 bits), one with a NaN in a body
    WHEN HQ handles them off the wire
    THEN the first body is stored as the very text the box wrote (read with msgspec, not
    parsed and written again) and the integer is exact; the second, which only the
    contract's reader takes, is stored as json.dumps writes it, NaN included."""
    from hq.ingest.eventstore import EventStore, Handled
    from hq.issuing.registry import DeviceRegistry
    from sync.contract import EventBatch, sign_device_message

    key = SigningKey.generate("D1")
    devices = DeviceRegistry()
    devices.add("D1", "S1", key.public_key)
    body = {"accepted": True, "kind": "coupon", "code_id": "C:1", "note": "买一送一 ☕\n\"q\"",
            "facts": {"price": 12.5, "big": 1e16, "n": 2**70, "list": [1, None, {"k": []}]}}
    odd = {**body, "facts": {"nan": float("nan")}}
    db = Database(hq_db_url)
    try:
        store = EventStore(db, TOPICS, devices)
        for seq, b in ((1, body), (2, odd)):
            topic = TOPICS.events("S1", "D1")
            payload, ctype = EventBatch("S1", "D1", [event("S1", "D1", seq, body=b)]).encode()
            out = store.handle(topic, payload, ctype, False,
                               sign_device_message(key, topic, ctype, payload))
            assert out.handled is Handled.EVENTS and out.new == 1, out
        first, second = (r[0] for r in db.query("SELECT body FROM hq_event ORDER BY seq"))
    finally:
        db.close()
    assert first == json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    assert json.loads(first)["facts"]["n"] == 2**70
    assert second == '{"accepted":true,"kind":"coupon","code_id":"C:1","note":' + json.dumps(
        body["note"], ensure_ascii=False) + ',"facts":{"nan":NaN}}'


def test_a_batch_repeating_a_seq_inside_it_is_sorted_out(hq_db_url: str) -> None:
    """GIVEN one batch with seqs 1, 2, 2 (the same event twice) and 2 again as another event,
    then 5 WHEN HQ stores it THEN seqs 1, 2 and 5 are stored once, the repeat is a duplicate,
    the other event's seq 2 is recorded as reused, and 3-4 is a gap."""
    from hq.ingest.eventstore import EventStore
    from hq.issuing.registry import DeviceRegistry
    from sync.contract import EventBatch

    two = event("S1", "D1", 2)
    evs = [event("S1", "D1", 1), two, dict(two), event("S1", "D1", 2), event("S1", "D1", 5)]
    db = Database(hq_db_url)
    try:
        out = EventStore(db, TOPICS, DeviceRegistry()).ingest_batch(
            "S1", "D1", EventBatch("S1", "D1", evs))
        assert (out.new, out.duplicates, out.gaps_opened) == (3, 2, 1)
        assert db.query("SELECT seq FROM hq_event ORDER BY seq") == [(1,), (2,), (5,)]
        assert db.query("SELECT seq_from, seq_to FROM hq_gap") == [(3, 4)]
        assert db.query("SELECT reason FROM hq_reject") == [("seq_reused",)]
    finally:
        db.close()


def test_a_sender_check_that_fails_on_paho_thread_is_done_again_by_the_committer(
        hq: Hq, monkeypatch: pytest.MonkeyPatch) -> None:
    """GIVEN a worker whose signature check on paho's thread fails once (a bug there)
    WHEN a box sends a batch
    THEN paho's thread goes on, the committer checks the sender itself and stores the batch;
    and the checks on paho's thread are what the committer then uses."""
    import threading

    from hq.ingest.eventstore import EventStore

    calls: list[str] = []
    real = EventStore.sender

    def sender(self: EventStore, *args: object) -> object:
        calls.append(threading.current_thread().name)
        if len(calls) == 1:
            raise RuntimeError("a bug in the sender check")
        return real(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(EventStore, "sender", sender)
    w = hq.worker()
    box = hq.box("S1", "D1")
    box.send([event("S1", "D1", 1)])
    box.send([event("S1", "D1", 2)])
    wait_until(lambda: w.counters.messages == 2, what="both messages handled")
    assert w.counters.new_events == 2 and w.counters.rejected == 0
    # each message on paho's thread; the first (that check failed) again by the committer
    assert calls.count("hq-ingest-commit") == 1 and len(calls) == 3
    assert all(c.startswith("paho-mqtt-client") for c in calls if c != "hq-ingest-commit")
    box.close()
