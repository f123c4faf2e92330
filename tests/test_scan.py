"""The shared scan plumbing: backoff, the thread bridge, config parsing."""

from __future__ import annotations

import asyncio
import random
import threading
from dataclasses import dataclass

import pytest

from drivers.scan import (
    Backoff,
    DropReason,
    Post,
    ScanDropped,
    ScannerConfigError,
    config_from_mapping,
    run_in_thread,
)


def test_backoff_doubles_with_jitter_up_to_its_cap_and_resets() -> None:
    """GIVEN a backoff from 0.5 s capped at 4 s
    WHEN it is asked ten times, then reset
    THEN each delay lies in [0.25, min(4, 0.5 * 2**n)], later ones vary (jitter),
    and after reset the first delay is small again."""
    backoff = Backoff(0.5, 4.0, random.Random(1))
    delays = [backoff.next() for _ in range(10)]
    for n, d in enumerate(delays):
        assert 0.25 <= d <= min(4.0, 0.5 * 2 ** n)
    assert len({round(d, 6) for d in delays[3:]}) > 1
    assert max(delays) <= 4.0
    backoff.reset()
    assert backoff.next() <= 0.5
    with pytest.raises(ValueError, match="0 < first <= cap"):
        Backoff(5.0, 1.0)


async def test_worker_results_arrive_on_the_loop_thread_and_errors_are_raised() -> None:
    """GIVEN a worker thread that posts three values, one to a failing callback, then fails
    WHEN it runs through run_in_thread
    THEN every callback ran on the loop thread, the failing one did not stop the others,
    and the worker's exception is raised to the caller."""
    loop_thread = threading.get_ident()
    seen: list[tuple[int, int]] = []

    def record(value: int) -> None:
        seen.append((value, threading.get_ident()))
        if value == 2:
            raise RuntimeError("callback bug")

    def worker(stop: threading.Event, post: Post) -> None:
        for value in (1, 2, 3):
            post(record, value)
        raise OSError(5, "device went away")

    with pytest.raises(OSError, match="device went away"):
        await run_in_thread(worker, "test-worker")
    await asyncio.sleep(0.05)
    assert seen == [(1, loop_thread), (2, loop_thread), (3, loop_thread)]


async def test_cancelling_stops_the_worker() -> None:
    """GIVEN a worker that blocks until asked to stop
    WHEN the task running it is cancelled
    THEN the worker sees the stop request and its thread ends."""
    stopped = threading.Event()

    def worker(stop: threading.Event, post: Post) -> None:
        stop.wait(30)
        stopped.set()

    task = asyncio.create_task(run_in_thread(worker, "blocking-worker"))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stopped.is_set()
    # The task ends when the worker has returned; its thread may still be unwinding.
    for t in threading.enumerate():
        if t.name == "blocking-worker":
            t.join(5)
    assert not any(t.name == "blocking-worker" for t in threading.enumerate())


@dataclass(frozen=True)
class Sample:
    name: str
    count: int = 1
    ratio: float = 0.5
    source: str | int = 0
    reason: DropReason = DropReason.EMPTY
    flags: tuple[str, ...] = ()


def test_config_from_mapping_converts_and_rejects_with_the_key_named() -> None:
    """GIVEN a config dataclass with str, int, float, union, enum and tuple fields
    WHEN tables are converted
    THEN ints widen to floats, enums and tuples are built, union members are kept, and
    wrong types, unknown keys and missing required keys raise ScannerConfigError."""
    got = config_from_mapping(Sample, {"name": "a", "ratio": 2, "source": "rtsp://x",
                                       "reason": "too_long", "flags": ["x", "y"]}, "[t]")
    assert got == Sample("a", 1, 2.0, "rtsp://x", DropReason.TOO_LONG, ("x", "y"))
    assert config_from_mapping(Sample, {"name": "b", "source": 3}, "[t]").source == 3
    with pytest.raises(ScannerConfigError, match=r"\[t\] count must be int, not str"):
        config_from_mapping(Sample, {"name": "a", "count": "2"}, "[t]")
    with pytest.raises(ScannerConfigError, match="must be an integer, not a boolean"):
        config_from_mapping(Sample, {"name": "a", "count": True}, "[t]")
    with pytest.raises(ScannerConfigError, match="unknown key"):
        config_from_mapping(Sample, {"name": "a", "colour": "red"}, "[t]")
    with pytest.raises(ScannerConfigError, match="name"):
        config_from_mapping(Sample, {}, "[t]")


def test_a_drop_reads_as_one_log_line() -> None:
    """GIVEN a dropped 10 MB frame
    WHEN it is rendered for the log
    THEN the line names the source, the size, the reason and the first bytes."""
    text = str(ScanDropped("serial:/dev/ttyACM0", DropReason.TOO_LONG, 10_485_760, b"AAAA"))
    assert text == ("serial:/dev/ttyACM0: dropped 10485760 bytes: frame longer than the "
                    "configured maximum (starts b'AAAA')")
