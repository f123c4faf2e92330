"""Fixtures for tests that run the box's sync service against HQ's raw client.

Named apart from ``tests/conftest.py``'s ``hq`` and ``box`` (the rules tests' factory HQ
and box), so a module may use both: ``pytest_plugins = ["tests.sync_service_fixtures"]``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from provisioning.localbroker import Broker
from tests.sync_fixtures import HqListener
from tests.test_sync_service import Box, _settings


@pytest.fixture
def hq_listener(broker: Broker) -> Iterator[HqListener]:
    """HQ's raw client with a persistent session, publishing to the box's topics."""
    h = HqListener(broker)
    h.start()
    yield h
    h.stop()


@pytest.fixture
async def sync_box(tmp_path: Path, broker: Broker) -> AsyncIterator[Box]:
    """A box ledger (trusting ``HQ1``) and its sync service, started by the test."""
    b = Box(tmp_path / "box.sqlite", _settings(broker.port))
    yield b
    if b.task is not None:
        await b.stop()
    b.ledger.close()
