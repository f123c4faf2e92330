"""``edge doctor``: is this box ready to serve the store, and if not, what to do.

Each check looks at one thing (config, device key, clock, disk space, ledger integrity,
printer, scanner, camera, the broker and its TLS, enrolment) and returns a
:class:`Finding`: an outcome, the words for a store manager (``edge.i18n`` keys
``doctor.<check>.<case>``, Chinese by default) and, when something is wrong, the fix
(``...fix``). Nothing here writes: the ledger is opened read-only, devices are probed, not
claimed; when the daemon runs, the devices it holds are judged by its own status instead.
"""

from __future__ import annotations

import asyncio
import enum
import os
import socket
import sqlite3
import ssl
import stat
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from edge import clock, i18n
from edge.config import BoxConfig, ConfigError
from edge.config import load as load_box_config
from edge.keys import SigningKey
from edge.ledger import SCHEMA_VERSION
from edged import localapi
from edged.config import DaemonConfig
from edged.config import load as load_daemon_config
from edged.daemon import sync_settings
from edged.devices import check as check_devices
from edged.storage import free_bytes

DISK_FAIL: Final = 16 * 1024 * 1024  # below this a day of scans may not fit: refuse to pass
DISK_WARN: Final = 128 * 1024 * 1024
PROBE_TIMEOUT_S: Final = 3.0
_SHARED_CASES: Final = frozenset({"not_checked", "daemon_ok", "daemon_failed"})
CHECKS: Final = ("config", "keys", "clock", "disk", "ledger", "printer", "scanner", "camera",
                 "broker", "enrolment")


class Outcome(enum.StrEnum):
    """How a check came out; only ``fail`` makes ``edge doctor`` exit 1."""

    OK = "ok"
    WARN = "warn"  # works, but needs attention soon
    FAIL = "fail"
    SKIP = "skip"  # not configured on this box (no camera...): said, not judged


@dataclass(frozen=True, slots=True)
class Finding:
    """One check's result: ``case`` names its words, ``values`` fill them in."""

    check: str
    outcome: Outcome
    case: str
    values: dict[str, Any] = field(default_factory=dict)
    detail: str = ""  # the technical cause (an exception's text), for support

    @property
    def key(self) -> str:
        """The ``edge.i18n`` key of the words (cases every check shares have one key)."""
        if self.case in _SHARED_CASES:
            return f"doctor.{self.case}"
        return f"doctor.{self.check}.{self.case}"

    def words(self, lang: str = i18n.DEFAULT_LANG) -> str:
        """What a store manager reads."""
        return i18n.t(self.key, lang, **self.values)

    def fix(self, lang: str = i18n.DEFAULT_LANG) -> str:
        """What to do about it ("" when nothing needs doing)."""
        key = self.key + ".fix"
        return i18n.t(key, lang, **self.values) if key in i18n.CATALOGUE else ""

    def to_dict(self, lang: str = i18n.DEFAULT_LANG) -> dict[str, Any]:
        """The JSON form (``edge doctor --json``)."""
        return {"check": self.check, "outcome": self.outcome.value, "case": self.case,
                "message": self.words(lang), "fix": self.fix(lang), "detail": self.detail,
                "values": self.values}


@dataclass
class _Box:
    """What the checks learned so far, for the ones after them."""

    home: Path
    config: BoxConfig | None = None
    daemon: DaemonConfig | None = None
    key_ok: bool = False
    status: dict[str, Any] | None = None  # the running daemon's, if one answers


def run(home: Path, timeout: float = PROBE_TIMEOUT_S) -> list[Finding]:
    """Every check on the box home ``home``, in :data:`CHECKS` order."""
    box = _Box(home)
    findings = [check_config(box)]
    if box.config is None:
        return findings + [Finding(name, Outcome.SKIP, "not_checked") for name in CHECKS[1:]]
    box.status = daemon_status(box.daemon, timeout)
    findings += [check_keys(box), check_clock(box), check_disk(box), check_ledger(box),
                 check_printer(box, timeout), check_scanner(box), check_camera(box),
                 check_broker(box, timeout), check_enrolment(box)]
    return findings


