"""Shared fixtures. Domain fixtures build real keys, real ledgers and real signed codes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.box import Box
from provisioning.localbroker import BROKER_KINDS, BROKERS, LocalBroker, local_broker
from tests.factory import Clock, Hq, make_box

# Which brokers the broker tests run on: all by default; TEST_BROKERS=mosquitto narrows a
# local run (CI runs them all).
TEST_BROKERS = tuple(k for k in os.environ.get("TEST_BROKERS", ",".join(BROKER_KINDS))
                     .split(",") if k)
_LIMITED: list[str] = []  # "test id: why", printed at the end of the run


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "broker_needs(*features, reason): run only on the brokers that have these "
        "features (LocalBroker.features: persistence, shared_redelivery, acl, tls); the "
        "reason is printed at the end of the run")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that uses a local broker (``broker_kind``) runs once per broker kind,
    except on brokers without a feature its ``broker_needs`` marker names."""
    if "broker_kind" not in metafunc.fixturenames:
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
