"""The persistent print queue: durable across restarts, exactly-once states, reprints."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from drivers.printqueue import INTERRUPTED, JobState, JobStateError, PrintQueue, QueueStorageError
from edge import slips
from edge.printdoc import Cut, Document, Text


def doc(n: int) -> Document:
    return Document("test", [Text(f"slip {n}"), Cut()])


def test_jobs_survive_a_killed_process(tmp_path: Path) -> None:
    """GIVEN a process that enqueues three slips and is then killed with SIGKILL
    WHEN the queue is opened again
    THEN all three are queued, in order, with their documents intact."""
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from edge.printdoc import Document, Text, Cut
        from drivers.printqueue import PrintQueue
        q = PrintQueue(Path({str(tmp_path / "printq.sqlite")!r}))
        for n in range(3):
            q.enqueue(Document("test", [Text(f"slip {{n}}"), Cut()]))
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(root)})
    assert proc.returncode == -9, proc.stderr
    q = PrintQueue.in_home(tmp_path)
    assert q.waiting() == 3
    texts = []
    while (job := q.next_job()) is not None:
        q.mark_printing(job.id)
        q.mark_printed(job.id)
        texts.append(job.doc.text_lines())
    assert texts == [["slip 0"], ["slip 1"], ["slip 2"]]
    q.close()


def test_nothing_sent_goes_back_to_the_queue(tmp_path: Path) -> None:
    """GIVEN a job whose write failed before any byte went out
    WHEN it is marked failed with retry
    THEN it is queued again with one attempt and the error recorded, and prints next."""
    q = PrintQueue(tmp_path / "q.sqlite")
    jid = q.enqueue(doc(1))
    q.mark_printing(jid)
    q.mark_failed(jid, "connection refused", retry=True)
    job = q.get(jid)
    assert (job.state, job.attempts, job.last_error) == (JobState.QUEUED, 1,
                                                         "connection refused")
    nxt = q.next_job()
    assert nxt is not None and nxt.id == jid
    q.mark_printing(jid)
    q.mark_printed(jid)
    assert q.get(jid).state is JobState.PRINTED and q.get(jid).attempts == 2
    assert q.next_job() is None and q.waiting() == 0


def test_partial_write_is_never_retried(tmp_path: Path) -> None:
    """GIVEN a job whose write failed after some bytes went out
    WHEN it is marked failed without retry
    THEN it is failed permanently, not offered again, and cannot be marked printed."""
    q = PrintQueue(tmp_path / "q.sqlite")
    jid = q.enqueue(doc(1))
    q.mark_printing(jid)
    q.mark_failed(jid, "timeout after 1024 of 9000 bytes", retry=False)
    assert q.get(jid).state is JobState.FAILED_PERMANENTLY
    assert q.next_job() is None
    with pytest.raises(JobStateError, match="not printing"):
        q.mark_printed(jid)
    with pytest.raises(JobStateError, match="no print job 99"):
        q.get(99)


def test_crash_while_printing_is_not_resent(tmp_path: Path) -> None:
    """GIVEN a job marked printing when the process stopped
    WHEN the queue is reopened
    THEN the job is failed permanently with the interruption reason (it may be on paper)."""
    path = tmp_path / "q.sqlite"
    q = PrintQueue(path)
    jid = q.enqueue(doc(1))
    later = q.enqueue(doc(2))
    q.mark_printing(jid)
    q.close()  # the process dies here, between write and mark_printed
    q = PrintQueue(path)
    assert q.recovered == 1
    assert q.get(jid).state is JobState.FAILED_PERMANENTLY
    assert q.get(jid).last_error == INTERRUPTED
    nxt = q.next_job()
    assert nxt is not None and nxt.id == later


def test_reprint_last_copies_finished_jobs_in_order(tmp_path: Path) -> None:
    """GIVEN three printed slips, one failed slip and one still queued
    WHEN the last 2 and then the last 10 are reprinted
    THEN new queued jobs copy the finished ones oldest first and point at the originals;
    the queued one is not duplicated."""
    q = PrintQueue(tmp_path / "q.sqlite")
    ids = []
    for n in range(4):
        jid = q.enqueue(doc(n))
        q.mark_printing(jid)
        if n == 3:
            q.mark_failed(jid, "half printed", retry=False)
        else:
            q.mark_printed(jid)
        ids.append(jid)
    pending = q.enqueue(doc(9))
    new = q.reprint_last(2)
    assert [q.get(i).doc.text_lines() for i in new] == [["slip 2"], ["slip 3"]]
    assert [q.get(i).reprint_of for i in new] == [ids[2], ids[3]]
    assert all(q.get(i).state is JobState.QUEUED for i in new)
    again = q.reprint_last(10)
    assert pending not in [q.get(i).reprint_of for i in again]
    assert len(again) == 4
    with pytest.raises(ValueError, match="1-50"):
        q.reprint_last(0)


def test_damaged_document_fails_alone(tmp_path: Path) -> None:
    """GIVEN a queued job whose stored JSON was damaged, ahead of a good one
    WHEN the next job is asked for
    THEN the damaged one is failed permanently with the reason and the good one comes next."""
    path = tmp_path / "q.sqlite"
    q = PrintQueue(path)
    bad = q.enqueue(doc(1))
    good = q.enqueue(slips.test_page("gb18030"))
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE job SET doc='{broken' WHERE id=?", (bad,))
    nxt = q.next_job()
    assert nxt is not None and nxt.id == good
    assert q.get(bad).state is JobState.FAILED_PERMANENTLY
    assert "damaged" in q.get(bad).last_error


def test_unusable_queue_file_is_a_clear_error(tmp_path: Path) -> None:
    """GIVEN a queue path that is a folder, and a file that is not SQLite
    WHEN opened
    THEN QueueStorageError names the path."""
    (tmp_path / "dir.sqlite").mkdir()
    with pytest.raises(QueueStorageError, match=r"dir\.sqlite"):
        PrintQueue(tmp_path / "dir.sqlite")
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(QueueStorageError, match=r"junk\.sqlite"):
        PrintQueue(junk)
