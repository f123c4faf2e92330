"""The data-down bodies HQ adds to the contract: round trips and refusals."""

from __future__ import annotations

import pytest

from sync.contract import (
    ContractError,
    OrderStatus,
    OrderUpdate,
    RemoteUse,
    decode_orders,
    decode_remote_uses,
    encode_orders,
    encode_remote_uses,
)


def test_remote_uses_round_trip() -> None:
    """GIVEN two remote uses
    WHEN encoded into a body and decoded again
    THEN they come back equal, in order."""
    uses = [RemoteUse("C:X1", "A", 1, 10.5), RemoteUse("C:X2", "B", 0, 11.0)]
    assert decode_remote_uses(encode_remote_uses(uses)) == uses


@pytest.mark.parametrize(("body", "message"), [
    ({}, "no 'uses' list"),
    ({"uses": [{"code_id": "C:1", "store": "A", "last_at": 1}]},
     r"uses\[0\]\.uses must be a whole number"),
    ({"uses": [{"code_id": "C:1", "store": "A", "uses": -1, "last_at": 1}]},
     r"uses\[0\]\.uses must be a whole number from 0"),
    ({"uses": [{"code_id": "", "store": "A", "uses": 1, "last_at": 1}]},
     r"uses\[0\]\.code_id must be a non-empty string"),
    ({"uses": [{"code_id": "C:1", "store": "A", "uses": 1}]},
     r"uses\[0\]\.last_at must be a Unix time"),
    ({"uses": [{"code_id": "C:1", "store": "A", "uses": 1, "last_at": 1, "extra": 0}]},
     r"unknown field\(s\) \['extra'\]"),
    ({"uses": ["C:1"]}, "must be a JSON object"),
])
def test_bad_remote_uses_are_refused(body: dict[str, object], message: str) -> None:
    """GIVEN a remote_uses body missing a field, with a negative count, or not objects
    WHEN decoded
    THEN a ContractError says what is wrong."""
    with pytest.raises(ContractError, match=message):
        decode_remote_uses(body)


def test_orders_round_trip_and_defaults() -> None:
    """GIVEN an order with only the required fields
    WHEN decoded from a body and re-encoded
    THEN status defaults to waiting and the round trip is exact."""
    orders = decode_orders({"orders": [{"order_id": "O1", "number": "123", "window_start": 1,
                                        "window_end": 5}]})
    assert orders == [OrderUpdate("O1", "123", 1, 5, "", "", OrderStatus.WAITING)]
    assert decode_orders(encode_orders(orders)) == orders


@pytest.mark.parametrize(("order", "message"), [
    ({"order_id": "O1", "number": "123", "window_start": 5, "window_end": 1}, "ends before"),
    ({"order_id": "O1", "number": "123", "window_start": 1, "window_end": 2, "status": "gone"},
     r"orders\[0\]\.status 'gone'"),
    ({"order_id": "O1", "window_start": 1, "window_end": 2}, r"orders\[0\]\.number must be"),
    ({"order_id": "O1", "number": "123", "window_start": "soon", "window_end": 2},
     r"orders\[0\]\.window_start must be a whole number"),
    ({"order_id": "O1", "number": "123", "window_start": 1, "window_end": 2, "colour": "red"},
     r"unknown field\(s\) \['colour'\]"),
    ({"order_id": "O1", "number": "12", "window_start": 1, "window_end": 2}, "3-8 digits"),
])
def test_bad_orders_are_refused(order: dict[str, object], message: str) -> None:
    """GIVEN an order with its window reversed, an unknown status, no number, a text time,
    or a number that is not 3-8 digits
    WHEN decoded
    THEN a ContractError names the order."""
    with pytest.raises(ContractError, match=message):
        decode_orders({"orders": [order]})


def test_an_order_named_twice_is_refused() -> None:
    """GIVEN an orders body naming O1 twice
    WHEN decoded
    THEN a ContractError says so."""
    o = {"order_id": "O1", "number": "123", "window_start": 1, "window_end": 2}
    with pytest.raises(ContractError, match="twice"):
        decode_orders({"orders": [o, o]})
