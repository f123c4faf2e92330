"""The device registry as ingest reads it: which device key speaks for which store.

``edge-hq register-device`` writes ``devices.json`` in the HQ home (``keystore``); ingest
believes a box's message only if it is signed by the key registered for that device and
store (``docs/security.md``, "Event authentication"). A running worker sees a device
registered (or re-registered with a new key, or moved to another store) after it started:
the file is read again when it changed, checked at most once per ``recheck_s``, and at
once (:meth:`DeviceRegistry.refresh`, one ``stat``) before a message is refused.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from hq.issuing import keystore

log = logging.getLogger(__name__)

RECHECK_S: Final = 1.0


@dataclass(frozen=True, slots=True)
class RegisteredDevice:
    """A device HQ registered: its store and the public half of its device key."""

    device: str
    store: str
    public_key: bytes


class DeviceRegistry:
    """Registered devices, from an HQ home's ``devices.json`` or given in memory."""

    def __init__(self, home: Path | None = None, recheck_s: float = RECHECK_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """Read ``home``'s registry (``None``: an empty registry filled with :meth:`add`).

        Raises:
            hq.issuing.keystore.KeystoreError: ``devices.json`` is malformed.
        """
        self.home = home
        self.recheck_s = recheck_s
        self._clock = clock
        self._lock = threading.Lock()
        self._devices: dict[str, RegisteredDevice] = {}
        self._stamp: tuple[int, int] | None = None
        self._checked = float("-inf")
        if home is not None:
            self._reload()

    def lookup(self, device: str) -> RegisteredDevice | None:
        """The registered device, or ``None``; re-reads the file if it changed."""
        if self._clock() - self._checked >= self.recheck_s:
            self.refresh()
        return self._devices.get(device)

    def refresh(self) -> bool:
        """Re-read ``devices.json`` if it changed since it was read; whether it had.

        A file that became unreadable or malformed is logged and the registry kept as it
        was (ingest goes on believing the devices it knew).
        """
        if self.home is None:
            return False
        try:
            return self._reload()
        except keystore.KeystoreError as exc:
            log.error("device registry not re-read: %s", exc)
            return False

    def stores(self) -> set[str]:
        """Every store a registered device belongs to."""
        return {d.store for d in self._devices.values()}

    def devices_of(self, store: str) -> list[str]:
        """The registered devices of ``store``, sorted."""
        return sorted(d.device for d in self._devices.values() if d.store == store)

    def add(self, device: str, store: str, public_key: bytes) -> None:
        """Register a device (in the file too, when the registry has a home)."""
        if self.home is not None:
            keystore.register_device(self.home, device, store, public_key)
            self._reload()
        else:
            with self._lock:
                self._devices = {**self._devices,
                                 device: RegisteredDevice(device, store, public_key)}

    def _reload(self) -> bool:
        assert self.home is not None
        with self._lock:
            self._checked = self._clock()
            path = self.home / "devices.json"
            try:
                st = os.stat(path)
                stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
            except FileNotFoundError:
                stamp = None
            if stamp == self._stamp and self._devices:
                return False
            devices = {}
            for device, rec in keystore.load_devices(self.home).items():
                try:
                    devices[device] = RegisteredDevice(device, str(rec["store"]),
                                                       bytes.fromhex(rec["public_key"]))
                except (KeyError, TypeError, ValueError) as exc:
                    raise keystore.KeystoreError(f"devices.json: device {device!r}: {exc}"
                                                 ) from None
            self._devices, self._stamp = devices, stamp
            return True