def devices(home: Path, timeout: float = PROBE_TIMEOUT_S) -> list[Finding]:
    """The config, printer, scanner and camera checks only (after ``edge provision``)."""
    box = _Box(home)
    findings = [check_config(box)]
    if box.config is None:
        return findings
    box.status = daemon_status(box.daemon, timeout)
    return [*findings, check_printer(box, timeout), check_scanner(box), check_camera(box)]


def failed(findings: list[Finding]) -> bool:
    """Whether any check failed."""
    return any(f.outcome is Outcome.FAIL for f in findings)


# -- config and keys ------------------------------------------------------------------------

def check_config(box: _Box) -> Finding:
    """``edge.toml`` and every table its owner checks (daemon, drivers, ``[mqtt]``)."""
    path = box.home / "edge.toml"
    if not path.exists():
        return Finding("config", Outcome.FAIL, "missing", {"path": str(path)})
    try:
        cfg = load_box_config(box.home)
        daemon = load_daemon_config(cfg)
        check_devices(daemon)
        sync_settings(daemon)
    except ConfigError as exc:
        return Finding("config", Outcome.FAIL, "bad", {"path": str(path), "problem": str(exc)},
                       str(exc))
    box.config, box.daemon = cfg, daemon
    return Finding("config", Outcome.OK, "ok", {"store": cfg.store_id, "device": cfg.device_id})


def check_keys(box: _Box) -> Finding:
    """The device key: present, private (no group or other bits), a 32-byte seed."""
    assert box.config is not None
    path = box.config.path(box.config.device_key_path)
    values = {"path": str(path)}
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return Finding("keys", Outcome.FAIL, "missing", values)
    except (OSError, UnicodeDecodeError) as exc:
        return Finding("keys", Outcome.FAIL, "unreadable", values, str(exc))
    try:
        seed = bytes.fromhex(text)
    except ValueError as exc:
        return Finding("keys", Outcome.FAIL, "bad", values, str(exc))
    if len(seed) != 32:
        return Finding("keys", Outcome.FAIL, "bad", values, f"{len(seed)} bytes, not 32")
    if stat.S_IMODE(mode) & 0o077:
        return Finding("keys", Outcome.FAIL, "open", {**values,
                                                      "mode": f"{stat.S_IMODE(mode):04o}"})
    box.key_ok = True
    public = SigningKey(box.config.device_id, seed).public_key.hex()
    return Finding("keys", Outcome.OK, "ok", {"public": public[:16]})


# -- the ledger, read-only --------------------------------------------------------------------

def _ledger_path(box: _Box) -> Path:
    assert box.config is not None
    return box.config.path(box.config.ledger_path)


def _read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)


def _setting(conn: sqlite3.Connection, key: str, default: Any) -> Any:
    import json

    row = conn.execute("SELECT value FROM setting WHERE key=?", (key,)).fetchone()
    return json.loads(row[0]) if row else default


def check_ledger(box: _Box) -> Finding:
    """``PRAGMA quick_check`` and the schema version, on a read-only connection."""
    path = _ledger_path(box)
    if not path.exists():
        return Finding("ledger", Outcome.FAIL, "missing", {"path": str(path)})
    try:
        conn = _read_only(path)
        try:
            problems = [r[0] for r in conn.execute("PRAGMA quick_check(5)")]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            decisions = (conn.execute("SELECT COUNT(*) FROM decision").fetchone()[0]
                         if problems == ["ok"] else 0)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return Finding("ledger", Outcome.FAIL, "corrupt", {"path": str(path)}, str(exc))
    if problems != ["ok"]:
        return Finding("ledger", Outcome.FAIL, "corrupt", {"path": str(path)},
                       "; ".join(problems))
    if version > SCHEMA_VERSION:
        return Finding("ledger", Outcome.FAIL, "newer", {"version": version,
                                                         "ours": SCHEMA_VERSION})
    return Finding("ledger", Outcome.OK, "ok", {"decisions": decisions})


