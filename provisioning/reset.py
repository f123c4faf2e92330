"""``edge provision --factory-reset``: the box forgets its store, keys and ledger.

Refused unless the installer typed the store id, the daemon is not using the ledger, and
every event is at HQ (sent and confirmed) or ``--discard-unsent`` says they may be lost
(the count is told first). What goes: the device key, the ledger, the print queue, the
broker password, HQ's CA, the enrolment record and ``edge.toml`` (last, so a reset cut
short is run again). The home folder itself stays (systemd's ``StateDirectory``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from edge import config as box_config
from edge.ledger import Ledger

# In the order they go: edge.toml last, so a reset cut short still knows the store.
WIPED: Final = ("enrolled.json", "mqtt-password", "mqtt-password.tmp", "device.key",
                "ledger.sqlite", "ledger.sqlite-wal", "ledger.sqlite-shm", "ledger.reserve",
                "printq.sqlite", "printq.sqlite-wal", "printq.sqlite-shm", "hq-ca.pem",
                box_config.CONFIG_NAME)


class ResetRefused(Exception):
    """The reset did not happen; ``code`` says why (``confirm``, ``in_use``, ``unsent``...)."""

    def __init__(self, code: str, message: str, unsent: int = 0) -> None:
        """Carry the reason code, the words and the count of events not at HQ."""
        super().__init__(message)
        self.code = code
        self.unsent = unsent


@dataclass(frozen=True, slots=True)
class BoxState:
    """What a reset would wipe: whose box, and how many events are not at HQ yet."""

    store: str
    device: str
    unsent: int  # not yet acknowledged by the broker
    unconfirmed: int  # acknowledged by the broker, not yet confirmed by HQ

    @property
    def at_risk(self) -> int:
        """Events a reset would lose: HQ has not confirmed them."""
        return self.unsent + self.unconfirmed


def inspect(home: Path) -> BoxState:
    """The box at ``home`` and its events not at HQ.

    Raises:
        ResetRefused: ``not_a_box`` (no ``edge.toml``) or ``in_use`` (a process has the
            ledger open: the daemon).
    """
    if not (home / box_config.CONFIG_NAME).is_file():
        raise ResetRefused("not_a_box", f"{home} holds no box (no {box_config.CONFIG_NAME})")
    cfg = box_config.load(home)
    ledger_path = home / "ledger.sqlite"
    users = _processes_using(ledger_path)
    if users:
        raise ResetRefused("in_use", f"process {users[0]} has {ledger_path} open: stop the "
                                     "daemon first (systemctl stop store-edge)")
    if not ledger_path.exists():
        return BoxState(cfg.store_id, cfg.device_id, 0, 0)
    ledger = Ledger(ledger_path)
    try:
        return BoxState(cfg.store_id, cfg.device_id, ledger.backlog(), ledger.unconfirmed())
    finally:
        ledger.close()


def factory_reset(home: Path, typed: str, discard_unsent: bool) -> tuple[BoxState, list[str]]:
    """Wipe the box at ``home`` once ``typed`` is its store id; what it was and what went.

    Raises:
        ResetRefused: ``confirm`` (``typed`` is not the store id), ``unsent`` (events not at
            HQ and no ``discard_unsent``; :attr:`ResetRefused.unsent` says how many), or
            as :func:`inspect`.
    """
    state = inspect(home)
    if typed.strip() != state.store:
        raise ResetRefused("confirm", f"typed {typed.strip()!r}, not the store id "
                                      f"{state.store}: nothing was wiped")
    if state.at_risk and not discard_unsent:
        raise ResetRefused("unsent", f"{state.at_risk} event(s) are not at HQ yet "
                                     f"({state.unsent} unsent, {state.unconfirmed} "
                                     "unconfirmed): sync first, or --discard-unsent",
                           state.at_risk)
    removed = []
    for name in WIPED:
        try:
            os.unlink(home / name)
        except FileNotFoundError:
            continue
        removed.append(name)
    return state, removed


def _processes_using(path: Path) -> list[int]:
    """Other processes with ``path`` open (those ``/proc`` lets this user see)."""
    target = str(path.resolve())
    found = []
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit() or int(pid_dir.name) == os.getpid():
            continue
        try:
            fds = list((pid_dir / "fd").iterdir())
        except OSError:  # gone, or another user's
            continue
        for fd in fds:
            try:
                if os.readlink(fd).removesuffix(" (deleted)") == target:
                    found.append(int(pid_dir.name))
                    break
            except OSError:
                continue
    return found
