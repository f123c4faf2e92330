"""Time (issue 11, attack 12): a forged NTP jump is flagged, not believed; HQ's signed config
pulls a trusted time that ran ahead back (the recovery through a real mosquitto)."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from edge import clock
from edge.box import Box
from edge.events import EventType
from edge.rules import Counter
from edge.storeconfig import apply_config
from edge.verdict import Reason
from hq.issuing.codes import sign_token
from provisioning.localbroker import Broker
from sync.contract import DataKind, Topics
from tests.factory import NOW, Clock, sample_coupon
from tests.sync_fixtures import (
    IDENTITY,
    STORE,
    HqListener,
    config_body,
    events_of,
    hq_data,
    new_ledger,
    sealed,
)
from tests.test_sync_service import HQ1, until
from tests.test_sync_service import Box as SyncBox

pytest_plugins = ["tests.sync_service_fixtures"]  # hq_listener, sync_box
YEAR = 365 * 86400.0


class Mono:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def _clock_events(box_ledger: object) -> list[dict[str, object]]:
    return events_of(box_ledger, EventType.CLOCK)  # type: ignore[arg-type]


def test_ntp_in_bounds_advances_and_a_jump_is_flagged_not_believed(box: Box) -> None:
    """GIVEN a box whose trusted time is NOW WHEN NTP says NOW + 10 min (10 min after, on the
    monotonic clock) THEN the trusted time follows; WHEN a forged sync says 10 years later,
    again and again THEN the trusted time stays, one `clock` event records the jump and
    status's clock_jump says so; WHEN NTP is back in bounds THEN the flag clears."""
    mono = Mono()
    with box.ledger.immediate() as conn:
        box.ledger.advance_trusted_time(conn, NOW, "hq-config-v1")
    assert not box.note_synchronised_clock(lambda: True, lambda: NOW, mono)  # reference
    mono.now += 600
    assert box.note_synchronised_clock(lambda: True, lambda: NOW + 600, mono)
    assert box.ledger.trusted_time() == NOW + 600
    for _ in range(3):
        mono.now += 60
        assert not box.note_synchronised_clock(lambda: True, lambda: NOW + 10 * YEAR, mono)
    assert box.ledger.trusted_time() == NOW + 600
    jumps = _clock_events(box.ledger)
    assert len(jumps) == 1 and jumps[0]["jump"] is True
    assert float(str(jumps[0]["ahead_s"])) > 9 * YEAR
    assert box.clock_jump is not None
    mono.now += 60
    assert box.note_synchronised_clock(lambda: True, lambda: NOW + 900, mono)
    assert box.clock_jump is None


def test_repeated_small_jumps_cannot_add_up(box: Box) -> None:
    """GIVEN a trusted time NOW WHEN forged syncs each move the clock by just under the step,
    with no time passing THEN only the first is believed: NTP can push the trusted time at
    most one step past the reference plus the time elapsed."""
    mono = Mono()
    with box.ledger.immediate() as conn:
        box.ledger.advance_trusted_time(conn, NOW, "hq-config-v1")
    step = clock.NTP_MAX_STEP_S - 1
    assert box.note_synchronised_clock(lambda: True, lambda: NOW + step, mono)
    assert not box.note_synchronised_clock(lambda: True, lambda: NOW + 2 * step, mono)
    assert box.ledger.trusted_time() == NOW + step


@pytest.mark.network
async def test_hq_signed_config_pulls_a_trusted_time_that_ran_ahead_back(
        broker: Broker, hq_listener: HqListener, sync_box: SyncBox) -> None:
    """GIVEN a box whose trusted time a forged NTP sync set 10 years ahead, so a coupon valid
    today reads expired WHEN HQ publishes a new config version (signed, issued now) THEN the
    box applies it, moves the trusted time back to HQ's issued_at (a `clock` event records
    from and to), and the coupon is accepted again."""
    now = time.time()
    with sync_box.ledger.immediate() as conn:
        sync_box.ledger.advance_trusted_time(conn, now + 10 * YEAR, "ntp")
    coupon = sign_token(HQ1, replace(sample_coupon(HQ1.key_id), valid_from=int(now - 3600),
                                     valid_until=int(now + 86400)))
    counter = Counter(sync_box.ledger, IDENTITY)
    assert counter.check(coupon).reason is Reason.EXPIRED
    sync_box.start()
    new_config = sealed(HQ1, DataKind.CONFIG, 2, config_body(HQ1))
    hq_listener.publish(Topics("se").config(STORE), new_config, retain=True)
    await until(lambda: sync_box.ledger.setting("config_version") == 2, what="config applied")
    assert sync_box.ledger.trusted_time() <= time.time()
    corrected = [e for e in _clock_events(sync_box.ledger) if e.get("corrected")]
    assert len(corrected) == 1 and float(str(corrected[0]["from"])) > now + 9 * YEAR
    assert counter.check(coupon).accepted
    assert counter.redeem(coupon, till="T1").accepted


def test_a_trusted_time_hq_set_is_not_moved_back_by_an_older_config(tmp_path: Path) -> None:
    """GIVEN a trusted time set by HQ's own signed data WHEN a config issued earlier arrives
    (a delayed delivery) THEN the trusted time stays: only a time NTP set is corrected."""
    hq_key = HQ1
    ledger = new_ledger(tmp_path / "l.sqlite", hq_key)
    try:
        with ledger.immediate() as conn:
            ledger.advance_trusted_time(conn, NOW + 10 * 86400, "hq-orders-v9")
        result = apply_config(ledger, IDENTITY, hq_data(DataKind.CONFIG, 1, config_body(hq_key),
                                                            issued_at=NOW), Clock(NOW))
        assert result.applied
        assert ledger.trusted_time() == NOW + 10 * 86400
        assert _clock_events(ledger) == []
    finally:
        ledger.close()
