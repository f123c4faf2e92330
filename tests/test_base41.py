import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge import base41


@given(st.binary(max_size=300))
def test_roundtrip(data: bytes) -> None:
    """GIVEN any bytes WHEN encoded and decoded THEN they come back, in QR-alphanumeric text."""
    text = base41.encode(data)
    assert base41.decode(text) == data
    assert set(text) <= set(base41.ALPHABET)
    assert len(text) == len(data) // 2 * 3 + len(data) % 2 * 2


def test_alphabet_is_url_path_safe_and_qr_alphanumeric() -> None:
    """GIVEN the alphabet THEN it avoids space, %, + and / and stays in QR's 45-char set."""
    qr_alnum = set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")
    assert len(base41.ALPHABET) == 41
    assert set(base41.ALPHABET) <= qr_alnum
    assert not set(" %+/") & set(base41.ALPHABET)


@pytest.mark.parametrize("text, why", [
    ("A", "whole number"),
    ("ab", "not base41"),
    ("%%%", "not base41"),
    ("::::", "whole number"),
    (":::", "out of range"),  # 40 + 40*41 + 40*1681 > 65535
    ("::", "out of range"),  # 40 + 40*41 > 255
])
def test_rejects(text: str, why: str) -> None:
    """GIVEN malformed or non-canonical text WHEN decoded THEN a Base41Error says why."""
    with pytest.raises(base41.Base41Error, match=why):
        base41.decode(text)
