"""HQ keeps mosquitto's accounts: device passwords issued at enrolment, claims, HQ's users.

When ``edge-hq enrol-serve`` registers a box, :meth:`BrokerAccounts.issue` makes the box a
random broker password (username = its device id), keeps only the password's mosquitto
hash in the HQ home (``broker-accounts.json``, 0600), rewrites the broker's password file
and ACL from the device registry (``provisioning.brokerauth``) and sends mosquitto SIGHUP
(it reloads both). ``edge-hq enrol`` rewrites them too, so a new bundle's claim account
(its token) works at once. ``docs/security.md`` ("Broker credentials") explains it.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from hq.issuing import enrolment, keystore
from provisioning import brokerauth
from sync.contract import DEFAULT_ROOT

ACCOUNTS_FILE: Final = "broker-accounts.json"  # in HQ's home: {device: mosquitto hash}
PASSWORD_BYTES: Final = 24  # 192 random bits, 32 URL-safe characters


class BrokerAccountsError(Exception):
    """The broker's files cannot be written, or mosquitto cannot be told to reload."""


def load_hashes(home: Path) -> dict[str, str]:
    """The issued device passwords' hashes kept in ``home``."""
    path = home / ACCOUNTS_FILE
    if not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise BrokerAccountsError(f"{path}: not a JSON object of device -> hash")
    return data


def _save_hashes(home: Path, hashes: Mapping[str, str]) -> None:
    tmp = home / (ACCOUNTS_FILE + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(dict(hashes), f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, home / ACCOUNTS_FILE)


@dataclass(frozen=True, slots=True)
class BrokerAccounts:
    """Where HQ writes mosquitto's files and how it makes mosquitto reload them.

    ``passwords`` are plaintext passwords HQ was given (a ``{user: password}`` JSON file):
    HQ's users and any device registered by hand; issued device passwords are never kept.
    """

    home: Path  # HQ's home: devices.json, enrolments.json, broker-accounts.json
    folder: Path  # where ``passwords`` and ``acl`` go (mosquitto's password_file, acl_file)
    passwords: Mapping[str, str] = field(default_factory=dict, repr=False)
    root: str = DEFAULT_ROOT
    pid_file: Path | None = None  # mosquitto's pid_file: SIGHUP after each rewrite

    def issue(self, store: str, device: str) -> str:
        """A fresh broker password for ``device`` (registered for ``store``), in force.

        Issued again (a repeated enrolment whose reply was lost), it replaces the last one.

        Raises:
            BrokerAccountsError: the files cannot be written or mosquitto not signalled.
        """
        password = secrets.token_urlsafe(PASSWORD_BYTES)
        try:
            hashes = load_hashes(self.home)
            hashes[device] = brokerauth.password_hash(password)
            _save_hashes(self.home, hashes)
        except OSError as exc:
            raise BrokerAccountsError(f"cannot keep {device}'s broker account: {exc}") from None
        self.write()
        return password

    def write(self, now: float | None = None) -> tuple[Path, Path]:
        """Rewrite the password file and ACL from the registry, then reload mosquitto.

        A registered device without an issued or given password is in the ACL but cannot
        log in. Returns the two files' paths.

        Raises:
            BrokerAccountsError: a file cannot be written, or mosquitto not signalled.
        """
        now = time.time() if now is None else now
        try:
            registry = keystore.load_devices(self.home)
            issued = load_hashes(self.home)
            claims = enrolment.claims(self.home, now)
            devices = [brokerauth.DeviceAccount(rec["store"], device, "")
                       for device, rec in sorted(registry.items())]
            hashes = [(d.device, issued[d.device]) for d in devices if d.device in issued]
            hashes += [(d.device, brokerauth.password_hash(self.passwords[d.device]))
                       for d in devices if d.device not in issued and d.device in self.passwords]
            hashes += [(u, brokerauth.password_hash(pw)) for u, pw in sorted(self.passwords.items())
                       if u in brokerauth.HQ_USERS]
            hashes += [(c.user, c.password_hash) for c in claims]
            acl = brokerauth.acl_text(devices, self.root,
                                      [brokerauth.ClaimAccount(c.store, c.user) for c in claims])
            paths = brokerauth.write_texts(self.folder, brokerauth.hashed_password_text(hashes),
                                           acl)
        except (OSError, ValueError, keystore.KeystoreError) as exc:
            raise BrokerAccountsError(f"cannot write the broker's accounts in {self.folder}: "
                                      f"{exc}") from None
        self.reload()
        return paths

    def reload(self) -> None:
        """Send mosquitto SIGHUP (it re-reads password_file and acl_file), if a pid file is set.

        Raises:
            BrokerAccountsError: the pid file is unreadable or the process is gone.
        """
        if self.pid_file is None:
            return
        try:
            os.kill(int(self.pid_file.read_text().strip()), signal.SIGHUP)
        except (OSError, ValueError) as exc:
            raise BrokerAccountsError(f"cannot make the broker reload ({self.pid_file}): "
                                      f"{exc}") from None