def check_clock(box: _Box, wall: Callable[[], float] = time.time,
                synchronised: Callable[[], bool] = clock.kernel_synchronised) -> Finding:
    """The wall clock against the last time the box knew to be right."""
    try:
        conn = _read_only(_ledger_path(box))
        try:
            row = conn.execute("SELECT at FROM trusted_time WHERE id=1").fetchone()
            skew = float(_setting(conn, "clock_skew_s", 120))
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return Finding("clock", Outcome.FAIL, "unknown", {}, str(exc))
    trusted = float(row[0]) if row else 0.0
    now = wall()
    reading = clock.read(now, trusted, skew)
    if trusted > 0 and not reading.trusted:
        return Finding("clock", Outcome.FAIL, "behind",
                       {"behind": _duration(trusted - now), "trusted": i18n.when(trusted)})
    if trusted <= 0 and not synchronised():
        return Finding("clock", Outcome.WARN, "never")
    return Finding("clock", Outcome.OK, "ok", {"skew": _duration(abs(now - trusted))
                                               if trusted else "-",
                                               "ntp": "NTP" if synchronised() else "-"})


def check_disk(box: _Box) -> Finding:
    """Free space where the ledger lives."""
    free = free_bytes(_ledger_path(box).parent)
    values = {"free": _size(free), "path": str(_ledger_path(box).parent)}
    if free < DISK_FAIL:
        return Finding("disk", Outcome.FAIL, "full", values)
    if free < DISK_WARN:
        return Finding("disk", Outcome.WARN, "low", values)
    return Finding("disk", Outcome.OK, "ok", values)


# -- devices ------------------------------------------------------------------------------

def daemon_status(daemon: DaemonConfig | None, timeout: float) -> dict[str, Any] | None:
    """The running daemon's status, or None when none answers on its socket."""
    if daemon is None or not daemon.socket_path.exists():
        return None
    try:
        return asyncio.run(localapi.call(daemon.socket_path, localapi.Op.STATUS, timeout))
    except localapi.ApiError:
        return None


def _from_daemon(box: _Box, part: str) -> Finding | None:
    """A device part judged by the running daemon (which holds the device), if it runs."""
    if box.status is None:
        return None
    p = box.status.get(part) or {}
    state, detail = str(p.get("state", "")), str(p.get("detail", ""))
    if state == "running":
        return Finding(part, Outcome.OK, "daemon_ok", {"detail": detail or "-"})
    if state == "absent":
        return None  # not configured: the probes below say so
    return Finding(part, Outcome.FAIL, "daemon_failed", {"detail": detail or state}, detail)


def check_printer(box: _Box, timeout: float = PROBE_TIMEOUT_S) -> Finding:
    """The printer's own status (paper, cover), from the daemon or asked directly."""
    assert box.daemon is not None
    url = box.daemon.printer_url
    if not url:
        return Finding("printer", Outcome.SKIP, "none")
    found = _from_daemon(box, "printer")
    if found is not None:
        return found
    from drivers.printer import open_printer
    from drivers.printer_transport.base import PrinterError, PrinterState

    try:
        printer = open_printer(url, box.daemon.box.home, absent_after=0)
        printer.transport.timeout = min(printer.transport.timeout, timeout)
        try:
            state = printer.status()
            detail = printer.detail
        finally:
            printer.close()
    except PrinterError as exc:
        return Finding("printer", Outcome.FAIL, "offline", {"url": url, "detail": str(exc)},
                       str(exc))
    if state is PrinterState.READY:
        return Finding("printer", Outcome.OK, "ready", {"url": url})
    if state is PrinterState.UNKNOWN:
        return Finding("printer", Outcome.WARN, "unknown", {"url": url}, detail)
    case = {PrinterState.NO_PAPER: "no_paper", PrinterState.COVER_OPEN: "cover_open",
            PrinterState.OFFLINE: "offline"}.get(state, "error")
    return Finding("printer", Outcome.FAIL, case, {"url": url, "detail": detail or state.value},
                   detail)


