"""Small formatting helpers the widgets share: durations, device states, verdict views.

Only presentation: every decision comes from the daemon, every word from
:mod:`edge.i18n`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from edge import i18n
from edge.verdict import Verdict
from ui.model import DeviceState


def duration(seconds: float, lang: str) -> str:
    """``42秒`` / ``3m`` / ``2小时``: the largest whole unit."""
    s = max(0, int(seconds))
    if s < 60:
        return i18n.t("ui.dur.s", lang, n=s)
    if s < 3600:
        return i18n.t("ui.dur.m", lang, n=s // 60)
    if s < 86400:
        return i18n.t("ui.dur.h", lang, n=s // 3600)
    return i18n.t("ui.dur.d", lang, n=s // 86400)


def device(state: DeviceState, lang: str) -> str:
    """A device state in words."""
    return i18n.t("ui.dev." + state.value, lang)


def hhmm(ts: float | None) -> str:
    """Local ``HH:MM`` of a timestamp, or ``--:--``."""
    return "--:--" if ts is None else time.strftime("%H:%M", time.localtime(ts))


def source(name: str, lang: str) -> str:
    """Where a scan came from, in words: ``serial:/dev/ttyACM0`` reads 扫码枪.

    The daemon labels device scans ``kind:where``; the cashier needs the kind. Unknown
    sources are shown as given.
    """
    key = "ui.source." + name.split(":", 1)[0]
    return i18n.t(key, lang) if key in i18n.CATALOGUE else name


@dataclass(frozen=True, slots=True)
class VerdictView:
    """A verdict as the scan screen keeps it: the daemon's verdict and where it came from."""

    verdict: Verdict
    source: str = ""
    till: str = ""

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "") -> VerdictView:
        """From a ``scan`` result or a ``verdict`` event (``source``/``till`` optional)."""
        return cls(Verdict.from_dict(d), str(d.get("source") or source), str(d.get("till") or ""))

    def lines(self, lang: str) -> tuple[str, str, str]:
        """(headline, what, what to do), from the one catalogue."""
        return i18n.verdict_lines(self.verdict, lang)

    def short(self, lang: str) -> str:
        """One line for lists: ``15:02 通过 免费咖啡一杯``."""
        head, what, _advice = self.lines(lang)
        return f"{hhmm(self.verdict.decided_at)} {head} {what}"
