"""A real, small, size-limited filesystem for disk-full tests: a tmpfs mounted with ``size=``.

Loaded with ``pytest_plugins = ["tests.smalldisk"]``. Mounting needs root (CI runs as
root); the fixture always unmounts, lazily, so a process still holding a file cannot leave
the mount behind.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

CHUNKS = (64 * 1024, 4096, 512)  # big writes first, then whatever small room is left


class SmallDisk:
    """A mounted tmpfs at :attr:`path` and a filler file to take its free space away."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.filler = path / "filler.bin"

    def free_bytes(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self) -> int:
        """Append to the filler until the filesystem says ENOSPC; bytes written."""
        written = 0
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in CHUNKS:
                block = b"\0" * size
                with contextlib.suppress(OSError):
                    while True:
                        written += os.write(fd, block)
        finally:
            os.close(fd)
        assert self.free_bytes() < 4096, "the filler did not take the free space"
        return written

    def release(self) -> None:
        """Give the space back."""
        self.filler.unlink(missing_ok=True)


@contextlib.contextmanager
def mounted(path: Path, size: str) -> Iterator[SmallDisk]:
    """A tmpfs of ``size`` (``mount -o size=``) at ``path`` for the block."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                           str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"cannot mount a tmpfs (root needed): {done.stderr.strip()}"
    try:
        yield SmallDisk(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    """A 4 MiB tmpfs under the test's folder."""
    with mounted(tmp_path / "small", "4m") as disk:
        yield disk
