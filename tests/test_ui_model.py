"""The UI's reading of daemon answers: lenient where the daemon is silent, exact otherwise."""

from __future__ import annotations

import pytest

from cli import edge as cli
from ui.big_text import block_lines
from ui.model import DeviceState, PickupRow, PickupState, RecentDecision, Status
from ui.words import duration, source


def test_status_reads_every_field() -> None:
    """GIVEN a full status dict as the daemon sends it
    WHEN it is parsed
    THEN every field the status bar shows is taken from it."""
    s = Status.from_dict({
        "store_id": "BJ001", "device_id": "BJ001-T1", "store_name": "望京店", "clock": 10.0,
        "clock_trusted": True, "config_version": 12,
        "online": False, "last_contact": 4.0, "backlog": 31,
        "printer": {"name": "printer", "state": "failed", "printer_state": "no_paper",
                    "detail": "paper end", "jobs_waiting": 2},
        "scanner": {"name": "scanner", "state": "running"},
        "camera": {"name": "camera", "state": "absent"}, "last_error": "disk full"})
    assert (s.store_name, s.online, s.last_contact_at, s.backlog) == ("望京店", False, 4.0, 31)
    assert (s.now, s.last_error) == (10.0, "disk full")
    assert (s.printer, s.jobs_waiting) == (DeviceState.NO_PAPER, 2)
    assert (s.scanner, s.camera, s.clock_trusted, s.config_version) == (
        DeviceState.READY, DeviceState.ABSENT, True, 12)


def test_status_missing_or_odd_fields_read_as_unknown() -> None:
    """GIVEN a status with missing sections, a state the UI does not know and a bad number
    WHEN it is parsed
    THEN nothing raises: unknown states read UNKNOWN, numbers fall back to 0."""
    s = Status.from_dict({"printer": {"state": "on_fire", "jobs_waiting": "many"},
                          "online": None, "backlog": "lots"})
    assert s.printer is DeviceState.UNKNOWN and s.jobs_waiting == 0
    assert s.scanner is DeviceState.UNKNOWN and not s.online and s.backlog == 0


def test_events_fold_into_status() -> None:
    """GIVEN a status with the printer ready and the box online
    WHEN a device event (printer offline) and a sync event (offline, backlog 5) arrive
    THEN the status shows both, and an event for an unknown device changes nothing."""
    s = Status.from_dict({"printer": {"name": "printer", "state": "running"}, "online": True})
    s = s.merged("device", {"name": "printer", "state": "stopped", "jobs_waiting": 1})
    s = s.merged("sync", {"online": False, "backlog": 5, "last_contact": 3.0, "alarm": True})
    assert (s.printer, s.jobs_waiting, s.online, s.backlog, s.last_contact_at) == (
        DeviceState.OFFLINE, 1, False, 5, 3.0)
    assert s.sync_alarm
    assert s.merged("device", {"name": "toaster", "state": "running"}) == s


@pytest.mark.parametrize(("part", "shown"), [
    ({"state": "running"}, DeviceState.READY),
    ({"state": "starting"}, DeviceState.STARTING),
    ({"state": "absent"}, DeviceState.ABSENT),
    ({"state": "failed", "detail": "device /dev/usb/lp0 gone"}, DeviceState.ERROR),
    ({"state": "failed", "detail": "paper end: printing stopped"}, DeviceState.NO_PAPER),
    ({"state": "failed", "detail": "cover open"}, DeviceState.COVER_OPEN),
    ({"state": "failed", "printer_state": "offline", "detail": "paper end"},
     DeviceState.OFFLINE),
    ({"state": "running", "printer_state": "no_paper"}, DeviceState.NO_PAPER),
    ({"state": "running", "device_state": "connecting"}, DeviceState.STARTING),
    ({"state": "running", "device_state": "failed"}, DeviceState.ERROR),
    ({}, DeviceState.UNKNOWN),
])
def test_part_states_in_the_cashiers_terms(part: dict[str, str], shown: DeviceState) -> None:
    """GIVEN a part object as the daemon's supervisor reports it
    WHEN the status bar reads it
    THEN the state is the one a cashier can act on; the printer's own state wins."""
    assert DeviceState.parse(part) is shown


