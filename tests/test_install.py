"""provisioning/install.sh into a temporary root tree: users, venv, directories, units
enabled; a second run changes nothing; drift is put back; the host is never touched."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "provisioning" / "install.sh"
pytestmark = pytest.mark.slow


def install(tree: Path) -> str:
    done = subprocess.run(["bash", str(SCRIPT), "--root", str(tree)], capture_output=True,
                          text=True, timeout=300,
                          env={**os.environ, "STORE_EDGE_PIP_ARGS": "--no-deps"})
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def snapshot(tree: Path) -> dict[str, tuple[object, ...]]:
    """Every path under the tree: mode, owner, and content hash or link target."""
    out: dict[str, tuple[object, ...]] = {}
    for path in sorted(tree.rglob("*")):
        if "__pycache__" in path.parts:
            continue
        st = path.lstat()
        what: object = os.readlink(path) if path.is_symlink() else (
            hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir")
        out[str(path.relative_to(tree))] = (st.st_mode, st.st_uid, st.st_gid, what)
    return out


def members(tree: Path, group: str) -> list[str]:
    for line in (tree / "etc" / "group").read_text().splitlines():
        name, _x, _gid, users = line.split(":")
        if name == group:
            return users.split(",") if users else []
    raise AssertionError(f"no group {group}")


def ids(tree: Path, user: str) -> tuple[int, int]:
    for line in (tree / "etc" / "passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return int(fields[2]), int(fields[3])
    raise AssertionError(f"no user {user}")


def test_install_into_a_tree_twice_changes_nothing(tmp_path: Path) -> None:
    """GIVEN an empty root tree with this host's user databases
    WHEN install.sh runs into it, twice, then once more after a unit was edited by hand
    THEN the first run creates the service user in dialout, lp and video, the cashier,
    the venv with store-edge, /var/lib/store-edge 0700 and /etc/store-edge 0750 owned
    right, the units and journald limits as in systemd/, both units enabled, says it did
    not start them; the second run reports 0 changes and leaves every file as it was;
    the third puts the unit back (1 change). The host's /etc/passwd is untouched."""
    tree = tmp_path / "root"
    (tree / "etc").mkdir(parents=True)
    for name in ("passwd", "group", "shadow", "gshadow"):
        shutil.copy2(Path("/etc") / name, tree / "etc" / name)
    host_passwd = Path("/etc/passwd").read_bytes()

    first = install(tree)
    assert "units enabled, not started" in first and "0 change(s)" not in first
    for group in ("dialout", "lp", "video"):
        assert "store-edge" in members(tree, group)
    assert sorted(members(tree, "store-edge-api")) == ["cashier", "store-edge"]
    uid, gid = ids(tree, "store-edge")
    ids(tree, "cashier")
    state = (tree / "var/lib/store-edge").stat()
    assert (oct(state.st_mode & 0o777), state.st_uid, state.st_gid) == ("0o700", uid, gid)
    conf = (tree / "etc/store-edge").stat()
    assert (oct(conf.st_mode & 0o777), conf.st_uid, conf.st_gid) == ("0o750", 0, gid)
    venv = tree / "opt/store-edge/.venv"
    shown = subprocess.run([str(venv / "bin/python"), "-m", "pip", "show", "store-edge"],
                           capture_output=True, text=True, check=True).stdout
    assert "Version: 0.1.0" in shown and (venv / "bin/edge").exists()
    units = tree / "etc/systemd/system"
    for unit in ("store-edge.service", "store-edge-ui@.service"):
        assert (units / unit).read_bytes() == (ROOT / "systemd" / unit).read_bytes()
    assert (tree / "etc/systemd/journald.conf.d/store-edge.conf").read_bytes() == (
        ROOT / "systemd/journald.conf.d/store-edge.conf").read_bytes()
    wants = units / "multi-user.target.wants"
    assert os.readlink(wants / "store-edge.service") == "/etc/systemd/system/store-edge.service"
    assert os.readlink(wants / "store-edge-ui@tty1.service") == \
        "/etc/systemd/system/store-edge-ui@.service"

    before = snapshot(tree)
    second = install(tree)
    assert "done, 0 change(s)" in second, second
    assert snapshot(tree) == before

    (units / "store-edge.service").write_text("[Service]\nExecStart=/bin/true\n")
    third = install(tree)
    assert "done, 1 change(s)" in third and "/etc/systemd/system/store-edge.service" in third
    assert snapshot(tree) == before
    assert Path("/etc/passwd").read_bytes() == host_passwd
