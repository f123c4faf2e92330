"""The status bar, always visible: HQ link, backlog, printer, scanner, camera, clock, config."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from edge import i18n
from ui.model import DeviceState, Status
from ui.words import device, duration

_OK, _WARN, _BAD = "status-ok", "status-warn", "status-bad"


class StatusBar(Static):
    """One line of state segments; a segment needing attention is coloured."""

    def __init__(self, *, id: str | None = None) -> None:
        """An empty bar until the first status arrives."""
        super().__init__(id=id)
        self.status: Status | None = None
        self.link_up = False

    def paint(self, status: Status | None, link_up: bool, now: float, lang: str) -> None:
        """Redraw from the latest daemon status and whether the daemon answers."""
        self.status, self.link_up = status, link_up
        text = Text(no_wrap=True, overflow="ellipsis")
        if not link_up or status is None:
            text.append(f" {i18n.t('ui.status.service_down', lang)} ", style="bold white on red")
            if status is None:
                self.update(text)
                return
            text.append(" ")
        s = status
        segs = _Segments(text, stale=not link_up)
        if s.storage_full:  # first: until space is freed no scan can be recorded
            _add(segs, i18n.t("ui.status.storage_full", lang), "bold white on red")
        if s.online:
            seg = i18n.t("ui.status.online", lang)
            _add(segs, seg, "bold black on green")
        else:
            age = (i18n.t("ui.status.ago", lang, age=duration(now - s.last_contact_at, lang))
                   if s.last_contact_at else i18n.t("ui.status.never", lang))
            _add(segs, f"{i18n.t('ui.status.offline', lang)} {age}", "bold white on red")
        backlog = i18n.t("ui.status.backlog", lang, n=s.backlog)
        if s.sync_alarm:
            _add(segs, f"{backlog} {i18n.t('ui.status.alarm', lang)}", "bold white on red")
        else:
            _add(segs, backlog, "" if s.online or s.backlog == 0 else "bold black on yellow")
        if s.unconfirmed:  # sent, waiting for HQ's confirmation (distinct from the backlog)
            _add(segs, i18n.t("ui.status.unconfirmed", lang, n=s.unconfirmed), "")
        printer = f"{i18n.t('ui.status.printer', lang)} {device(s.printer, lang)}"
        if s.jobs_waiting:
            printer += " " + i18n.t("ui.status.jobs", lang, n=s.jobs_waiting)
        _add(segs, printer, _device_style(s.printer, s.jobs_waiting))
        _add(segs, f"{i18n.t('ui.status.scanner', lang)} {device(s.scanner, lang)}",
             _device_style(s.scanner, 0))
        _add(segs, f"{i18n.t('ui.status.camera', lang)} {device(s.camera, lang)}",
             _device_style(s.camera, 0))
        _add(segs, i18n.t("ui.status.clock_ok" if s.clock_trusted else "ui.status.clock_bad",
                          lang), "" if s.clock_trusted else "bold black on yellow")
        _add(segs, i18n.t("ui.status.config", lang, v=s.config_version), "")
        self.update(segs.text)


class _Segments:
    """The bar's text; when the daemon is gone the last-known state is shown dimmed."""

    def __init__(self, text: Text, stale: bool) -> None:
        self.text, self.stale = text, stale


def _add(segments: _Segments, segment: str, style: str) -> None:
    # Every segment carries one space each side: plain ones read as separated by two
    # spaces, coloured ones as chips. No separator glyphs (the console font lacks most).
    segments.text.append(f" {segment} ", style="dim" if segments.stale else style)


def _device_style(state: DeviceState, jobs: int) -> str:
    if state in (DeviceState.NO_PAPER, DeviceState.OFFLINE, DeviceState.ERROR,
                 DeviceState.COVER_OPEN):
        return "bold white on red"
    if state is DeviceState.UNKNOWN or jobs:
        return "bold black on yellow"
    return ""
