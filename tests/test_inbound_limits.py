"""Poison-proof inbound (issue 11, attacks 5, 6, 11): bounded parsing on both sides.

Against a real mosquitto: a deeply nested message, a junk flood and an oversized message on
the box's topics; the shared decoder's bounds (HQ's ingest: tests/test_hq_limits.py).
"""

from __future__ import annotations

import json
import math
import tracemalloc
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge import wire
from edge.events import EventType
from edge.ledger import Ledger
from provisioning.localbroker import Broker
from sync.contract import (
    CONTENT_JSON_ZLIB,
    ContractError,
    DataKind,
    EventBatch,
    TooLargeError,
    Topics,
)
from sync.inbound import Inbound
from tests.sync_fixtures import (
    IDENTITY,
    STORE,
    HqListener,
    config_body,
    events_of,
    new_ledger,
    sealed,
)
from tests.test_sync_service import HQ1, Box, until

pytest_plugins = ["tests.sync_service_fixtures"]  # hq_listener, sync_box

pytestmark = pytest.mark.network

TOPICS = Topics("se")
DEEP = b"[" * 50_000 + b"]" * 50_000  # ~100 KB: RecursionError in json.loads


def _rejections(ledger: Ledger) -> list[dict[str, object]]:
    return events_of(ledger, EventType.CONFIG_REJECTED)


async def test_deep_json_on_config_and_data_is_refused_acknowledged_once(
        broker: Broker, hq_listener: HqListener, sync_box: Box) -> None:
    """GIVEN a running box WHEN a ~100 KB deeply nested JSON is published, retained, on its
    config topic and on its data topic THEN each is one recorded `malformed` refusal naming
    the depth, the connection never drops (no redelivery loop), and a good config published
    afterwards is applied."""
    sync_box.start()
    await until(lambda: bool(sync_box.states) and sync_box.states[-1].online, what="online")
    hq_listener.publish(TOPICS.config(STORE), DEEP, retain=True)
    hq_listener.publish(TOPICS.data(STORE), DEEP)
    await until(lambda: len(_rejections(sync_box.ledger)) >= 2, what="two refusals")
    hq_listener.publish(TOPICS.config(STORE), sealed(HQ1, DataKind.CONFIG, 3, config_body(HQ1)),
               retain=True)
    await until(lambda: sync_box.ledger.setting("config_version") == 3, what="good config applied")
    refused = _rejections(sync_box.ledger)
    assert [(r["reason"], r["kind"]) for r in refused] == [("malformed", "config"),
                                                           ("malformed", None)]
    assert all("nested deeper than" in str(r["detail"]) for r in refused)
    first_online = next(i for i, s in enumerate(sync_box.states) if s.online)
    assert all(s.online for s in sync_box.states[first_online:]), "the link dropped"


async def test_junk_flood_is_coalesced_into_a_count(
        broker: Broker, hq_listener: HqListener, sync_box: Box) -> None:
    """GIVEN a running box WHEN 2,000 junk messages arrive on its config topic THEN the first
    is recorded at once and the rest as one event whose count makes 2,000 in all, after the
    box stops (nothing counted is lost); the box stayed online throughout."""
    sync_box.start()
    await until(lambda: bool(sync_box.states) and sync_box.states[-1].online, what="online")
    for i in range(2000):
        hq_listener.client.publish(TOPICS.config(STORE), b"junk %d" % i, qos=1)
    hq_listener.publish(TOPICS.config(STORE), sealed(HQ1, DataKind.CONFIG, 3, config_body(HQ1)))
    await until(lambda: sync_box.ledger.setting("config_version") == 3, timeout=60,
                what="the good config after the junk")
    assert len(_rejections(sync_box.ledger)) == 1
    first_online = next(i for i, s in enumerate(sync_box.states) if s.online)
    assert all(s.online for s in sync_box.states[first_online:]), "the link dropped"
    await sync_box.stop()
    refused = _rejections(sync_box.ledger)
    assert [r["reason"] for r in refused] == ["malformed", "malformed"]
    assert 1 + int(str(refused[1]["count"])) == 2000
    assert "1999 more refused" in str(refused[1]["detail"])


@pytest.mark.broker_needs(
    "max_packet_size",
    reason="the broker must hold back a message over the box's announced maximum")
async def test_oversized_message_never_reaches_the_box(
        broker: Broker, hq_listener: HqListener, sync_box: Box) -> None:
    """GIVEN a running box (it announces the MQTT 5 Maximum Packet Size) WHEN a 3 MB message
    is published, retained, on its config topic THEN the broker never delivers it (nothing is
    recorded, the box stays online), and a good config published next is applied."""
    sync_box.start()
    await until(lambda: bool(sync_box.states) and sync_box.states[-1].online, what="online")
    hq_listener.publish(TOPICS.config(STORE), b"[" + b"1," * (3 << 19) + b"1]", retain=True)
    hq_listener.publish(TOPICS.data(STORE), sealed(HQ1, DataKind.CONFIG, 3, config_body(HQ1)))
    await until(lambda: len(_rejections(sync_box.ledger)) == 1, what="the marker refused")
    assert _rejections(sync_box.ledger)[0]["reason"] == "wrong_kind"  # the marker, not the 3 MB
    first_online = next(i for i, s in enumerate(sync_box.states) if s.online)
    assert all(s.online for s in sync_box.states[first_online:]), "the link dropped"