def test_pickup_rows_and_search() -> None:
    """GIVEN orders as the daemon lists them (one flagged late)
    WHEN parsed and searched
    THEN the late flag shows as LATE, and search matches number prefix or name."""
    late = PickupRow.from_dict({"order_id": "O1", "number": "0815", "status": "waiting",
                                "late": True, "customer": "王*", "items": "吐司"})
    odd = PickupRow.from_dict({"number": "0900", "status": "lost"})
    assert late.state is PickupState.LATE and odd.state is PickupState.WAITING
    ended = {"number": "0901", "status": "waiting", "window_end": 100}
    assert PickupRow.from_dict(ended).state is PickupState.WAITING  # the daemon decides
    assert PickupRow.from_dict({**ended, "late": True, "status": "collected"}).state \
        is PickupState.COLLECTED  # a collected order is never shown late
    assert late.matches("08") and late.matches("王") and late.matches("吐司")
    assert not late.matches("09") and late.matches("")


def test_recent_decision_defaults_to_voidable() -> None:
    """GIVEN a recent decision without a voidable flag, and one the daemon says is too old
    WHEN parsed
    THEN the first is offered for voiding (the daemon still decides), the second is not."""
    first = RecentDecision.from_dict({"decision_id": 1, "accepted": True, "at": 5.0})
    assert first.voidable and first.verdict["decided_at"] == 5.0
    assert not RecentDecision.from_dict({"decision_id": 2, "voidable": False}).voidable


@pytest.mark.parametrize(("seconds", "zh", "en"), [
    (42, "42秒", "42s"), (300, "5分钟", "5m"), (7200, "2小时", "2h"), (172800, "2天", "2d")])
def test_durations(seconds: int, zh: str, en: str) -> None:
    """GIVEN a time since the last contact
    WHEN written for the status bar
    THEN it uses the largest whole unit, in each language."""
    assert duration(seconds, "zh") == zh and duration(seconds, "en") == en


def test_block_headline_fits_and_falls_back() -> None:
    """GIVEN the verdict headlines
    WHEN drawn in block letters for a 74-column panel
    THEN each fits, uses only console-safe block characters, and a headline too wide for
    the space gives None (the panel then writes it in plain letters)."""
    for word in ("通过", "拒绝", "ACCEPTED", "REJECTED"):
        rows = block_lines(word, 74)
        assert rows is not None and 4 <= len(rows) <= 8
        assert max(len(r) for r in rows) <= 74
        assert set("".join(rows)) <= {" ", "█", "▀", "▄"}
    assert block_lines("READY TO SCAN AND SOME MORE WORDS", 74) is None


@pytest.mark.parametrize(("label", "zh"), [
    ("serial:/dev/ttyACM0", "扫码枪"), ("camera:0", "摄像头"), ("keyboard", "键盘"),
    ("cli", "命令行"), ("api", "api")])
def test_scan_sources_in_words(label: str, zh: str) -> None:
    """GIVEN the daemon's scan source labels (``kind:where`` for devices)
    WHEN shown under a verdict
    THEN the cashier reads the kind in words; an unknown label is shown as given."""
    assert source(label, "zh") == zh


def test_edge_ui_options_before_or_after_the_command() -> None:
    """GIVEN `edge --lang en --home H ui` and `edge ui --lang en --home H --till T3`
    WHEN parsed
    THEN both give the UI the language and home, and the till."""
    a = cli.build_parser().parse_args(["--lang", "en", "--home", "/h", "ui"])
    b = cli.build_parser().parse_args(["ui", "--lang", "en", "--home", "/h", "--till", "T3"])
    assert (a.command, a.lang, str(a.home), a.till) == ("ui", "en", "/h", "")
    assert (b.command, b.lang, str(b.home), b.till) == ("ui", "en", "/h", "T3")
