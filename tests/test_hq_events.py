"""HQ's typed batch reader (hq/events.py) reads every batch as the contract's reader does."""

from __future__ import annotations

import json
import math
import zlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hq.events import Facts, Lifted, ReceivedBatch, from_dicts, lifted_of, read_batch
from sync.contract import CONTENT_JSON, CONTENT_JSON_ZLIB, ContractError, EventBatch

FLOATS = st.floats(allow_nan=False, allow_infinity=False)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | FLOATS
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=3),
    max_leaves=8)
TEXT = st.text(max_size=6)


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    """An event, mostly as a box writes one, sometimes with a field of another type."""
    def field(good: st.SearchStrategy[Any]) -> Any:  # now and then another JSON value
        odd = draw(st.integers(0, 29))
        return draw(JSON_VALUES if odd == 0 else st.sampled_from([math.nan, math.inf])
                    if odd == 1 else good)

    body = field(st.fixed_dictionaries({}, optional={
        "accepted": JSON_VALUES, "kind": st.sampled_from(["coupon", "pickup"]) | JSON_VALUES,
        "code_id": TEXT, "campaign_id": TEXT | st.none(), "reason": TEXT,
        "facts": st.dictionaries(st.sampled_from(["coupon_id", "channel", "x"]),
                                 JSON_VALUES, max_size=3) | JSON_VALUES,
        "other": JSON_VALUES}))
    e = {"v": 1, "id": field(st.text(min_size=1, max_size=8)),
         "seq": field(st.integers(1, 2**63 - 1)), "type": field(st.sampled_from(
             ["decision", "void", "card_issued"])),
         "at": field(st.floats(0, 2e9) | st.integers(0, 2**63 - 1)), "body": body}
    for key, value in (("clock_trusted", JSON_VALUES), ("store", TEXT | JSON_VALUES),
                       ("device", TEXT | JSON_VALUES), ("extra", JSON_VALUES)):
        if draw(st.booleans()):
            e[key] = draw(value)
    if draw(st.integers(0, 19)) == 0:  # a field missing
        del e[draw(st.sampled_from(["id", "seq", "type", "at", "body"]))]
    return e


def summary(read: Any) -> str:
    """What a reader made of a batch: the events' values, or its refusal (repr: NaN)."""
    try:
        batch: ReceivedBatch = read()
    except ContractError as exc:
        return f"refused {type(exc).__name__}: {exc}"
    return repr((batch.store, batch.device, [
        (e.id, e.seq, e.type, e.at, type(e.at), e.clock_trusted, json.loads(e.body),
         e.lifted, e.store, e.device) for e in batch.events]))


def contract_reader(payload: bytes, ctype: str) -> ReceivedBatch:
    slow = EventBatch.decode(payload, ctype)
    return ReceivedBatch(slow.store, slow.device, from_dicts(slow.events, slow.strict))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(events(), max_size=4),
       st.fixed_dictionaries({"v": st.sampled_from([1] * 6 + [2, True, "1"]),
                              "store": TEXT | JSON_VALUES, "device": TEXT | JSON_VALUES}),
       st.booleans())
def test_both_readers_make_the_same_of_any_batch(evs: list[dict[str, Any]],
                                                 head: dict[str, Any], packed: bool) -> None:
    raw = json.dumps({**head, "events": evs}, ensure_ascii=False).encode("utf-8",
                                                                            "surrogatepass")
    payload, ctype = (zlib.compress(raw), CONTENT_JSON_ZLIB) if packed else (raw, CONTENT_JSON)
    assert summary(lambda: read_batch(payload, ctype)) == summary(
        lambda: contract_reader(payload, ctype))


def box_batch() -> tuple[bytes, str]:
    ev = [{"v": 1, "id": f"e{i}", "seq": i, "store": "S1", "device": "D1", "type": "decision",
           "at": 1.7e9 + i, "clock_trusted": True,
           "body": {"accepted": True, "kind": "coupon", "code_id": "C:1", "campaign_id": "c",
                    "facts": {"coupon_id": "x", "channel": "welcome"}, "note": "café"}}
          for i in range(1, 40)]
    return EventBatch("S1", "D1", ev).encode()


def test_a_box_batch_is_read_without_the_contract_reader(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    """The fast reader takes what boxes send (else the test above compares one reader)."""
    payload, ctype = box_batch()
    expected = summary(lambda: contract_reader(payload, ctype))

    def refuse(*_a: object) -> None:
        raise AssertionError("the contract's reader was used")

    monkeypatch.setattr(EventBatch, "decode", refuse)
    assert summary(lambda: read_batch(payload, ctype)) == expected
    batch = read_batch(payload, ctype)
    # the body is kept as the box wrote it, not parsed and written again
    assert batch.events[0].body == json.dumps(
        {"accepted": True, "kind": "coupon", "code_id": "C:1", "campaign_id": "c",
         "facts": {"coupon_id": "x", "channel": "welcome"}, "note": "café"},
        ensure_ascii=False, separators=(",", ":"))


@pytest.mark.parametrize(("event_text", "expected"), [
    (b'{"id":"a","seq":1,"type":"t","at":1,"body":{"x":"\xff"}}', "not JSON"),
    (b'{"id":"a","seq":1,"type":"t","at":1,"body":[1]}', "no valid 'events' list"),
    (b'{"id":"a","seq":1,"type":"t","at":1}', "no valid 'events' list"),
])
def test_what_the_contract_refuses_is_refused_with_its_words(event_text: bytes,
                                                              expected: str) -> None:
    payload = b'{"v":1,"store":"S","device":"D","events":[' + event_text + b"]}"
    with pytest.raises(ContractError, match=expected):
        read_batch(payload, CONTENT_JSON)


def test_a_time_that_is_a_bool_stays_one_for_ingest_to_refuse() -> None:
    payload = b'{"v":1,"store":"S","device":"D","events":[{"id":"a","seq":1,"type":"t",' \
              b'"at":true,"body":{}}]}'
    assert read_batch(payload, CONTENT_JSON).events[0].at is True


def test_a_stored_body_gives_its_lifted_fields_or_none() -> None:
    lifted = lifted_of('{"accepted":true,"kind":"coupon","reason":NaN,'
                       '"facts":{"a":1,"channel":"welcome"}}')
    assert lifted is not None and lifted.accepted is True
    assert lifted.facts == Facts(None, "welcome")
    plain = lifted_of('{"kind":"coupon","facts":{"coupon_id":"x","benefit":{"n":[1]}}}')
    assert plain is not None and plain.facts == Facts("x", None)
    assert lifted_of('{"kind":"coupon","facts":null}') == Lifted(kind="coupon")
    assert lifted_of("[1,2]") is None
    assert lifted_of("not json") is None
