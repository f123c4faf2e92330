"""Fixtures for the cashier UI tests, loaded with ``pytest_plugins = ["tests.ui_fixtures"]``.

Not a conftest, so other parts' test suites are untouched. Screens read local time, so
the fixtures pin the zone to Asia/Shanghai for the test and put it back afterwards.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.standin import StandIn
from tests.ui_store import Store, make_store
from tests.uihelp import FIXED_NOW, ZONE


@contextlib.contextmanager
def local_zone(tz: str) -> Iterator[None]:
    """Local time is ``tz`` (for this process and the processes it starts) inside the block."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = tz
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()


@pytest.fixture
def shanghai() -> Iterator[None]:
    """Local time is the store's zone for the test."""
    with local_zone(ZONE):
        yield


@pytest.fixture
def store(tmp_path: Path, shanghai: None) -> Store:
    """A fresh store home."""
    return make_store(tmp_path / "box")


@pytest.fixture
def standin(store: Store) -> Iterator[StandIn]:
    """The stand-in daemon on the store, at the fixed clock."""
    server = StandIn(store.home, clock=lambda: FIXED_NOW).start()
    yield server
    server.stop()
