"""Pickup numbers (issue 11, attack 9): random 6-digit numbers; typed misses limited per till.

The rules engine, the real daemon's local API, the cashier UI (against the stand-in daemon
with the real Counter), and HQ's issuing command.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from cli import hq as hq_cli
from edge import i18n
from edge.attempts import GuardPolicy, MissGuard
from edge.box import Box
from edge.verdict import Reason, Verdict
from provisioning.dev import samples
from tests.daemon_fixtures import make_home, running
from tests.factory import Hq
from tests.standin import StandIn
from tests.uihelp import WatchedApp, connected, panel_text, type_code, until

if TYPE_CHECKING:
    from tests.ui_store import Store

pytest_plugins = ["tests.ui_fixtures"]  # store, standin


class Ticks:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _decisions(box: Box) -> list[tuple[str | None, str, str]]:
    return [(r[0], r[1], r[2]) for r in box.ledger.conn.execute(
        "SELECT reason, till, source FROM decision ORDER BY id")]


def test_five_misses_lock_typed_numbers_at_that_till_only(hq: Hq, box: Box) -> None:
    """GIVEN a store with order 0815 WHEN till T1 types 5 unknown numbers in a minute THEN the
    fifth says typing is paused 60 s, T1's next typed number (even the right one) is refused
    as too_many_attempts with the seconds left, T2 still collects by number, T1 may still
    scan a signed pickup code, and after the cool-down T1 types again; every miss and every
    refusal is a recorded decision."""
    ticks = Ticks()
    box.counter.number_guard = MissGuard(clock=ticks)
    box.counter.redeem(hq.pickup(), till="T9")  # knows order 0815, collected
    box.counter.void(1, "test: give it back", till="T9")
    verdicts = [box.counter.redeem(f"99000{n}", till="T1", source="keyboard") for n in range(5)]
    assert [v.facts.get("misses_left") for v in verdicts[:4]] == [4, 3, 2, 1]
    assert verdicts[4].facts["locked_for_s"] == 60
    ticks.now += 15
    locked = box.counter.redeem("0815", till="T1", source="keyboard")
    assert locked.reason is Reason.TOO_MANY_ATTEMPTS and locked.facts["retry_after_s"] == 45
    assert locked.decision_id is not None
    scanned = box.counter.redeem(hq.pickup(), till="T1", source="serial")
    assert scanned.accepted  # a signed code needs no limit
    box.counter.void(scanned.decision_id or 0, "test: give it back", till="T1")
    other = box.counter.redeem("0815", till="T2", source="keyboard")
    assert other.accepted
    ticks.now += 46
    box.counter.void(other.decision_id or 0, "test: give it back", till="T2")
    assert box.counter.redeem("0815", till="T1", source="keyboard").accepted
    reasons = [r for r, _t, _s in _decisions(box)]
    assert reasons.count("unknown_pickup_number") == 5
    assert reasons.count("too_many_attempts") == 1


def test_check_counts_as_an_attempt_and_is_recorded(hq: Hq, box: Box) -> None:
    """GIVEN a till WHEN it only *checks* 5 unknown numbers THEN each miss is recorded (source
    check) and the sixth check is refused as too_many_attempts, recorded too; a check that
    finds nothing wrong (a known number) records nothing."""
    box.counter.number_guard = MissGuard(clock=Ticks())
    box.counter.redeem(hq.pickup(), till="T9")
    box.counter.void(1, "test: give it back", till="T9")
    before = len(_decisions(box))
    assert box.counter.check("0815", till="T1").accepted
    assert len(_decisions(box)) == before
    for n in range(5):
        assert box.counter.check(f"12345{n}", till="T1").decision_id is not None
    refused = box.counter.check("0815", till="T1")
    assert refused.reason is Reason.TOO_MANY_ATTEMPTS and refused.decision_id is not None
    assert _decisions(box)[before:] == [("unknown_pickup_number", "T1", "check")] * 5 + [
        ("too_many_attempts", "T1", "check")]


def test_the_box_wide_limit_stops_till_hopping() -> None:
    """GIVEN the guard WHEN misses come from 20 different till names within a minute THEN
    every till is locked (a client cannot dodge the limit by naming a new till each time)."""
    ticks = Ticks()
    guard = MissGuard(GuardPolicy(box_max_misses=20), clock=ticks)
    for n in range(19):
        assert guard.miss(f"till-{n}") == 0
    assert guard.miss("till-19") == 60
    assert guard.locked_for("till-never-seen") == 60


def test_the_cool_down_is_said_in_both_languages() -> None:
    """GIVEN a too_many_attempts verdict and the miss that started it WHEN put into words
    THEN zh and en say how many seconds to wait and that scans still work."""
    locked = Verdict(False, Reason.TOO_MANY_ATTEMPTS, "pickup", None, 0.0, True,
                     {"number": "123456", "retry_after_s": 42})
    zh = i18n.verdict_lines(locked, "zh")
    en = i18n.verdict_lines(locked, "en")
    assert "42 秒" in zh[1] and "扫码不受限制" in zh[2]
    assert "42 s" in en[1] and "scans still work" in en[2]
    fifth = Verdict(False, Reason.UNKNOWN_PICKUP_NUMBER, "pickup", None, 0.0, True,
                    {"number": "123456", "locked_for_s": 60})
    assert "暂停 60 秒" in i18n.verdict_lines(fifth, "zh")[1]
    assert "paused 60 s" in i18n.verdict_lines(fifth, "en")[1]


async def test_through_the_local_api_of_the_real_daemon(tmp_path: Path) -> None:
    """GIVEN the real daemon with the demo store WHEN a client checks 5 unknown numbers at
    till T1 through the local API THEN the sixth request, a scan of a real order number at
    T1, is refused (too_many_attempts), the same number at T2 is collected, and `recent`
    lists the 5 checked misses."""
    home = make_home(tmp_path)
    number = samples(home)["pickups"][0]["number"]
    async with running(home) as r:
        for n in range(5):
            miss = await r.client.request("check", code=f"00000{n}", till="T1")
            assert miss["reason"] == "unknown_pickup_number" and miss["decision_id"]
        refused = await r.client.request("scan", code=number, till="T1", source="keyboard")
        collected = await r.client.request("scan", code=number, till="T2", source="keyboard")
        recent = (await r.client.request("recent", limit=10))["decisions"]
    assert refused["reason"] == "too_many_attempts" and refused["facts"]["retry_after_s"] > 0
    assert collected["accepted"]
    assert sum(d["source"] == "check" for d in recent) == 5


async def test_the_cashier_sees_the_cool_down(store: Store, standin: StandIn) -> None:
    """GIVEN the cashier UI WHEN 5 wrong pickup numbers are typed, then a sixth THEN the panel
    says typing is paused, then how long to wait and that scanning still works."""
    app = WatchedApp(standin.path)
    async with app.run_test(size=(100, 30)) as pilot:
        await connected(pilot, app)
        for n in range(5):
            await type_code(pilot, f"77770{n}")
            await until(pilot, lambda n=n: len(app.scan_pane.history) == n + 1, "a verdict")
        assert "手动输入暂停 60 秒" in panel_text(app)
        await type_code(pilot, "777777")
        await until(pilot, lambda: len(app.scan_pane.history) == 6, "the refusal")
        text = panel_text(app)
        assert "取货号输错过多" in text and "秒后再输入" in text and "扫码不受限制" in text


def test_hq_issues_random_six_digit_numbers(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """GIVEN an HQ home with a pickup key WHEN `edge-hq issue pickup` runs twice without
    --number THEN each code carries a random 6-digit number (printed on stderr), not the
    same twice; the demo home's orders have 6-digit numbers too."""
    home = tmp_path / "hq"
    assert hq_cli.main(["--home", str(home), "keygen", "--key-id", "P1", "--purposes",
                        "pickup"]) == 0
    capsys.readouterr()
    numbers = []
    for order in ("O1", "O2"):
        assert hq_cli.main(["--home", str(home), "issue", "pickup", "--order", order,
                            "--store", "BJ001", "--json"]) == 0
        out = capsys.readouterr()
        numbers.append(out.err.split("pickup number ")[1].split()[0])
        assert json.loads(out.out)["code"]
    assert all(len(n) == 6 and n.isdigit() for n in numbers) and numbers[0] != numbers[1]
    demo = [p["number"] for p in samples(make_home(tmp_path / "demo"))["pickups"]]
    assert all(len(n) == 6 for n in demo)
