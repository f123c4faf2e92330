"""edge.ledger's outbox bookkeeping: acknowledged seq ranges, unsent runs, the backlog."""

from __future__ import annotations

import time
from pathlib import Path

import peewee as pw

from edge.ledger import MIGRATIONS, SCHEMA_VERSION, Ledger
from edge.storeconfig import SyncPolicy
from sync.outbox import Outbox
from tests.sync_fixtures import IDENTITY, append_events, confirm


def _acked(ledger: Ledger) -> list[tuple[int, int]]:
    return ledger.conn.execute("SELECT first, last FROM outbox_acked ORDER BY first").fetchall()


def _unsent(ledger: Ledger) -> list[int]:
    return [e.seq for e in ledger.pending_events(limit=10_000)]


def _schema_2_ledger(path: Path, count: int, unsent: set[int], pruned: set[int]) -> None:
    """A ledger as schema 2 left it: ``count`` events, a ``sent_at`` on all but ``unsent``
    (which have their wire texts), and the ``pruned`` rows deleted."""
    db = pw.SqliteDatabase(str(path))
    db.connect()
    MIGRATIONS[0](db)
    MIGRATIONS[1](db)
    conn = db.connection()
    conn.execute("PRAGMA user_version = 2")
    for i in range(1, count + 1):
        conn.execute("INSERT INTO outbox(event_id, type, at, clock_trusted, body, sent_at)"
                     " VALUES (?, 'decision', 1.0, 1, '{}', ?)",
                     (f"e{i}", None if i in unsent else 5.0))
        if i in unsent:
            conn.execute("INSERT INTO outbox_wire(seq, wire) VALUES (?, '{}')", (i,))
    conn.executemany("DELETE FROM outbox WHERE seq = ?", [(i,) for i in sorted(pruned)])
    conn.commit()
    db.close()


def test_acknowledged_ranges_coalesce_and_the_backlog_is_what_they_leave(tmp_path: Path) -> None:
    """GIVEN 100 events WHEN ranges are acknowledged apart, then one joining them, then one
    past the newest event THEN the table holds the coalesced ranges only, runs of unsent
    seqs stop where an acknowledged range starts, the backlog counts the rest, and seqs
    not yet written are never marked (the next event is unsent)."""
    ledger = Ledger(tmp_path / "l.sqlite")
    append_events(ledger, 100)
    assert ledger.mark_sent([(11, 20), (31, 40)]) == 20
    assert _acked(ledger) == [(11, 20), (31, 40)]
    assert ledger.unsent_run(0) == (1, 11)
    assert ledger.unsent_run(10) == (21, 31)
    assert ledger.unsent_run(35) == (41, None)
    assert ledger.backlog() == 80
    assert ledger.mark_sent([(21, 30)]) == 10
    assert _acked(ledger) == [(11, 40)]
    assert ledger.mark_sent([(95, 500)]) == 6  # 95..100: 101.. do not exist yet
    assert _acked(ledger) == [(11, 40), (95, 100)]
    append_events(ledger, 1)
    assert _unsent(ledger) == [*range(1, 11), *range(41, 95), 101]
    assert ledger.backlog() == 65
    assert ledger.unsent_run(100) == (101, None)
    assert ledger.unsent_run(101) == (102, None) and ledger.pending_events(after_seq=101) == []
    ledger.close()


def test_a_batch_never_spans_an_acknowledged_range(tmp_path: Path) -> None:
    """GIVEN events 1-50 with 21-30 acknowledged (a batch acked out of order) WHEN the drain
    reads batches of 100 THEN it gets 1-20, then 31-50: the acknowledged ones are not sent
    again and no batch spans them."""
    ledger = Ledger(tmp_path / "l.sqlite")
    append_events(ledger, 50)
    ledger.mark_sent([(21, 30)])
    outbox = Outbox(ledger, IDENTITY)
    b1 = outbox.next_batch(0, 100)
    assert b1 is not None and (b1.first, b1.last, b1.count) == (1, 20, 20)
    b2 = outbox.next_batch(b1.last, 100)
    assert b2 is not None and (b2.first, b2.last, b2.count) == (31, 50, 20)
    assert outbox.next_batch(b2.last, 100) is None
    ledger.close()