def _device_node(part: str, path: Path, values: dict[str, Any]) -> Finding:
    """A device node: there, a character device, and open to this user for read and write."""
    if not path.exists():
        return Finding(part, Outcome.FAIL, "missing", values)
    if not os.access(path, os.R_OK | os.W_OK):
        return Finding(part, Outcome.FAIL, "denied", values)
    return Finding(part, Outcome.OK, "ok", values)


def check_scanner(box: _Box) -> Finding:
    """The serial scanner's port, when one is configured."""
    assert box.daemon is not None
    port = str(box.daemon.scanner.get("port", ""))
    if not port:
        return Finding("scanner", Outcome.SKIP, "none")
    found = _from_daemon(box, "scanner")
    if found is not None:
        return found
    if "://" in port:  # a pyserial URL (socket://, rfc2217://): the driver reports on it
        return Finding("scanner", Outcome.OK, "ok", {"port": port})
    return _device_node("scanner", Path(port), {"port": port})


def check_camera(box: _Box) -> Finding:
    """The camera source, when a ``[camera]`` table is configured."""
    assert box.daemon is not None
    if not box.daemon.camera_enabled:
        return Finding("camera", Outcome.SKIP, "none")
    found = _from_daemon(box, "camera")
    if found is not None:
        return found
    source = box.daemon.camera.get("source", 0)
    if isinstance(source, str) and "://" in source:
        return Finding("camera", Outcome.OK, "ok", {"source": source})
    path = Path(f"/dev/video{source}") if isinstance(source, int) or str(source).isdigit() \
        else box.daemon.box.path(Path(str(source)))
    return _device_node("camera", path, {"source": str(path)})


# -- the broker -----------------------------------------------------------------------------

_CONNACK_AUTH = frozenset({0x86, 0x87, 0x8A})  # credentials, authorisation, banned
_CONNACK_WORDS = {0x85: "client id not valid", 0x86: "bad user name or password",
                  0x87: "not authorized", 0x88: "server unavailable", 0x8A: "banned"}


