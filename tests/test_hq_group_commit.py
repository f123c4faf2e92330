"""HQ ingest's group commits: several messages per transaction, each PUBACK after its
commit, a bad message apart from the group's others, and a redelivery after a crash
between commit and PUBACK absorbed (``hq.ingest.worker``, docs/hq.md)."""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from paho.mqtt.enums import MQTTErrorCode

from hq.ingest.eventstore import EventStore
from sync.contract import Presence, PresenceState
from tests.hq_support import TOPICS, Hq, event, hq_fixture, wait_until  # noqa: F401

pytestmark = pytest.mark.network


@contextmanager
def database_busy(db_url: str) -> Iterator[None]:
    """Another HQ process holds the write lock: a worker's next transaction waits for it."""
    if db_url.startswith("sqlite:///"):
        conn: Any = sqlite3.connect(db_url[len("sqlite:///"):], isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
    else:
        import psycopg

        conn = psycopg.connect(db_url)
        # Every message's first write is to hq_device (its row lock orders its batches).
        conn.execute("LOCK TABLE hq_device IN EXCLUSIVE MODE")
    try:
        yield
    finally:
        conn.rollback()  # sqlite3's too ends the BEGIN IMMEDIATE
        conn.close()


def test_messages_waiting_share_one_commit_and_each_is_acknowledged(hq: Hq) -> None:
    """GIVEN a worker whose database is busy (another process holds the write lock)
    WHEN two boxes publish 5 batches meanwhile, and the lock is then released
    THEN the 5 are stored in one transaction, each as it would be alone (events, gap,
    max seq); all 5 were acknowledged: the same session, resumed, gets only what comes
    next."""
    w = hq.worker("hq-ingest-1")
    w.group_max_s = 60.0  # a loaded machine must not close the group early
    a, b = hq.box("S1", "D1"), hq.box("S2", "D2")
    with database_busy(hq.db_url):
        a.send([event("S1", "D1", s) for s in (1, 2)])
        b.send([event("S2", "D2", 1)])
        a.send([event("S1", "D1", s) for s in (5, 6)])  # opens the gap 3-4
        b.send([event("S2", "D2", 2)])
        a.send([event("S1", "D1", 3)])
        # the first is in the stalled transaction, the other 4 wait behind it
        wait_until(lambda: w.waiting == 4, what="4 batches queued behind the first")
    wait_until(lambda: w.counters.messages == 5, what="5 batches stored")
    assert w.counters.commits == 1 and w.counters.new_events == 7
    assert hq.count() == 7
    assert hq.dbs[0].query("SELECT device, max_seq FROM hq_device ORDER BY device") == [
        ("D1", 6), ("D2", 2)]
    assert hq.dbs[0].query("SELECT seq_from, seq_to, missing FROM hq_gap") == [(3, 4, 1)]
    w.stop()
    hq.workers.remove(w)
    w2 = hq.worker("hq-ingest-1")  # anything unacknowledged would come before this
    a.send([event("S1", "D1", 4)])
    wait_until(lambda: hq.count() == 8, what="the next batch stored")
    wait_until(lambda: w2.counters.messages == 1, what="the next batch counted")
    assert w2.counters.duplicates == 0
    assert hq.dbs[0].query("SELECT missing FROM hq_gap") == [(0,)]


def test_a_group_holds_at_most_group_max_messages_and_a_lone_one_commits_at_once(
        hq: Hq) -> None:
    """GIVEN a worker grouping at most 2 messages, its database busy while 5 batches arrive
    WHEN the lock is released, and later a single batch arrives in a quiet period
    THEN the 5 take 3 commits (2, 2, 1), and the lone batch is committed alone without
    waiting for company."""
    w = hq.worker("hq-ingest-1")
    w.group_max, w.group_max_s = 2, 60.0
    box = hq.box("S1", "D1")
    with database_busy(hq.db_url):
        for seq in range(1, 6):
            box.send([event("S1", "D1", seq)])
        wait_until(lambda: w.waiting == 4, what="4 batches queued behind the first")
    wait_until(lambda: w.counters.messages == 5, what="5 batches stored")
    assert w.counters.commits == 3 and hq.count() == 5
    box.send([event("S1", "D1", 6)])
    wait_until(lambda: w.counters.messages == 6, what="the lone batch stored")
    assert w.counters.commits == 4 and hq.count() == 6


def test_a_bad_message_in_a_group_does_not_spoil_the_others(
        hq: Hq, monkeypatch: pytest.MonkeyPatch) -> None:
    """GIVEN a worker whose database is busy while a good batch, a forged batch, a presence
    HQ's code fails on (a bug), and another good batch arrive
    WHEN the lock is released and they are stored as one group
    THEN the group is stored again one message at a time: both good batches are stored,
    the forged one is a bad_signature reject with its payload kept, the failing presence an
    internal_error reject kept whole; each is acknowledged."""
    w = hq.worker("hq-ingest-1")
    w.group_max_s = 60.0  # a loaded machine must not close the group early
    store: EventStore = w.store
    real = store.record_presence

    def failing(st: str, device: str, p: Presence, seen: bool = True) -> None:
        if device == "D2":
            raise KeyError("a bug in presence")
        real(st, device, p, seen)

    monkeypatch.setattr(store, "record_presence", failing)
    good, other = hq.box("S1", "D1"), hq.box("S2", "D2")
    with database_busy(hq.db_url):
        good.send([event("S1", "D1", 1)])
        forged = [event("S1", "D1", 2)]
        good.raw(*_batch("S1", "D1", forged), key=hq.register("S9", "D9"))
        presence = Presence(PresenceState.ONLINE, "0.1.0", 1, 0, True, 1.0e9).encode()
        other.raw(TOPICS.status("S2", "D2"), presence)
        good.send([event("S1", "D1", 2)])
        wait_until(lambda: w.waiting == 3, what="3 messages queued behind the first")
    wait_until(lambda: w.counters.messages == 4, what="4 messages handled")
    assert w.counters.groups_split == 1 and w.counters.rejected == 2
    assert w.counters.commits == 4  # one transaction each, after the group rolled back
    assert hq.dbs[0].query("SELECT device, seq FROM hq_event ORDER BY seq") == [
        ("D1", 1), ("D1", 2)]
    rows = hq.dbs[0].query("SELECT device, reason, raw FROM hq_reject ORDER BY id")
    assert [(d, r) for d, r, _raw in rows] == [("D1", "bad_signature"),
                                               ("D2", "internal_error")]
    assert base64.b64decode(rows[0][2]) == _batch("S1", "D1", forged)[1]
    assert base64.b64decode(rows[1][2]) == presence
    # the rolled-back group's store row is written again by the retry (HQ remembers a
    # store's row only once a commit wrote it)
    assert hq.dbs[0].query("SELECT store FROM hq_store") == [("S1",)]


@pytest.mark.broker_needs("shared_redelivery", reason="the batches the crashed worker never "
                          "acknowledged must come again to its resumed shared subscription")
def test_a_crash_between_commit_and_puback_is_absorbed_by_the_redelivery(
        hq: Hq, monkeypatch: pytest.MonkeyPatch) -> None:
    """GIVEN a worker that commits 3 batches and dies before sending their PUBACKs
    WHEN a worker with the same session comes back and the broker redelivers them
    THEN HQ holds each event once: the second worker counts them all as duplicates."""
    w = hq.worker("hq-ingest-1")
    unacked: list[int] = []

    def dies_before_puback(mid: int, _qos: int) -> MQTTErrorCode:
        unacked.append(mid)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    monkeypatch.setattr(w.client, "ack", dies_before_puback)
    box = hq.box("S1", "D1")
    for b in range(3):
        box.send([event("S1", "D1", b * 2 + s) for s in (1, 2)])
    wait_until(lambda: w.counters.messages == 3, what="3 batches committed")
    assert len(unacked) == 3 and hq.count() == 6
    w.stop()  # the broker keeps the 3 unacknowledged messages for this session
    hq.workers.remove(w)
    w2 = hq.worker("hq-ingest-1", wait=False)
    wait_until(lambda: w2.counters.messages == 3, what="the 3 batches redelivered")
    assert w2.counters.duplicates == 6 and w2.counters.new_events == 0
    assert hq.count() == 6
    assert hq.dbs[0].query("SELECT COUNT(DISTINCT event_id) FROM hq_event") == [(6,)]
    assert hq.count("SELECT max_seq FROM hq_device WHERE device='D1'") == 6


def _batch(store: str, device: str, events: list[dict[str, Any]]) -> tuple[str, bytes, str]:
    from sync.contract import EventBatch

    payload, ctype = EventBatch(store, device, events).encode()
    return TOPICS.events(store, device), payload, ctype
