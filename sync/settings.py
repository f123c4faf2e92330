"""How a box reaches its broker: the ``[mqtt]`` section of ``edge.toml``, parsed strictly.

What HQ decides (batch size, linger, outbox limits) is not here but in the pushed config
(``edge.storeconfig.SyncPolicy``); this is what the installer decides per device: where the
broker is, how to authenticate, and the session the broker keeps for the box.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Final

from edge.credentials import SecretError, credential, read_secret
from sync.contract import DEFAULT_ROOT

DEFAULT_SESSION_EXPIRY_S: Final = 7 * 86400  # how long the broker queues data for a box that is off
PASSWORD_ENV: Final = "EDGE_MQTT_PASSWORD"
PASSWORD_CREDENTIAL: Final = "mqtt-password"  # systemd: LoadCredential=mqtt-password:PATH


class SyncError(Exception):
    """Base of every ``sync`` error."""


class SettingsError(SyncError, ValueError):
    """The ``[mqtt]`` settings are wrong; the message names the key."""


@dataclass(frozen=True, slots=True)
class MqttSettings:
    """Broker address, credentials and session for one device."""

    host: str = "127.0.0.1"
    port: int = 1883
    root: str = DEFAULT_ROOT  # topic root; the contract's topics hang under it
    client_id: str = ""  # default: se-{store}-{device}, stable so the broker keeps the session
    username: str | None = None
    # Never printed (repr=False). Better than here: password_file, a systemd credential
    # named PASSWORD_CREDENTIAL, or EDGE_MQTT_PASSWORD (see resolve order in from_mapping).
    password: str | None = field(default=None, repr=False)
    password_file: Path | None = None
    tls: bool = False
    ca_file: Path | None = None  # CA bundle for the broker's certificate (TLS)
    cert_file: Path | None = None  # client certificate (per device), with key_file
    key_file: Path | None = None
    keepalive_s: int = 30
    session_expiry_s: int = DEFAULT_SESSION_EXPIRY_S
    connect_timeout_s: float = 10.0
    backoff_min_s: float = 0.5
    backoff_max_s: float = 60.0
    max_inflight: int = 20  # event batches published and not yet acknowledged
    compress: bool = True  # zlib event batches over 1 kB (10x fewer bytes, some CPU)
    # Sent events HQ has not confirmed after this long are sent again (then after twice as
    # long, up to an hour, while HQ stays silent): the broker may lose what it acknowledged.
    resend_after_s: float = 120.0

    def with_(self, **changes: Any) -> MqttSettings:
        """A copy with some fields changed."""
        return replace(self, **changes)

    @classmethod
    def from_mapping(cls, section: Any, home: Path | None = None,
                     environ: Mapping[str, str] | None = None) -> MqttSettings:
        """Settings from the ``[mqtt]`` table; relative file paths resolve against ``home``.

        The password, first found: ``EDGE_MQTT_PASSWORD`` in ``environ`` (default
        ``os.environ``), ``password_file``, the systemd credential ``mqtt-password``,
        ``password``.

        Raises:
            SettingsError: unknown key, wrong type, a missing certificate or password file,
                a client certificate without its key, or both ``password`` and
                ``password_file``.
        """
        if not isinstance(section, dict):
            raise SettingsError("[mqtt] must be a table")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(section) - set(known))
        if unknown:
            raise SettingsError(f"[mqtt]: unknown key(s) {unknown}; known: {sorted(known)}")
        values: dict[str, Any] = {}
        defaults = cls()
        for name, value in section.items():
            default = getattr(defaults, name)
            if name.endswith("_file"):
                if not isinstance(value, str):
                    raise SettingsError(f"mqtt.{name} must be a path string")
                path = Path(value)
                path = path if path.is_absolute() or home is None else home / path
                if not path.is_file():
                    raise SettingsError(f"mqtt.{name}: {path} does not exist")
                values[name] = path
            elif isinstance(default, bool):
                if not isinstance(value, bool):
                    raise SettingsError(f"mqtt.{name} must be true or false")
                values[name] = value
            elif isinstance(default, (int, float)):
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                    raise SettingsError(f"mqtt.{name} must be a non-negative number")
                values[name] = type(default)(value)
            elif not isinstance(value, str):
                raise SettingsError(f"mqtt.{name} must be a string")
            else:
                values[name] = value
        settings = cls(**values)
        if settings.password is not None and settings.password_file is not None:
            raise SettingsError("give mqtt.password or mqtt.password_file, not both")
        try:
            settings = settings.with_(password=_password(settings, environ))
        except SecretError as exc:
            raise SettingsError(str(exc)) from None
        if (settings.cert_file is None) != (settings.key_file is None):
            raise SettingsError("mqtt.cert_file and mqtt.key_file go together")
        if settings.cert_file and not settings.tls:
            raise SettingsError("a client certificate needs mqtt.tls = true")
        if not 1 <= settings.port <= 65535:
            raise SettingsError(f"mqtt.port {settings.port} is not a TCP port")
        if not settings.root or any(c in settings.root for c in "#+") or \
                settings.root.startswith("$"):
            raise SettingsError(f"mqtt.root {settings.root!r} must be a plain topic prefix")
        if settings.max_inflight < 1:
            raise SettingsError("mqtt.max_inflight must be at least 1")
        if settings.resend_after_s < 1:
            raise SettingsError("mqtt.resend_after_s must be at least 1 second")
        return settings

    def client_id_for(self, store_id: str, device_id: str) -> str:
        """The MQTT client id: stable per device, so its session survives reconnects."""
        return self.client_id or f"se-{store_id}-{device_id}"


def _password(settings: MqttSettings, environ: Mapping[str, str] | None) -> str | None:
    env = os.environ if environ is None else environ
    if env.get(PASSWORD_ENV):
        return env[PASSWORD_ENV]
    if settings.password_file is not None:
        return read_secret(settings.password_file, "mqtt.password_file")
    return credential(PASSWORD_CREDENTIAL, env) or settings.password
