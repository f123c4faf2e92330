"""``edge backup`` and ``edge restore``: a box's ledger, key and config in one private file.

The file is a gzip'd tar (mode 0600: it holds the device's private key) of
``manifest.json`` (format, store, device, the backup's newest outbox seq, a SHA-256 per
file), ``edge.toml``, the device key, the ledger and the ``[mqtt]`` certificate files
that live in the home. The ledger copy is taken with SQLite's online backup API in one
step, so it is one consistent snapshot even while the daemon writes.

Restoring continues the device's sequence numbers without reusing any: events appended
after the backup may already be at HQ, so :func:`restore` needs HQ's highest seq for the
device (``edge-hq report --json``: ``devices[].max_seq``) and numbers the next event after
the larger of that and the backup's own (:meth:`edge.ledger.Ledger.continue_after`).
See ``docs/operations.md``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sqlite3
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from edge import config as box_config
from edge.ledger import Ledger

FORMAT: Final = 1
MANIFEST: Final = "manifest.json"
LEDGER_NAME: Final = "ledger.sqlite"
KEY_NAME: Final = "device.key"
# What a member may weigh: a bomb of a file is refused before a byte is written.
MAX_LEDGER: Final = 8 << 30
MAX_SMALL: Final = 1 << 20


class BackupError(Exception):
    """A backup cannot be made or restored; the message says why."""


@dataclass(frozen=True, slots=True)
class Manifest:
    """What a backup holds."""

    store: str
    device: str
    created_at: float
    last_seq: int  # the newest outbox seq the backup's ledger gave
    files: dict[str, str]  # member name -> SHA-256 hex

    def to_json(self) -> bytes:
        """The manifest member's bytes."""
        return json.dumps({"format": FORMAT, "store": self.store, "device": self.device,
                           "created_at": self.created_at, "last_seq": self.last_seq,
                           "files": self.files}, indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        """Parse and check a manifest.

        Raises:
            BackupError: not a manifest of a format this software reads.
        """
        try:
            d = json.loads(data)
            if d.get("format") != FORMAT:
                raise BackupError(f"backup format {d.get('format')!r}, this software reads "
                                  f"{FORMAT}")
            files = {str(k): str(v) for k, v in dict(d["files"]).items()}
            return cls(str(d["store"]), str(d["device"]), float(d["created_at"]),
                       int(d["last_seq"]), files)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BackupError(f"the backup's manifest is damaged: {exc}") from None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _home_files(cfg: box_config.BoxConfig) -> dict[str, Path]:
    """Member name -> file: config, key, and the [mqtt] files that live in the home."""
    files = {box_config.CONFIG_NAME: cfg.home / box_config.CONFIG_NAME,
             KEY_NAME: cfg.path(cfg.device_key_path)}
    mqtt = cfg.raw.get("mqtt", {})
    for key in ("ca_file", "cert_file", "key_file"):
        value = mqtt.get(key) if isinstance(mqtt, dict) else None
        if isinstance(value, str) and not Path(value).is_absolute():
            files[value] = cfg.home / value
    return files


def _snapshot(ledger: Path, into: Path) -> int:
    """Copy ``ledger`` to ``into`` with the online backup API; the copy's newest seq."""
    src = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=10)
    dst = sqlite3.connect(into)
    try:
        src.backup(dst)  # pages=-1: one step, one read transaction, one consistent snapshot
        row = dst.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        if dst.execute("PRAGMA quick_check").fetchone()[0] != "ok":
            raise BackupError(f"the copy of {ledger} fails quick_check: the ledger is damaged")
    except sqlite3.Error as exc:
        raise BackupError(f"cannot copy the ledger {ledger}: {exc}") from None
    finally:
        dst.close()
        src.close()
    return int(row[0]) if row else 0


def backup(home: Path, out: Path, now: float | None = None) -> Manifest:
    """Write the backup of the box home ``home`` to ``out`` (created 0600, never replaced).

    Raises:
        BackupError: ``out`` exists, or a file cannot be read, or the ledger is damaged.
        edge.config.ConfigError: the home has no valid ``edge.toml``.
    """
    cfg = box_config.load(home)
    with tempfile.TemporaryDirectory(prefix="edge-backup-") as tmp:
        copy = Path(tmp) / LEDGER_NAME
        last_seq = _snapshot(cfg.path(cfg.ledger_path), copy)
        members: dict[str, bytes] = {}
        for name, path in _home_files(cfg).items():
            try:
                members[name] = path.read_bytes()
            except OSError as exc:
                raise BackupError(f"cannot read {path}: {exc}") from None
        files = {name: _sha256(data) for name, data in members.items()}
        with copy.open("rb") as f:  # streamed: a ledger can be larger than the box's memory
            files[LEDGER_NAME] = hashlib.file_digest(f, "sha256").hexdigest()
        manifest = Manifest(cfg.store_id, cfg.device_id, time.time() if now is None else now,
                            last_seq, files)
        try:
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise BackupError(f"{out} exists: give a new file name") from None
        try:
            with os.fdopen(fd, "wb") as f:
                with tarfile.open(fileobj=f, mode="w:gz") as tar:
                    _add(tar, MANIFEST, manifest.to_json())
                    for name, data in members.items():
                        _add(tar, name, data)
                    tar.add(copy, LEDGER_NAME, filter=_private)
                f.flush()  # after the tar's end blocks and the gzip trailer
                os.fsync(f.fileno())
        except BaseException:
            out.unlink(missing_ok=True)
            raise
    return manifest


