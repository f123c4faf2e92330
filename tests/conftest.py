"""Shared fixtures. Domain fixtures build real keys, real ledgers and real signed codes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.box import Box
from provisioning.localbroker import Broker
from provisioning.localpostgres import Postgres, fresh_database
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


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[str]:
    """The admin URL of a real PostgreSQL server for the whole session.

    ``HQ_TEST_POSTGRES=postgresql://.../postgres`` names a server to use; otherwise one is
    started from Debian's PostgreSQL (provisioning/localpostgres.py) and stopped at the end.
    """
    given = os.environ.get("HQ_TEST_POSTGRES")
    if given:
        yield given
        return
    pg = Postgres()
    pg.start()
    try:
        yield pg.admin_url
    finally:
        pg.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def hq_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty HQ database: every HQ test runs once on SQLite, once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hq.sqlite'}"
    return fresh_database(request.getfixturevalue("postgres_admin"))