def test_a_missing_wire_text_mid_run_falls_back_without_a_gap(tmp_path: Path) -> None:
    """GIVEN a run whose stored wire text is missing for one event in the middle WHEN it is
    read THEN the batch is still every seq of the run, in order."""
    ledger = Ledger(tmp_path / "l.sqlite")
    append_events(ledger, 30)
    ledger.conn.execute("DELETE FROM outbox_wire WHERE seq IN (15, 30)")
    outbox = Outbox(ledger, IDENTITY, compress=False)
    batch = outbox.next_batch(0, 100)
    assert batch is not None and (batch.first, batch.last, batch.count) == (1, 30, 30)
    assert batch.payload.count(b'"seq":') == 30
    ledger.close()


def test_pruning_goes_by_event_time_and_never_touches_unsent_rows(tmp_path: Path) -> None:
    """GIVEN 30 events ten days old, the clock stepping back once among them (event 21 is
    young), all but 26-30 acknowledged, and 5 young unsent events WHEN the policy (7 days)
    is applied THEN the old acknowledged rows before the young one go, the ones behind it
    wait, the old unsent ones stay (raising the age alarm, event 36), and the backlog and
    runs are unchanged; once all is sent the next check prunes the rest that is old. Sent
    rows go only once HQ confirmed them: before that, nothing is pruned."""
    ledger = Ledger(tmp_path / "l.sqlite")
    old = time.time() - 10 * 86400
    append_events(ledger, 20, start_at=old)
    append_events(ledger, 1, start_at=time.time())
    append_events(ledger, 9, start_at=old + 1)
    append_events(ledger, 5, start_at=time.time())
    ledger.mark_sent([(1, 25)])
    health = Outbox(ledger, IDENTITY).check(SyncPolicy(outbox_max_age_s=7 * 86400))
    assert health.pruned == 0 and health.unconfirmed == 25  # sent, not confirmed: kept
    confirm(ledger, 25)
    health = Outbox(ledger, IDENTITY).check(SyncPolicy(outbox_max_age_s=7 * 86400))
    assert health.pruned == 20
    seqs = [r[0] for r in ledger.conn.execute("SELECT seq FROM outbox ORDER BY seq")]
    assert seqs == list(range(21, 37)) and health.alarm
    assert _unsent(ledger) == list(range(26, 37)) and ledger.backlog() == 11
    assert ledger.conn.execute("SELECT seq FROM outbox_wire ORDER BY seq").fetchall() == \
        [(s,) for s in range(26, 37)]
    assert _acked(ledger) == [(1, 25)]  # still describes 21-25
    ledger.mark_sent([(26, 36)])
    confirm(ledger, 36)
    health = Outbox(ledger, IDENTITY).check(SyncPolicy(outbox_max_age_s=7 * 86400))
    assert not health.alarm and health.pruned == 0  # 21 is young: 22-30 wait behind it
    assert _unsent(ledger) == [37]  # the alarm going off
    ledger.close()


def test_schema_2_sent_marks_become_ranges(tmp_path: Path) -> None:
    """GIVEN a schema-2 ledger (a ``sent_at`` per row) with sent rows 1-3 (1 and 2 pruned),
    unsent 4, sent 5-6, unsent 7 WHEN this software opens it THEN the sent islands become
    the ranges 1-3 (the pruned ones included) and 5-6, the column is gone, and exactly 4
    and 7 wait."""
    path = tmp_path / "v2.sqlite"
    _schema_2_ledger(path, 7, unsent={4, 7}, pruned={1, 2})
    ledger = Ledger(path)
    assert ledger.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert _acked(ledger) == [(1, 3), (5, 6)]
    columns = [r[1] for r in ledger.conn.execute("PRAGMA table_info(outbox)")]
    assert "sent_at" not in columns
    assert _unsent(ledger) == [4, 7] and ledger.backlog() == 2
    ledger.close()


def test_an_empty_schema_2_outbox_marks_every_pruned_seq_sent(tmp_path: Path) -> None:
    """GIVEN a schema-2 ledger whose 5 events were all sent and pruned WHEN migrated THEN
    seqs 1-5 are one acknowledged range and the next event (6) is the only one waiting."""
    path = tmp_path / "v2.sqlite"
    _schema_2_ledger(path, 5, unsent=set(), pruned={1, 2, 3, 4, 5})
    ledger = Ledger(path)
    assert _acked(ledger) == [(1, 5)]
    append_events(ledger, 1)
    assert _unsent(ledger) == [6] and ledger.backlog() == 1
    ledger.close()


def _built(ledger: Ledger, compress: bool = True) -> list[tuple[int, int, bytes]]:
    """Batches of 100 as the drain builds them with nothing prepared (a fresh copy)."""
    saved = ledger.conn.execute("SELECT * FROM outbox_batch").fetchall()
    ledger.conn.execute("DELETE FROM outbox_batch")
    out, cursor = [], 0
    outbox = Outbox(ledger, IDENTITY, compress)
    while (b := outbox.next_batch(cursor, 100)) is not None:
        out.append((b.first, b.last, b.payload))
        cursor = b.last
    ledger.conn.executemany("INSERT INTO outbox_batch VALUES (?,?,?,?,?,?)", saved)
    return out


