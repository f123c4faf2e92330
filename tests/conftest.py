"""Shared fixtures. Domain fixtures build real keys, real ledgers and real signed codes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.box import Box
from provisioning.localbroker import BROKER_KINDS, BROKERS, LocalBroker, local_broker
from provisioning.localpostgres import Postgres, fresh_database
from tests.factory import Clock, Hq, make_box

# Plugin modules some tests also import by name: rewritten either way, however they load.
pytest.register_assert_rewrite("tests.smalldisk", "tests.ui_fixtures",
                               "tests.sync_service_fixtures")

# Which brokers the broker tests run on: all by default; TEST_BROKERS=mosquitto narrows a
# local run (CI runs them all).
TEST_BROKERS = tuple(k for k in os.environ.get("TEST_BROKERS", ",".join(BROKER_KINDS))
                     .split(",") if k)
_LIMITED: list[str] = []  # "test id: why", printed at the end of the run
DB_KINDS = ("sqlite", "postgresql")  # every HQ test runs on both (hq_db_url)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "broker_needs(*features, reason): run only on the brokers that have these "
        "features (LocalBroker.features: persistence, shared_redelivery, acl, tls); the "
        "reason is printed at the end of the run")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that uses a local broker (``broker_kind``) runs once per broker kind,
    except on brokers without a feature its ``broker_needs`` marker names."""
    if "broker_kind" not in metafunc.fixturenames:
        if "hq_db_url" in metafunc.fixturenames:
            metafunc.parametrize("hq_db_url", DB_KINDS, indirect=True)
        return
    needs: set[str] = set()
    reasons = []
    for m in metafunc.definition.iter_markers("broker_needs"):
        needs.update(m.args)
        reasons.append(m.kwargs.get("reason", ""))
    kinds = [k for k in TEST_BROKERS if needs <= BROKERS[k].features]
    left = [k for k in TEST_BROKERS if k not in kinds]
    if left:
        _LIMITED.append(f"{metafunc.definition.nodeid}: not on {', '.join(left)} (needs "
                        f"{', '.join(sorted(needs))}: {'; '.join(r for r in reasons if r)})")
    if "hq_db_url" in metafunc.fixturenames:
        # HQ over a broker: every database on the first broker, every other broker on SQLite.
        # Each database and each broker is covered without running the HQ suite four times.
        pairs = ([(db, kinds[0]) for db in DB_KINDS] + [(DB_KINDS[0], k) for k in kinds[1:]]
                 if kinds else [])
        metafunc.parametrize(("hq_db_url", "broker_kind"), pairs, indirect=["hq_db_url"],
                             ids=[f"{db}-{k}" for db, k in pairs])
    else:
        metafunc.parametrize("broker_kind", kinds)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _LIMITED:
        terminalreporter.section("broker tests limited to brokers with a feature")
        for line in _LIMITED:
            terminalreporter.write_line(line)


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
def broker(tmp_path: Path, broker_kind: str) -> Iterator[LocalBroker]:
    """A real broker (mosquitto, then rumqttd) on a free 127.0.0.1 port;
    ``broker.restart()`` keeps the port."""
    b = local_broker(broker_kind, tmp_path / broker_kind)
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


@pytest.fixture
def hq_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty HQ database of the kind the test is parametrised with (see
    ``pytest_generate_tests``): every HQ test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hq.sqlite'}"
    return fresh_database(request.getfixturevalue("postgres_admin"))
