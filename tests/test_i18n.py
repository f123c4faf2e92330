from __future__ import annotations

import pytest

from edge import i18n
from edge.verdict import Reason, Verdict


def test_every_entry_has_both_languages() -> None:
    """GIVEN the catalogue THEN every key has a Chinese and an English text."""
    missing = [k for k, v in i18n.CATALOGUE.items() if set(v) != set(i18n.LANGS)]
    assert missing == []


@pytest.mark.parametrize("lang", i18n.LANGS)
@pytest.mark.parametrize("reason", list(Reason))
def test_every_reason_renders(reason: Reason, lang: str) -> None:
    """GIVEN any reason with empty facts WHEN rendered THEN a non-empty line, no KeyError."""
    v = Verdict(False, reason, "coupon", "C:X", 0.0, True, {})
    head, what, _ = i18n.verdict_lines(v, lang)
    assert head == i18n.t("rejected", lang) and what


@pytest.mark.parametrize("benefit, zh, en", [
    ({"kind": "free_item", "value": 1, "item": "咖啡一杯"}, "免费咖啡一杯", "Free 咖啡一杯"),
    ({"kind": "percent_price", "value": 95}, "95折", "5% off"),
    ({"kind": "percent_price", "value": 80}, "8折", "20% off"),
    ({"kind": "amount_off", "value": 500}, "减5元", "5 yuan off"),
    ({"kind": "amount_off", "value": 250}, "减2.5元", "2.5 yuan off"),
])
def test_benefit_words(benefit: dict[str, object], zh: str, en: str) -> None:
    """GIVEN a benefit THEN the cashier reads it in plain words in both languages."""
    assert i18n.benefit_text(benefit, "zh") == zh
    assert i18n.benefit_text(benefit, "en") == en