def _private(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mode, info.uid, info.gid, info.uname, info.gname = 0o600, 0, 0, "", ""
    return info


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
    tar.addfile(info, io.BytesIO(data))


def read_manifest(path: Path) -> Manifest:
    """The manifest of the backup at ``path``.

    Raises:
        BackupError: not a readable backup.
    """
    with _open(path) as tar:
        return Manifest.from_json(_member(tar, MANIFEST, MAX_SMALL))


@contextlib.contextmanager
def _open(path: Path) -> Iterator[tarfile.TarFile]:
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            yield tar
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise BackupError(f"{path} is not a readable backup: {exc}") from None


def _member(tar: tarfile.TarFile, name: str, limit: int) -> bytes:
    """One regular-file member, read within ``limit`` bytes (never extracted by path)."""
    try:
        info = tar.getmember(name)
    except KeyError:
        raise BackupError(f"the backup has no {name}") from None
    if not info.isfile() or info.size > limit:
        raise BackupError(f"the backup's {name} is not a file of at most {limit} bytes")
    f = tar.extractfile(info)
    assert f is not None
    data = f.read(limit + 1)
    if len(data) > limit:
        raise BackupError(f"the backup's {name} is over {limit} bytes")
    return data


def restore(path: Path, home: Path, hq_last_seq: int) -> tuple[Manifest, int]:
    """Restore the backup at ``path`` into the new box home ``home``.

    ``hq_last_seq`` is HQ's highest seq for the device: the next event is numbered after
    it (or after the backup's newest, if higher). Returns the manifest and that next seq.

    Raises:
        BackupError: a damaged or tampered backup (a checksum differs), a home that
            already holds a box (nothing is overwritten), or a negative ``hq_last_seq``.
    """
    if hq_last_seq < 0:
        raise BackupError(f"--hq-last-seq must be 0 or more, not {hq_last_seq}")
    taken = [p.name for p in (home / box_config.CONFIG_NAME, home / KEY_NAME,
                              home / LEDGER_NAME) if p.exists()]
    if taken:
        raise BackupError(f"{home} already holds a box ({', '.join(taken)}): restore into an "
                          "empty home; nothing was changed")
    with _open(path) as tar:
        manifest = Manifest.from_json(_member(tar, MANIFEST, MAX_SMALL))
        for needed in (box_config.CONFIG_NAME, KEY_NAME, LEDGER_NAME):
            if needed not in manifest.files:
                raise BackupError(f"the backup has no {needed}")
        contents: dict[str, bytes] = {}
        for name, digest in manifest.files.items():
            if name.startswith("/") or ".." in Path(name).parts:
                raise BackupError(f"the backup names a file outside the home: {name!r}")
            if name != LEDGER_NAME:  # small files in memory; the ledger is streamed below
                contents[name] = _member(tar, name, MAX_SMALL)
                _verify(name, _sha256(contents[name]), digest)
        home.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        try:
            for name, data in contents.items():
                target = home / name
                target.parent.mkdir(parents=True, exist_ok=True)
                _write(target, data, 0o600 if name == KEY_NAME else 0o640)
                written.append(target)
            cfg = box_config.load(home)
            ledger_path = cfg.path(cfg.ledger_path)
            if ledger_path.exists():
                raise BackupError(f"{ledger_path} exists: restore into an empty home")
            next_seq = _restore_ledger(tar, manifest.files[LEDGER_NAME], ledger_path,
                                       hq_last_seq)
        except BaseException:
            for target in written:  # all or nothing: a rerun finds the home as it was
                target.unlink(missing_ok=True)
            raise
    return manifest, next_seq


def _verify(name: str, actual: str, expected: str) -> None:
    if actual != expected:
        raise BackupError(f"the backup's {name} does not match its checksum: damaged or "
                          "altered; nothing was restored")


def _restore_ledger(tar: tarfile.TarFile, digest: str, path: Path, hq_last_seq: int) -> int:
    """Put the ledger at ``path`` with its sequence moved past ``hq_last_seq``; the next seq.

    The member is streamed into a staging file (a ledger can be larger than the box's
    memory) and checked against ``digest``; the sequence moves in that copy, which is
    renamed into place only then: a box is never left with a ledger that could reuse a
    seq HQ holds.
    """
    info = tar.getmember(LEDGER_NAME)
    if not info.isfile() or info.size > MAX_LEDGER:
        raise BackupError(f"the backup's {LEDGER_NAME} is not a file of at most {MAX_LEDGER}"
                          " bytes")
    staging = path.with_name(path.name + ".restoring")
    staging.unlink(missing_ok=True)
    try:
        src = tar.extractfile(info)
        assert src is not None
        sha = hashlib.sha256()
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            while chunk := src.read(1 << 20):
                sha.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        _verify(LEDGER_NAME, sha.hexdigest(), digest)
        ledger = Ledger(staging)
        try:
            next_seq = ledger.continue_after(hq_last_seq)
            ledger.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            ledger.close()
        if Path(f"{staging}-wal").exists():  # the last close removes it once checkpointed
            raise BackupError(f"{staging}: its write-ahead log was not checkpointed")
        os.replace(staging, path)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    return next_seq


def _write(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``mode`` (never replacing a file) and make it durable."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def describe(manifest: Manifest) -> dict[str, Any]:
    """The manifest as the command lines print it."""
    return {"store": manifest.store, "device": manifest.device,
            "created_at": manifest.created_at, "last_seq": manifest.last_seq,
            "files": sorted(manifest.files)}
