"""Property tests: any input at all gives a verdict, never an exception, never a false accept."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge import base41, tokens
from edge.box import Box
from edge.keys import SigningKey
from tests.factory import NOW, Clock, Hq, make_box

HQ = Hq(SigningKey("HQ1", bytes.fromhex("11" * 32)))
ROGUE = Hq(SigningKey("HQ1", bytes.fromhex("22" * 32)))  # same key id, different key

ids = st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZ0123456789-", min_size=1, max_size=20)
coupons = st.builds(
    tokens.Coupon, key_id=st.just("HQ1"), coupon_id=ids, campaign_id=ids,
    channel=st.sampled_from(tokens.Channel),
    benefit=st.builds(tokens.Benefit, st.sampled_from(tokens.BenefitKind),
                      st.integers(0, 100_000), st.text(max_size=8)),
    valid_from=st.integers(0, int(NOW)), valid_until=st.integers(int(NOW), 2**32 - 1),
    max_uses=st.integers(1, 5), stores=st.lists(ids, max_size=3).map(tuple))


@pytest.fixture(scope="module")
def shared_box(tmp_path_factory: pytest.TempPathFactory) -> Box:
    return make_box(Path(tmp_path_factory.mktemp("prop")) / "box", HQ, Clock())


def _issued(code: str) -> bytes:
    parsed = tokens.parse(code)
    assert isinstance(parsed, tokens.Signed)
    return parsed.signed


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.text(max_size=600), st.binary(max_size=600),
                 st.text(alphabet=base41.ALPHABET, max_size=400).map(lambda s: "SEC1" + s),
                 st.text(alphabet=base41.ALPHABET, max_size=400).map(lambda s: "SEP1" + s)))
def test_arbitrary_input_never_raises_never_accepts(shared_box: Box, text: str | bytes) -> None:
    """GIVEN any string or bytes (including well-prefixed base41 noise) WHEN checked
    THEN a rejection comes back, never an exception and never an accept."""
    v = shared_box.counter.check(text)
    assert not v.accepted and v.reason is not None


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(coupon=coupons, data=st.data())
def test_mutated_and_forged_codes_are_never_accepted(shared_box: Box, coupon: tokens.Coupon,
                                                     data: st.DataObject) -> None:
    """GIVEN a genuine HQ coupon WHEN one character is changed, or the same token is signed
    by a rogue key reusing HQ's key id THEN only a code whose signed bytes are the genuine
    ones can ever be accepted."""
    genuine = tokens.assemble(coupon, HQ.key.sign(tokens.signing_bytes(coupon)))
    pos = data.draw(st.integers(4, len(genuine) - 1))
    ch = data.draw(st.sampled_from(base41.ALPHABET).filter(lambda c: c != genuine[pos]))
    mutated = genuine[:pos] + ch + genuine[pos + 1:]
    forged = tokens.assemble(coupon, ROGUE.key.sign(tokens.signing_bytes(coupon)))
    for code in (mutated, forged):
        v = shared_box.counter.check(code)
        if v.accepted:
            assert _issued(code) == tokens.signing_bytes(coupon)
            assert code != forged
    assert shared_box.counter.check(forged).reason is not None
