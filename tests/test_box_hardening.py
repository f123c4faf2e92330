"""On the box (issue 11, attack 10): private state, the socket apart, voids limited per shift.

The systemd units as shipped, `edge init` as a real process, the real daemon's local API
with a socket in its own runtime folder and a group, and the per-shift void limit through
the local API and the cashier UI (stand-in daemon with the real Counter).
"""

from __future__ import annotations

import grp
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from edge.ledger import Ledger
from edge.storeconfig import parse_config
from edged.localapi import ApiError, ErrorCode
from provisioning.dev import issue_coupons
from tests.daemon_fixtures import make_home, running
from tests.standin import StandIn
from tests.sync_fixtures import IDENTITY, config_body
from tests.test_sync_service import HQ1
from tests.uihelp import WatchedApp, connected, type_code, until
from ui.void import VoidPane

if TYPE_CHECKING:
    from tests.ui_store import Store

pytest_plugins = ["tests.ui_fixtures"]  # store, standin
ROOT = Path(__file__).resolve().parent.parent


def _unit(name: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in (ROOT / "systemd" / name).read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def test_units_keep_state_private_and_the_socket_apart() -> None:
    """GIVEN the shipped units THEN the daemon's state directory is 0700 under UMask 0077, the
    API socket is in its own runtime directory with the store-edge-api group, the broker
    password comes as a systemd credential, no secret is on a command line, and the cashier
    UI is in the API group only (not the daemon's group, which would open the state)."""
    daemon, ui = _unit("store-edge.service"), _unit("store-edge-ui@.service")
    assert daemon["UMask"] == ["0077"] and daemon["StateDirectoryMode"] == ["0700"]
    assert daemon["RuntimeDirectory"] == ["store-edge"]
    exec_start = daemon["ExecStart"][0]
    assert "--socket /run/store-edge/api.sock" in exec_start
    assert "--group store-edge-api" in exec_start
    assert "store-edge-api" in daemon["SupplementaryGroups"][0]
    assert daemon["LoadCredential"] == ["mqtt-password"]
    assert ui["SupplementaryGroups"] == ["store-edge-api"]
    assert "--socket /run/store-edge/api.sock" in ui["ExecStart"][0]
    assert "--home" not in ui["ExecStart"][0]  # the UI needs nothing from the state dir
    for cmd in (exec_start, ui["ExecStart"][0]):
        assert "password" not in cmd and "://" not in cmd


def test_edge_init_makes_a_private_home_whatever_the_umask(tmp_path: Path) -> None:
    """GIVEN a permissive umask (022) WHEN `edge init` runs as a process THEN the home is 0700
    and edge.toml and the device key are 0600."""
    home = tmp_path / "box"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        ["sh", "-c", 'umask 022 && exec "$0" -m cli.edge --home "$1" init --store BJ001 '
         '--device BJ001-T1', sys.executable, str(home)],
        env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "edge.toml").stat().st_mode) == 0o600
    assert stat.S_IMODE((home / "device.key").stat().st_mode) == 0o600


async def test_socket_in_its_own_runtime_folder_with_the_api_group(tmp_path: Path) -> None:
    """GIVEN the daemon told to put its socket in a runtime folder, with a group WHEN it runs
    THEN the socket there is 0660 in that group, and the home stays unreachable to others."""
    home = make_home(tmp_path)
    runtime = tmp_path / "run-store-edge"
    runtime.mkdir(mode=0o711)
    group = grp.getgrgid(os.getgid()).gr_name
    over = {"api": {"socket": str(runtime / "api.sock"), "group": group}}
    async with running(home, overrides=over) as r:
        st = os.stat(runtime / "api.sock")
        answer = await r.client.request("status")
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
    assert st.st_gid == os.getgid() and answer["store_id"] == "BJ001"
    assert stat.S_IMODE(home.stat().st_mode) & 0o077 == 0


async def test_voids_are_limited_per_shift_through_the_local_api(tmp_path: Path) -> None:
    """GIVEN the demo store (default limit: 5 voids per 8 hours per box) and 6 coupons
    redeemed WHEN each is voided through the local API THEN 5 are voided and the sixth is
    refused with `shift_limit`, recorded as a void_refused event like every refusal."""
    home = make_home(tmp_path)
    coupons = issue_coupons(home, 6, prefix="VOID")
    async with running(home) as r:
        decided = [await r.client.request("scan", code=c, till="T1") for c in coupons]
        for v in decided[:5]:
            await r.client.request("void", decision_id=v["decision_id"], reason="mistake",
                                   till="T1")
        try:
            await r.client.request("void", decision_id=decided[5]["decision_id"],
                                   reason="mistake", till="T1")
            raise AssertionError("the sixth void went through")
        except ApiError as exc:
            refused = exc
        recent = (await r.client.request("recent", limit=10))["decisions"]
    assert refused.code == ErrorCode.REFUSED and "shift_limit" in str(refused)
    assert sum(d["voided_at"] is not None for d in recent) == 5


def test_hq_config_sets_the_limit() -> None:
    """GIVEN a config body WHEN it names void_shift_limit THEN the box reads it (0-1000), and
    a body without it takes the default (and to_body leaves the default out)."""
    cfg = parse_config(config_body(HQ1, void_shift_limit=2), IDENTITY, 0.0)
    assert cfg.void_shift_limit == 2 and cfg.to_body()["void_shift_limit"] == 2
    default = parse_config(config_body(HQ1), IDENTITY, 0.0)
    assert default.void_shift_limit == 5 and "void_shift_limit" not in default.to_body()


async def test_the_cashier_sees_the_shift_limit(store: Store, standin: StandIn) -> None:
    """GIVEN the stand-in store with a limit of 1 void per shift and two coupons redeemed
    WHEN the cashier voids both from the void pane THEN the second is refused and the pane
    says why (shift_limit)."""
    ledger = Ledger(store.home / "ledger.sqlite")  # the stand-in's ledger, from this thread
    try:
        with ledger.immediate() as conn:
            ledger.put_setting(conn, "void_shift_limit", 1)
    finally:
        ledger.close()
    app = WatchedApp(standin.path)
    async with app.run_test(size=(100, 30)) as pilot:
        await connected(pilot, app)
        await type_code(pilot, store.coffee)
        await type_code(pilot, store.ninety_five)
        await until(pilot, lambda: len(app.scan_pane.history) == 2, "two verdicts")
        pane = app.query_one(VoidPane)
        ids = [v.verdict.decision_id for v in app.scan_pane.history]
        assert await pane.void(int(ids[0] or 0), "mistake")
        assert not await pane.void(int(ids[1] or 0), "mistake")
        shown = pane.message.plain if pane.message is not None else ""
        assert shown.startswith("不能撤销：") and "shift_limit" in shown