def _mqtt_string(text: str) -> bytes:
    data = text.encode("utf-8")
    return struct.pack("!H", len(data)) + data


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = n >> 7, n & 0x7F
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def connect_packet(client_id: str, username: str | None, password: str | None) -> bytes:
    """An MQTT 5 CONNECT: clean start, no session kept, 10 s keep-alive."""
    flags = 0x02 | (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    body = _mqtt_string("MQTT") + bytes([5, flags]) + struct.pack("!H", 10) + b"\x00"
    body += _mqtt_string(client_id)
    if username is not None:
        body += _mqtt_string(username)
    if password is not None:
        body += _mqtt_string(password)
    return b"\x10" + _varint(len(body)) + body


def _read_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        data += chunk
    return data


def check_broker(box: _Box, timeout: float = PROBE_TIMEOUT_S) -> Finding:
    """TCP to ``[mqtt]`` host:port, the TLS handshake as sync makes it, then an MQTT CONNECT.

    The probe connects under its own client id (``<client id>-doctor``) with a clean start,
    so the daemon's session at the broker is not taken over.
    """
    assert box.daemon is not None and box.config is not None
    try:
        settings = sync_settings(box.daemon)
    except ConfigError as exc:  # already reported by the config check
        return Finding("broker", Outcome.FAIL, "none", {}, str(exc))
    if settings is None:
        return Finding("broker", Outcome.FAIL, "none")
    where = {"host": settings.host, "port": settings.port, "tls": "TLS" if settings.tls else "-"}
    try:
        raw = socket.create_connection((settings.host, settings.port), timeout=timeout)
    except OSError as exc:
        return Finding("broker", Outcome.FAIL, "unreachable", {**where, "detail": str(exc)},
                       str(exc))
    sock: socket.socket = raw
    try:
        if settings.tls:
            ctx = ssl.create_default_context(cafile=str(settings.ca_file)
                                             if settings.ca_file else None)
            if settings.cert_file and settings.key_file:
                ctx.load_cert_chain(str(settings.cert_file), str(settings.key_file))
            try:
                sock = ctx.wrap_socket(raw, server_hostname=settings.host)
            except (ssl.SSLError, OSError) as exc:
                return Finding("broker", Outcome.FAIL, "tls", {**where, "detail": str(exc)},
                               str(exc))
        client_id = settings.client_id_for(box.config.store_id, box.config.device_id)
        sock.sendall(connect_packet(f"{client_id}-doctor"[:64], settings.username,
                                    settings.password))
        head = _read_exact(sock, 2)
        if head[0] >> 4 != 2:
            raise ConnectionError(f"not a CONNACK (packet type {head[0] >> 4})")
        rest = _read_exact(sock, head[1])
        reason = rest[1] if len(rest) > 1 else 0
        if reason:
            words = _CONNACK_WORDS.get(reason, "refused")
            case = "refused_auth" if reason in _CONNACK_AUTH else "refused"
            return Finding("broker", Outcome.FAIL, case, {**where, "code": f"0x{reason:02x}"},
                           f"CONNACK 0x{reason:02x}: {words}")
        sock.sendall(b"\xe0\x00")  # DISCONNECT, normal
    except (OSError, ConnectionError) as exc:
        return Finding("broker", Outcome.FAIL, "unreachable", {**where, "detail": str(exc)},
                       str(exc))
    finally:
        sock.close()
    return Finding("broker", Outcome.OK, "ok", where)


# -- enrolment -----------------------------------------------------------------------------

def check_enrolment(box: _Box) -> Finding:
    """A device key, HQ's trusted keys, and HQ's config applied (its version)."""
    assert box.config is not None
    ids = {"store": box.config.store_id, "device": box.config.device_id}
    if not box.key_ok:
        return Finding("enrolment", Outcome.FAIL, "no_key", ids)
    try:
        conn = _read_only(_ledger_path(box))
        try:
            trusted = conn.execute("SELECT COUNT(*) FROM trusted_key").fetchone()[0]
            version = int(_setting(conn, "config_version", 0))
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return Finding("enrolment", Outcome.FAIL, "no_ledger", ids, str(exc))
    if not trusted:
        return Finding("enrolment", Outcome.FAIL, "no_trust", ids)
    if not version:
        return Finding("enrolment", Outcome.WARN, "no_config", ids)
    return Finding("enrolment", Outcome.OK, "ok", {**ids, "version": version})


# -- words ------------------------------------------------------------------------------------

def _size(n: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _duration(seconds: float) -> str:
    for unit, scale in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= scale:
            return f"{seconds / scale:.1f} {unit}"
    return f"{seconds:.0f} s"


MARKS: Final = {Outcome.OK: "[ OK ]", Outcome.WARN: "[WARN]", Outcome.FAIL: "[FAIL]",
                Outcome.SKIP: "[ -- ]"}


def report_lines(findings: list[Finding], lang: str = i18n.DEFAULT_LANG) -> list[str]:
    """The human report: a line per check, and the fix under each one that needs it."""
    lines = []
    for f in findings:
        lines.append(f"{MARKS[f.outcome]} {i18n.t('doctor.name.' + f.check, lang)}: "
                     f"{f.words(lang)}")
        if f.outcome in (Outcome.FAIL, Outcome.WARN) and (fix := f.fix(lang)):
            lines.append(f"       {i18n.t('doctor.fix', lang)}: {fix}")
        if f.detail and f.outcome is Outcome.FAIL:
            lines.append(f"       ({f.detail})")
    bad = sum(1 for f in findings if f.outcome is Outcome.FAIL)
    lines.append(i18n.t("doctor.summary.fail", lang, n=bad) if bad
                 else i18n.t("doctor.summary.ok", lang))
    return lines
