"""The daemon's sections of ``edge.toml``: ``[api]``, ``[scanner]``, ``[camera]``, ``[printer]``.

Parsed strictly from :attr:`edge.config.BoxConfig.raw`, then overridden by ``edge run``'s
flags. Every error names the key it is about (``scanner.baud must be ...``) so the daemon can
print one line and exit 2. ``[sync]`` is left to the sync part, which reads it itself.

An empty ``port`` / ``source`` / ``url`` means the part is absent: the daemon runs without it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edge.config import BoxConfig, ConfigError

DEFAULT_SOCKET = "run/edge.sock"
BAUDS = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400)


class Framing(enum.StrEnum):
    """How a serial scanner's bytes are cut into scans."""

    LINE = "line"  # CR, LF or CRLF ends a scan
    IDLE = "idle"  # a gap of ``idle_ms`` with no bytes ends a scan


class Paper(enum.IntEnum):
    """Receipt paper width in millimetres."""

    MM58 = 58
    MM80 = 80


class Encoding(enum.StrEnum):
    """How the printer is sent non-ASCII text."""

    GB18030 = "gb18030"
    GBK = "gbk"
    BIG5 = "big5"
    UTF8 = "utf-8"
    IMAGE = "image"  # rendered with a CJK font and sent as a raster image


@dataclass(frozen=True, slots=True)
class ApiConfig:
    """Where the local API listens, and which group may use it."""

    socket: Path = Path(DEFAULT_SOCKET)
    group: str = ""  # empty: the daemon's own group


@dataclass(frozen=True, slots=True)
class ScannerConfig:
    """A serial (USB-CDC / RS-232) barcode scanner."""

    port: str = ""  # empty: no serial scanner
    baud: int = 9600
    framing: Framing = Framing.LINE
    idle_ms: int = 50
    prefix: str = ""
    suffix: str = ""
    strip_aim: bool = True  # drop a leading AIM symbology identifier (]Q1, ]E0, ...)
    max_line: int = 4096
    till: str = ""  # the till label recorded with this scanner's decisions

    @property
    def enabled(self) -> bool:
        """Whether a scanner is configured."""
        return bool(self.port)


@dataclass(frozen=True, slots=True)
class CameraConfig:
    """A camera decoding codes in view."""

    source: str = ""  # index ("0"), device path or stream URL; empty: no camera
    holdoff_s: float = 2.0  # the same code is not decoded again within this time
    decoder: str = "zxing"
    fps: int = 15
    till: str = ""

    @property
    def enabled(self) -> bool:
        """Whether a camera is configured."""
        return bool(self.source)


