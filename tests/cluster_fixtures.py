"""The ejabberd cluster the cluster tests share: two nodes, started once per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hq.broker import BrokerOptions
from provisioning.ejabberdcluster import PASSWORD, USERNAME, EjabberdCluster, EjabberdNode
from sync.settings import MqttSettings


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EjabberdCluster]:
    """Two ejabberd nodes on loopback joined into one cluster (a few seconds to start);
    stopped at the end of the session with nothing of theirs left running."""
    c = EjabberdCluster(tmp_path_factory.mktemp("ejabberd"), nodes=2)
    c.start()
    try:
        yield c
    finally:
        c.stop()
    assert c.leftovers() == [], "processes of the ejabberd cluster outlived its stop"


def hq_options(node: EjabberdNode, *others: EjabberdNode) -> BrokerOptions:
    """HQ's connection to ``node`` (``others``: the nodes retained config also goes to)."""
    return BrokerOptions(host=node.host, port=node.port, username=USERNAME, password=PASSWORD,
                         cluster_nodes=tuple((o.host, o.port) for o in others))


def box_settings(node: EjabberdNode) -> MqttSettings:
    """A box's MQTT settings for ``node`` (quick reconnects for tests)."""
    return MqttSettings(host=node.host, port=node.port, username=USERNAME, password=PASSWORD,
                        keepalive_s=5, backoff_min_s=0.05, backoff_max_s=0.5,
                        connect_timeout_s=5.0)
