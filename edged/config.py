"""The daemon's sections of ``edge.toml``, and which parts they switch on.

* ``[api]`` (``socket``, ``group``) and ``[daemon]`` (``till``) are the daemon's own, checked
  here.
* ``[scanner]``, ``[camera]`` and the device keys of ``[printer]`` belong to the drivers
  (``SerialScannerConfig``, ``CameraConfig``, ``PrinterProfile`` and the printer URL); this
  module only merges flag overrides into those tables and says which parts are configured.
  :mod:`edged.devices` has the drivers check them, so every key has one owner.
* ``[sync]`` is read by the sync part.

A part is absent when its table does not name a device: no ``scanner.port``, no ``[camera]``
table (a camera is never assumed), no ``printer.url``. Every error names ``section.key`` so
the daemon prints one line and exits 2.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edge.config import BoxConfig, ConfigError

DEFAULT_SOCKET = "run/edge.sock"
SIMULATED_PRINTER = "simulate:"  # drivers.printer: a file printer under the home
DAEMON_PRINTER_KEYS = ("redemption_slip", "card_after_sale")


@dataclass(frozen=True, slots=True)
class ApiConfig:
    """Where the local API listens, and which group may use it."""

    socket: Path = Path(DEFAULT_SOCKET)
    group: str = ""  # empty: the daemon's own group


@dataclass(frozen=True, slots=True)
class PrintPolicy:
    """What the daemon prints without being asked (the ``[printer]`` keys it owns)."""

    redemption_slip: bool = False  # a slip after each accepted redemption
    card_after_sale: bool = False  # a packaging card after each ``sale`` signal


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    """Everything the daemon wires, on top of the box's identity."""

    box: BoxConfig
    api: ApiConfig = field(default_factory=ApiConfig)
    till: str = ""  # the till label recorded with device scans (default: the device id)
    scanner: dict[str, Any] = field(default_factory=dict)
    camera: dict[str, Any] = field(default_factory=dict)
    printer: dict[str, Any] = field(default_factory=dict)  # without the policy keys
    policy: PrintPolicy = field(default_factory=PrintPolicy)
    simulate: bool = False

    @property
    def scanner_enabled(self) -> bool:
        """Whether a serial scanner is configured."""
        return bool(self.scanner.get("port"))

    @property
    def camera_enabled(self) -> bool:
        """Whether a camera is configured (a ``[camera]`` table, or ``--camera``)."""
        return bool(self.camera)

    @property
    def printer_url(self) -> str:
        """The printer URL, or "" for none."""
        return str(self.printer.get("url", ""))

    @property
    def socket_path(self) -> Path:
        """The API socket, resolved against the home."""
        return self.box.path(self.api.socket)

    @property
    def run_dir(self) -> Path:
        """Where runtime files (socket, simulated devices) live."""
        return self.box.home / "run"

    @property
    def device_till(self) -> str:
        """The till label for scans from the box's own devices."""
        return self.till or self.box.device_id


def load(box: BoxConfig, overrides: dict[str, dict[str, Any]] | None = None,
         simulate: bool = False) -> DaemonConfig:
    """The daemon config from the box's ``edge.toml``, with flag ``overrides`` per section.

    ``overrides`` maps a section name to ``{key: value}``; ``None`` values are ignored, so
    unset flags leave the file's values alone. ``simulate`` gives a file printer when no
    printer is configured.

    Raises:
        ConfigError: a section is not a table, or an ``[api]``/``[daemon]``/policy key is
            unknown or of the wrong type; the message names ``section.key``.
    """
    tables: dict[str, dict[str, Any]] = {}
    for name in ("api", "daemon", "scanner", "camera", "printer"):
        section = box.raw.get(name, {})
        if not isinstance(section, dict):
            raise ConfigError(f"[{name}] must be a table")
        tables[name] = dict(section)
        for key, value in (overrides or {}).get(name, {}).items():
            if value is not None:
                tables[name][key] = value
    api = tables["api"]
    _known("api", api, ("socket", "group"))
    _known("daemon", tables["daemon"], ("till",))
    socket = _str("api.socket", api.get("socket", DEFAULT_SOCKET))
    if not socket:
        raise ConfigError("api.socket must not be empty")
    printer = tables["printer"]
    policy = PrintPolicy(**{k: _bool(f"printer.{k}", printer.pop(k)) for k in DAEMON_PRINTER_KEYS
                            if k in printer})
    if simulate and not printer.get("url"):
        printer["url"] = SIMULATED_PRINTER
    return DaemonConfig(
        box=box,
        api=ApiConfig(Path(socket), _str("api.group", api.get("group", ""))),
        till=_str("daemon.till", tables["daemon"].get("till", "")),
        scanner=tables["scanner"], camera=tables["camera"], printer=printer, policy=policy,
        simulate=simulate,
    )


def with_scanner_port(cfg: DaemonConfig, port: str) -> DaemonConfig:
    """``cfg`` with the serial scanner at ``port`` (the simulated pty)."""
    return replace(cfg, scanner={**cfg.scanner, "port": port})


def _known(section: str, table: dict[str, Any], keys: tuple[str, ...]) -> None:
    for key in table:
        if key not in keys:
            raise ConfigError(f"{section}.{key} is not a known setting (known: "
                              f"{', '.join(keys)})")


def _str(where: str, value: Any) -> str:
    if isinstance(value, Path):
        return str(value)
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a string, not {value!r}")
    return value


def _bool(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where} must be true or false, not {value!r}")
    return value