def test_batches_prepared_offline_are_byte_equal_and_used_only_while_whole(
        tmp_path: Path) -> None:
    """GIVEN 350 unsent events WHEN the backlog is prepared THEN three full batches are
    stored (the 50 newest are left for the drain), each byte for byte the batch the drain
    would build; the drain sends them as stored; WHEN part of one is acknowledged
    meanwhile THEN that one is built again without the acknowledged events; WHEN the
    compression setting changes THEN none is used and the next prepare replaces them;
    and once acknowledged they are pruned."""
    ledger = Ledger(tmp_path / "l.sqlite")
    append_events(ledger, 350)
    want = _built(ledger)
    outbox = Outbox(ledger, IDENTITY)
    assert outbox.seal(100) == 3
    assert outbox.seal(100) == 0  # nothing new to prepare
    rows = ledger.conn.execute("SELECT first, last, payload FROM outbox_batch ORDER BY first"
                               ).fetchall()
    assert rows == [tuple(w) for w in want[:3]]
    ledger.conn.execute("UPDATE outbox_batch SET payload = X'00' WHERE first = 101")
    b2 = outbox.next_batch(100, 100)
    assert b2 is not None and b2.payload == b"\x00"  # sent as stored, not re-encoded
    ledger.mark_sent([(150, 160)])
    b2 = outbox.next_batch(100, 100)
    assert b2 is not None and (b2.first, b2.last) == (101, 149) and b2.payload != b"\x00"
    plain = Outbox(ledger, IDENTITY, compress=False)
    b1 = plain.next_batch(0, 100)
    assert b1 is not None and b1.payload == _built(ledger, compress=False)[0][2]
    assert plain.seal(100) == 3  # 1-100 again, 101-149 (it ends at an acked range), 161-260
    assert all(r[0].endswith("|plain")
               for r in ledger.conn.execute("SELECT made_for FROM outbox_batch"))
    ledger.mark_sent([(1, 350)])
    Outbox(ledger, IDENTITY).check(SyncPolicy())
    assert ledger.conn.execute("SELECT COUNT(*) FROM outbox_batch").fetchone()[0] == 0
    ledger.close()


def test_a_sent_row_pruned_past_an_unsent_one_by_schema_2_is_not_waited_for(
        tmp_path: Path) -> None:
    """GIVEN a schema-2 ledger whose count pruning deleted sent row 4 while row 2 was still
    unsent (rows: 1 sent, 2 unsent, 3 sent, 5 sent, 6 unsent) WHEN migrated THEN 4 counts as
    sent, exactly 2 and 6 wait, and the drain's batches are 2, then 6."""
    path = tmp_path / "v2.sqlite"
    _schema_2_ledger(path, 6, unsent={2, 6}, pruned={4})
    ledger = Ledger(path)
    assert _acked(ledger) == [(1, 1), (3, 5)]
    assert _unsent(ledger) == [2, 6] and ledger.backlog() == 2
    outbox = Outbox(ledger, IDENTITY, compress=False)
    b1 = outbox.next_batch(0, 100)
    assert b1 is not None and (b1.first, b1.last) == (2, 2)
    b2 = outbox.next_batch(b1.last, 100)
    assert b2 is not None and (b2.first, b2.last) == (6, 6)
    ledger.close()


def test_the_drain_looks_past_a_run_with_no_rows(tmp_path: Path) -> None:
    """GIVEN rows 4-5 missing with no range covering them (a ledger damaged by hand) and
    6-10 acknowledged WHEN the drain reads after 3 THEN it is not stuck on the empty run:
    nothing waits; and a new event 11 is the next batch."""
    ledger = Ledger(tmp_path / "l.sqlite")
    append_events(ledger, 10)
    ledger.mark_sent([(1, 3), (6, 10)])
    ledger.conn.execute("DELETE FROM outbox WHERE seq IN (4, 5)")
    ledger.conn.execute("DELETE FROM outbox_wire WHERE seq IN (4, 5)")
    outbox = Outbox(ledger, IDENTITY)
    assert outbox.next_batch(3, 100) is None
    append_events(ledger, 1)
    batch = outbox.next_batch(3, 100)
    assert batch is not None and (batch.first, batch.last) == (11, 11)
    assert _unsent(ledger) == [11]
    ledger.close()
