"""The systemd units: they verify, say what the issue asks for, keep their hardening
score, and the daemon's log lines carry journald priorities when stdout is the journal."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "systemd"
INSTALLED_EDGE = "/opt/store-edge/.venv/bin/edge"  # where provisioning/install.sh puts it
# Ratchets: `systemd-analyze security --offline=true` exposure, lower is better. Raise
# them only with a reason written next to the unit line that costs it.
MAX_EXPOSURE = {"store-edge.service": 1.6, "store-edge-ui@.service": 0.7}


def settings(unit: str) -> dict[str, list[str]]:
    """Every ``Key=value`` of a unit file, values in order (keys may repeat)."""
    out: dict[str, list[str]] = {}
    for line in (UNITS / unit).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def as_built(tmp_path: Path, unit: str, name: str) -> Path:
    """The unit with ExecStart pointing at this checkout's edge (the one path that differs
    from an installed box), so verify checks everything else as written."""
    text = (UNITS / unit).read_text()
    assert text.count(INSTALLED_EDGE) == 1, f"{unit}: ExecStart is not {INSTALLED_EDGE}"
    edge = shutil.which("edge", path=str(Path(sys.executable).parent))
    assert edge, "no edge command next to this Python"
    out = tmp_path / name
    out.write_text(text.replace(INSTALLED_EDGE, edge))
    return out


@pytest.mark.parametrize(("unit", "name"), [
    ("store-edge.service", "store-edge.service"),
    ("store-edge-ui@.service", "store-edge-ui@tty1.service")])
def test_units_verify(tmp_path: Path, unit: str, name: str) -> None:
    """GIVEN a unit as shipped WHEN systemd-analyze verify reads it
    THEN it exits 0 and prints nothing (no unknown key, bad value or missing binary)."""
    path = as_built(tmp_path, unit, name)
    done = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and not done.stdout.strip() and not done.stderr.strip(), \
        done.stdout + done.stderr


def test_daemon_unit_says_what_the_box_needs() -> None:
    """GIVEN store-edge.service WHEN read
    THEN it is Type=notify with a watchdog, restarts on failure within start limits but
    not on a bad config (exit 2), runs as store-edge in dialout, lp and video (the devices)
    and store-edge-api (the local API socket's group), and has its state, runtime and
    configuration directories."""
    s = settings("store-edge.service")
    assert s["Type"] == ["notify"] and s["WatchdogSec"] and s["NotifyAccess"] == ["main"]
    assert s["Restart"] == ["on-failure"] and s["RestartPreventExitStatus"] == ["2"]
    assert s["StartLimitIntervalSec"] and s["StartLimitBurst"]
    assert s["User"] == ["store-edge"]
    assert set(s["SupplementaryGroups"][0].split()) == {"dialout", "lp", "video",
                                                        "store-edge-api"}
    for key in ("StateDirectory", "RuntimeDirectory", "ConfigurationDirectory"):
        assert s[key] == ["store-edge"], key


def test_ui_unit_owns_the_console_and_comes_back() -> None:
    """GIVEN store-edge-ui@.service WHEN read
    THEN it runs the cashier UI on the console named by its instance, always restarts with
    no start limit, and replaces the login prompt there."""
    s = settings("store-edge-ui@.service")
    assert s["TTYPath"] == ["/dev/%I"] and s["StandardInput"] == ["tty"]
    assert s["Restart"] == ["always"] and s["StartLimitIntervalSec"] == ["0"]
    assert s["Conflicts"] == ["getty@%i.service"]
    assert " ui " in s["ExecStart"][0]


@pytest.mark.parametrize("unit", sorted(MAX_EXPOSURE))
def test_exposure_score_stays_low(unit: str) -> None:
    """GIVEN a unit WHEN systemd-analyze security scores it offline
    THEN its overall exposure is at most the recorded figure."""
    done = subprocess.run(["systemd-analyze", "security", "--offline=true", str(UNITS / unit)],
                          capture_output=True, text=True, timeout=60)
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", done.stdout)
    assert found, done.stdout + done.stderr
    assert float(found.group(1)) <= MAX_EXPOSURE[unit]


def test_journald_limits() -> None:
    """GIVEN the journald drop-in WHEN read THEN the journal is persistent, rotated by
    size and age, and keeps free space for the ledger."""
    text = (UNITS / "journald.conf.d" / "store-edge.conf").read_text()
    keys = dict(line.split("=", 1) for line in text.splitlines()
                if "=" in line and not line.startswith("#"))
    assert keys["Storage"] == "persistent"
    for key in ("SystemMaxUse", "SystemMaxFileSize", "SystemKeepFree", "MaxRetentionSec"):
        assert keys[key], key


@pytest.mark.parametrize("journal", [True, False])
def test_log_lines_carry_journald_priorities(tmp_path: Path, journal: bool) -> None:
    """GIVEN the daemon's logging with stdout a file that is (or is not) the stream
    $JOURNAL_STREAM names WHEN it logs an error and an info line
    THEN each is one line, prefixed <3> and <6> for journald, or plain otherwise."""
    out = tmp_path / "log"
    out.touch()
    st = out.stat()
    env = {**os.environ, "PYTHONPATH": str(ROOT),
           "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}" if journal else "0:0"}
    code = ("import logging; from edged.daemon import setup_logging; setup_logging();"
            "log = logging.getLogger('edge.test'); log.error('disk\\nfull'); log.info('fine')")
    with out.open("w") as f:
        subprocess.run([sys.executable, "-c", code], stdout=f, env=env, check=True, timeout=60)
    lines = out.read_text().splitlines()
    prefix = ("<3>", "<6>") if journal else ("", "")
    assert lines == [f"{prefix[0]}ERROR edge.test: disk | full", f"{prefix[1]}INFO edge.test: fine"]