def test_inbound_refuses_an_oversized_payload_unread(tmp_path: Path) -> None:
    """GIVEN the box's inbound handler (a broker that ignored the packet limit) WHEN a
    payload over the limit arrives THEN it is a `too_large` refusal, recorded, not parsed."""
    ledger = new_ledger(tmp_path / "l.sqlite", HQ1)
    try:
        inbound = Inbound(ledger, IDENTITY, TOPICS)
        result = inbound.handle(TOPICS.config(STORE), b" " * (wire.MAX_HQ_MESSAGE + 1))
        assert result is not None and result.reason is not None
        assert result.reason.value == "too_large"
        assert _rejections(ledger)[-1]["reason"] == "too_large"
    finally:
        ledger.close()


def test_batch_decode_stops_a_zlib_bomb_at_its_limit() -> None:
    """GIVEN a 200 MB zlib bomb (~200 KB on the wire) WHEN HQ decodes it as an event batch
    THEN it is refused as too large, having allocated about the limit, not 200 MB."""
    bomb = zlib.compress(b'{"v":1,"events":[' + b" " * (200 << 20), 9)
    assert len(bomb) < wire.MAX_BATCH_WIRE
    tracemalloc.start()
    try:
        with pytest.raises(TooLargeError, match="inflates past"):
            EventBatch.decode(bomb, CONTENT_JSON_ZLIB)
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * wire.MAX_BATCH_JSON + (4 << 20)


def test_bounded_json_names_the_bound() -> None:
    """GIVEN the shared decoder WHEN given too deep, too large, bad zlib and good input THEN
    each failure names its bound and the good one parses."""
    with pytest.raises(wire.WireError) as deep:
        wire.loads(b"[" * 40 + b"]" * 40, "x")
    assert deep.value.reason is wire.Bound.TOO_DEEP
    with pytest.raises(wire.WireError) as big:
        wire.loads(b"1" * 11, "x", limit=10)
    assert big.value.reason is wire.Bound.TOO_LARGE
    with pytest.raises(wire.WireError) as cut:
        wire.inflate(zlib.compress(b"abc" * 100)[:-4], 1000, "x")
    assert cut.value.reason is wire.Bound.BAD_ZLIB
    assert wire.loads(b'{"a":[[1]]}', "x") == {"a": [[1]]}
    with pytest.raises(ContractError, match="nested deeper"):
        EventBatch.decode(json.dumps({"v": 1, "events": [[[[[[[[[[]]]]]]]]]] * 1}).encode()
                          .replace(b"[]", b"[" * 40 + b"]" * 40), None)


def _depth(obj: object) -> int:
    if isinstance(obj, dict):
        return 1 + max(map(_depth, obj.values()), default=0)
    if isinstance(obj, list):
        return 1 + max(map(_depth, obj), default=0)
    return 0


_text = st.text(alphabet=st.sampled_from('ab[]{}"\\\n/u'), max_size=8)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=60)


@settings(max_examples=1000)
@given(_json_values, st.booleans(), st.integers(1, 12))
def test_the_depth_bound_read_on_the_bytes_agrees_with_the_walk(
        value: object, ascii_only: bool, max_depth: int) -> None:
    """GIVEN any JSON (strings full of brackets, quotes and backslashes, escaped or not)
    WHEN the depth is checked on its bytes (the fast path for event batches) THEN it never
    passes a text deeper than the bound, and it agrees with the exact walk when it decides."""
    raw = json.dumps(value, ensure_ascii=ascii_only).encode()
    within = _depth(value) <= max_depth
    fast = wire._text_within(raw, max_depth)
    assert fast is None or fast == within
    assert wire._depth_within(value, max_depth) == within
    if fast is None:
        assert _depth(value) > max_depth / 2  # undecided only past half the bound


def test_what_orjson_refuses_is_judged_as_before() -> None:
    """GIVEN texts the fast parser refuses but Python's json takes (NaN, a lone surrogate,
    UTF-16) or refuses (deeper than the interpreter's recursion) WHEN loaded THEN the result
    is what json.loads gives, or the bound it breaks."""
    assert math.isnan(wire.loads(b'{"a":NaN}', "x")["a"])
    assert wire.loads(b'{"a":"\\ud800"}', "x") == {"a": "\ud800"}
    assert wire.loads('{"a":1}'.encode("utf-16"), "x") == {"a": 1}
    with pytest.raises(wire.WireError) as deep:
        wire.loads(b"[" * 100_000 + b"]" * 100_000, "x", limit=1 << 20)
    assert deep.value.reason is wire.Bound.TOO_DEEP
    with pytest.raises(wire.WireError) as bad:
        wire.loads(b'{"a":', "x")
    assert bad.value.reason is wire.Bound.NOT_JSON