@dataclass(frozen=True, slots=True)
class PrinterConfig:
    """A receipt printer and what it prints without being asked."""

    url: str = ""  # usb://VID:PID, serial:///dev/ttyUSB0, tcp://host:9100, file:PATH; empty: none
    paper: Paper = Paper.MM58
    encoding: Encoding = Encoding.GB18030
    native_qr: bool = True
    redemption_slip: bool = False  # print a slip after each accepted redemption
    card_after_sale: bool = False  # print a packaging card after each sale signal

    @property
    def enabled(self) -> bool:
        """Whether a printer is configured."""
        return bool(self.url)


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    """Everything the daemon wires, on top of the box's identity."""

    box: BoxConfig
    api: ApiConfig = field(default_factory=ApiConfig)
    scanner: ScannerConfig = field(default_factory=ScannerConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    printer: PrinterConfig = field(default_factory=PrinterConfig)
    simulate: bool = False

    @property
    def socket_path(self) -> Path:
        """The API socket, resolved against the home."""
        return self.box.path(self.api.socket)

    @property
    def run_dir(self) -> Path:
        """Where runtime files (socket, simulated devices) live."""
        return self.box.home / "run"


def load(box: BoxConfig, overrides: dict[str, dict[str, Any]] | None = None,
         simulate: bool = False) -> DaemonConfig:
    """The daemon config from the box's ``edge.toml``, with flag ``overrides`` per section.

    ``overrides`` maps a section name to ``{key: value}``; ``None`` values are ignored, so
    unset flags leave the file's values alone.

    Raises:
        ConfigError: a section is not a table, a key is unknown, or a value has the wrong type
            or range; the message names ``section.key``.
    """
    merged: dict[str, dict[str, Any]] = {}
    for name in ("api", "scanner", "camera", "printer"):
        section = box.raw.get(name, {})
        if not isinstance(section, dict):
            raise ConfigError(f"[{name}] must be a table")
        merged[name] = dict(section)
        for key, value in (overrides or {}).get(name, {}).items():
            if value is not None:
                merged[name][key] = value
    cfg = DaemonConfig(
        box=box,
        api=_build(ApiConfig, "api", merged["api"]),
        scanner=_build(ScannerConfig, "scanner", merged["scanner"]),
        camera=_build(CameraConfig, "camera", merged["camera"]),
        printer=_build(PrinterConfig, "printer", merged["printer"]),
        simulate=simulate,
    )
    _check(cfg)
    return cfg


def with_scanner_port(cfg: DaemonConfig, port: str) -> DaemonConfig:
    """``cfg`` with the scanner moved to ``port`` (the simulated pty)."""
    return replace(cfg, scanner=replace(cfg.scanner, port=port))


def with_printer_url(cfg: DaemonConfig, url: str) -> DaemonConfig:
    """``cfg`` with the printer at ``url`` (the simulated file printer)."""
    return replace(cfg, printer=replace(cfg.printer, url=url))


_CONVERTERS: dict[str, Any] = {
    "framing": Framing, "paper": Paper, "encoding": Encoding, "socket": Path,
}


def _build(cls: Any, section: str, values: dict[str, Any]) -> Any:
    defaults = cls()
    known = set(cls.__dataclass_fields__)
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        where = f"{section}.{key}"
        if key not in known:
            raise ConfigError(f"{where} is not a known setting (known: {', '.join(sorted(known))})")
        default = getattr(defaults, key)
        kwargs[key] = _convert(where, key, value, default)
    return cls(**kwargs)


def _convert(where: str, key: str, value: Any, default: Any) -> Any:
    if key in _CONVERTERS:
        conv = _CONVERTERS[key]
        try:
            if conv is Path:
                if not isinstance(value, str | Path) or not str(value):
                    raise ValueError("a non-empty path")
                return Path(value)
            return conv(value)
        except ValueError:
            members: list[Any] = list(conv) if isinstance(conv, enum.EnumMeta) else []
            choices = ", ".join(str(m.value) for m in members) or "a path"
            raise ConfigError(f"{where} = {value!r} must be one of: {choices}") from None
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, not {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, not {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where} must be a number, not {value!r}")
        return float(value)
    if isinstance(value, int) and not isinstance(value, bool) and key == "source":
        return str(value)  # camera index given as a number
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a string, not {value!r}")
    return value


def _check(cfg: DaemonConfig) -> None:
    s, c = cfg.scanner, cfg.camera
    if s.baud not in BAUDS:
        raise ConfigError(f"scanner.baud = {s.baud} must be one of {BAUDS}")
    if not 1 <= s.idle_ms <= 2000:
        raise ConfigError(f"scanner.idle_ms = {s.idle_ms} must be 1-2000")
    if not 16 <= s.max_line <= 1 << 20:
        raise ConfigError(f"scanner.max_line = {s.max_line} must be 16-1048576")
    if not 0 <= c.holdoff_s <= 3600:
        raise ConfigError(f"camera.holdoff_s = {c.holdoff_s} must be 0-3600")
    if not 1 <= c.fps <= 60:
        raise ConfigError(f"camera.fps = {c.fps} must be 1-60")
    if c.decoder not in ("zxing", "pyzbar"):
        raise ConfigError(f"camera.decoder = {c.decoder!r} must be zxing or pyzbar")
