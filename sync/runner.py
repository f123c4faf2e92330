"""``edge sync``: run just the sync service for a box home, in the foreground.

For demos, tests and field checks before (or besides) the daemon: it prints each state
change, and with ``--until-drained`` exits once the box is online with nothing left to send
(the broker acknowledged every event), with ``--until-confirmed`` once HQ has also confirmed
every event it committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import json
import logging
import signal
import sys
import time
from dataclasses import asdict
from typing import Any

from edge.box import load_device_key
from edge.config import BoxConfig
from edge.rules import Identity
from sync.service import SyncService, SyncState
from sync.settings import MqttSettings

EXIT_OK, EXIT_TIMEOUT = 0, 1
# How long `edge sync` may take to stop (its connection, its ledger threads, asyncio's
# executor) before it gives up on itself: once, on a loaded CI machine, `edge sync
# --until-drained --timeout 1` against a closed port was still running 60 s later (not
# reproduced in 100 runs here, loaded or not); the stacks faulthandler writes then say where.
STOP_GRACE_S = 10.0


def settings_for(cfg: BoxConfig, **overrides: Any) -> MqttSettings:
    """The box's ``[mqtt]`` settings with command-line overrides (``None`` values ignored).

    Raises:
        SettingsError: the ``[mqtt]`` table is wrong.
    """
    settings = MqttSettings.from_mapping(cfg.raw.get("mqtt", {}), cfg.home)
    changes = {k: v for k, v in overrides.items() if v is not None}
    return settings.with_(**changes) if changes else settings


def _line(state: SyncState, as_json: bool) -> str:
    if as_json:
        return json.dumps(asdict(state), ensure_ascii=False)
    when = time.strftime("%H:%M:%S")
    return (f"{when} {'online ' if state.online else 'OFFLINE'} backlog={state.backlog} "
            f"unconfirmed={state.unconfirmed} "
            f"config=v{state.config_version}{' ALARM' if state.alarm else ''}"
            f"{' - ' + state.detail if state.detail else ''}")


async def run_sync(cfg: BoxConfig, settings: MqttSettings, until_drained: bool = False,
                   timeout: float | None = None, as_json: bool = False,
                   until_confirmed: bool = False, stop_grace_s: float | None = None) -> int:
    """Run the sync service until a signal, or until drained (or confirmed) / timed out.

    With ``stop_grace_s`` (the command, not a caller in a bigger process) stopping gets that
    long before faulthandler dumps every thread's stack and exits the process with 1.

    Returns ``EXIT_OK`` (stopped, or drained) or ``EXIT_TIMEOUT`` (not drained in time).
    """
    drained = asyncio.Event()

    def on_state(state: SyncState) -> None:
        print(_line(state, as_json), flush=True)
        if (until_drained or until_confirmed) and state.online and state.backlog == 0 and (
                not until_confirmed or state.unconfirmed == 0):
            drained.set()

    service = SyncService(cfg.path(cfg.ledger_path), Identity(cfg.store_id, cfg.device_id),
                          settings, on_state, device_key=load_device_key(cfg))
    task = asyncio.create_task(service.run(), name="sync")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(drained.wait()), task]
    timed_out = False
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        timed_out = (until_drained or until_confirmed) and not drained.is_set() and \
            not stop.is_set()
        if timed_out:  # said before stopping, which the watchdog below may cut short
            print(f"not drained within {timeout} s: {_line(service.state, False)}",
                  file=sys.stderr, flush=True)
    finally:
        if stop_grace_s is not None:  # main() disarms it once asyncio.run has returned
            faulthandler.dump_traceback_later(stop_grace_s, exit=True, file=2)  # fd 2
        for w in waits:
            w.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return EXIT_TIMEOUT if timed_out else EXIT_OK


def main(cfg: BoxConfig, host: str | None, port: int | None, root: str | None,
         until_drained: bool, timeout: float | None, as_json: bool, verbose: bool,
         until_confirmed: bool = False, stop_grace_s: float | None = None) -> int:
    """The ``edge sync`` command body.

    ``stop_grace_s``: when this is the whole process, how long stopping may take before
    faulthandler dumps every thread's stack and exits it (``STOP_GRACE_S``); None: no limit.

    Raises:
        SettingsError: the ``[mqtt]`` table is wrong.
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = settings_for(cfg, host=host, port=port, root=root)
    try:
        return asyncio.run(run_sync(cfg, settings, until_drained, timeout, as_json,
                                    until_confirmed, stop_grace_s))
    finally:
        if stop_grace_s is not None:  # ours to disarm (not a test runner's own watchdog)
            faulthandler.cancel_dump_traceback_later()
