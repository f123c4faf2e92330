"""sync: the box's MQTT link to HQ (events up; config, orders and remote uses down).

The daemon needs only what ``__all__`` lists; ``docs/mqtt.md`` is the contract. Imported
lazily, so importing ``sync.contract`` never pulls in paho or the service.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["MqttSettings", "SettingsError", "SyncError", "SyncService", "SyncState",
           "settings_for"]

_HOME = {"MqttSettings": "sync.settings", "SettingsError": "sync.settings",
         "SyncError": "sync.settings", "SyncService": "sync.service",
         "SyncState": "sync.service", "settings_for": "sync.runner"}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name]), name)
    raise AttributeError(f"module 'sync' has no attribute {name!r}")
