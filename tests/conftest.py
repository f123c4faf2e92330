"""Shared fixtures. Domain fixtures build real keys, real ledgers and real signed codes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.box import Box
from provisioning.localbroker import Broker
from tests.factory import Clock, Hq, make_box


@pytest.fixture
def hq() -> Hq:
    return Hq()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def box(tmp_path: Path, hq: Hq, clock: Clock) -> Iterator[Box]:
    b = make_box(tmp_path / "box", hq, clock)
    yield b
    b.close()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A real mosquitto on a free 127.0.0.1 port; ``broker.restart()`` keeps the port."""
    b = Broker(tmp_path / "mosquitto")
    b.start()
    try:
        yield b
    finally:
        b.kill()
