"""The slips the box prints, as documents: card, pickup, redemption, report, test page.

Words come from :mod:`edge.i18n`; layout is neutral (the driver fits it to the paper).
"""

from __future__ import annotations

import enum
import re
import time
from collections.abc import Sequence
from typing import Any

from edge import i18n
from edge.printdoc import QR, Align, Block, Cut, Document, Feed, Rule, Text
from edge.verdict import Verdict

TEST_PAGE_QR = "HTTPS://Q.EDGE.CN/TEST-PAGE"
TEST_SIMPLIFIED = "扫码入群 领新人礼"
TEST_TRADITIONAL = "掃碼入群 領新人禮"
TEST_ASCII = "ABC xyz 0123456789 -+=/#"


class JobKind(enum.StrEnum):
    """The ``job_kind`` of each slip (stored with every queued job)."""

    CARD = "card"
    PICKUP = "pickup"
    REDEMPTION = "redemption"
    REPORT = "report"
    TEST = "test"


def _date(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def _end() -> list[Block]:
    return [Feed(3), Cut()]


def card_slip(store_name: str, headline: str, gift: str, url: str, serial: int,
              issued_at: float, footer: str, lang: str = i18n.DEFAULT_LANG) -> Document:
    """A packaging card: store, headline, gift line, the card QR, serial and date, footer."""
    blocks: list[Block] = []
    if store_name:
        blocks += [Text(store_name, 2, Align.CENTER, bold=True), Rule()]
    if headline:
        blocks.append(Text(headline, 2, Align.CENTER, bold=True))
    if gift:
        blocks.append(Text(gift, 1, Align.CENTER))
    blocks.append(QR(url))
    blocks.append(Text(i18n.t("slip.card.serial", lang, serial=serial, date=_date(issued_at)),
                       1, Align.CENTER))
    if footer:
        blocks.append(Text(footer, 1, Align.CENTER))
    return Document(JobKind.CARD, blocks + _end())


def _items(items: str | Sequence[str]) -> list[str]:
    if isinstance(items, str):
        return [p for p in re.split(r"[\s,;、，；]+", items) if p]
    return [str(i) for i in items if str(i).strip()]


def pickup_slip(order_id: str, number: str, items: str | Sequence[str], customer: str,
                window_start: float, window_end: float,
                lang: str = i18n.DEFAULT_LANG) -> Document:
    """A pickup slip: the big pickup number, order, items (one per line), customer, window.

    ``items`` is the order's item text (split on spaces and commas) or a list of items.
    """
    blocks: list[Block] = [
        Text(i18n.t("slip.pickup.title", lang), 1, Align.CENTER, bold=True),
        Text(i18n.t("slip.pickup.number", lang, number=number), 2, Align.CENTER, bold=True),
        Rule(),
        Text(i18n.t("slip.pickup.order", lang, order_id=order_id)),
        Text(i18n.t("slip.pickup.items", lang)),
    ]
    blocks += [Text("  " + item) for item in _items(items)]
    if customer:
        blocks.append(Text(i18n.t("slip.pickup.customer", lang, customer=customer)))
    blocks.append(Text(i18n.t("slip.pickup.window", lang, start=i18n.when(window_start),
                              end=i18n.when(window_end))))
    return Document(JobKind.PICKUP, blocks + _end())


def redemption_slip(verdict: Verdict, till: str = "", lang: str = i18n.DEFAULT_LANG) -> Document:
    """A redemption slip: verdict headline, the benefit (or reason), code, time, till."""
    head, what, advice = i18n.verdict_lines(verdict, lang)
    blocks: list[Block] = [
        Text(i18n.t("slip.redeem.title", lang), 1, Align.CENTER, bold=True),
        Text(head, 2, Align.CENTER, bold=True),
        Text(what, 1, Align.CENTER),
    ]
    if advice:
        blocks.append(Text(advice, 1, Align.CENTER))
    blocks.append(Rule())
    if verdict.code_id:
        blocks.append(Text(i18n.t("slip.redeem.code", lang, code_id=verdict.code_id)))
    blocks.append(Text(i18n.t("slip.redeem.time", lang, when=_date(verdict.decided_at))))
    if not verdict.clock_trusted:
        blocks.append(Text(i18n.t("clock_unsure", lang)))
    if till:
        blocks.append(Text(i18n.t("slip.redeem.till", lang, till=till)))
    if verdict.decision_id is not None:
        blocks.append(Text(i18n.t("slip.redeem.decision", lang,
                                  decision_id=verdict.decision_id)))
    return Document(JobKind.REDEMPTION, blocks + _end())


def _scalar(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def report_slip(report: dict[str, Any], lang: str = i18n.DEFAULT_LANG,
                printed_at: float | None = None) -> Document:
    """A report as ``key: value`` lines; nested tables indent, lists print one item a line.

    ``day_start``/``day_end`` (timestamps), when present, become the period line.
    """
    blocks: list[Block] = [Text(i18n.t("slip.report.title", lang), 2, Align.CENTER, bold=True)]
    if "day_start" in report and "day_end" in report:
        blocks.append(Text(i18n.t("slip.report.period", lang,
                                  start=i18n.when(report["day_start"]),
                                  end=i18n.when(report["day_end"])), 1, Align.CENTER))
    blocks.append(Rule())
    for key, value in report.items():
        if key in ("day_start", "day_end"):
            continue
        if isinstance(value, dict):
            blocks.append(Text(f"{key}:", bold=True))
            blocks += [Text(f"  {k}: {_scalar(v)}") for k, v in value.items()]
        elif isinstance(value, list):
            blocks.append(Text(f"{key}: {len(value)}", bold=True))
            blocks += [Text("  " + (", ".join(f"{k}={_scalar(v)}" for k, v in item.items())
                                    if isinstance(item, dict) else _scalar(item)))
                       for item in value]
        else:
            blocks.append(Text(f"{key}: {_scalar(value)}"))
    if printed_at is not None:
        blocks += [Rule(), Text(i18n.t("slip.printed_at", lang, when=_date(printed_at)))]
    return Document(JobKind.REPORT, blocks + _end())


def test_page(encoding_name: str) -> Document:
    """The printer test page: both scripts of Chinese, ASCII, both text sizes and a QR.

    A line the printer's encoding cannot hold (simplified Chinese on a Big5 printer) is
    printed as an image by the driver, so the page also shows that fallback at work.
    """
    return Document(JobKind.TEST, [
        Text(i18n.t("slip.test.title", "zh") + " / " + i18n.t("slip.test.title", "en"),
             1, Align.CENTER, bold=True),
        Text(i18n.t("slip.test.encoding", "en", encoding=encoding_name), 1, Align.CENTER),
        Rule(),
        Text(TEST_ASCII),
        Text(TEST_SIMPLIFIED),
        Text(TEST_TRADITIONAL),
        Text(TEST_TRADITIONAL, 2, Align.CENTER, bold=True),
        Text("RIGHT", 1, Align.RIGHT),
        QR(TEST_PAGE_QR),
        *_end(),
    ])


def enrolment_card(store: str, store_name: str, device: str, encoding_name: str) -> Document:
    """The test card a newly provisioned box prints: whose box it is, then the test page."""
    title = i18n.t("slip.enrolled.title", "zh") + " / " + i18n.t("slip.enrolled.title", "en")
    return Document(JobKind.TEST, [
        Text(title, 1, Align.CENTER, bold=True),
        Text(f"{store_name} {store}".strip(), 1, Align.CENTER),
        Text(device, 1, Align.CENTER),
        *test_page(encoding_name).blocks[1:],
    ])
