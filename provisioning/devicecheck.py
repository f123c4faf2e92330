"""After ``edge provision``: the printer and scanner checked, and a test card printed.

The printer, scanner and camera are judged by ``edge doctor``'s own checks; when the
printer is ready (or answers without a status), the enrolment test card
(``edge.slips.enrolment_card``: the store, the device, both scripts of Chinese, a QR) is
printed straight to it. A missing or broken device is a finding with words and a fix,
never an exception: provisioning has already succeeded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from drivers.escpos_render import RenderError, render
from drivers.printer import printer_from_config
from drivers.printer_profile import ProfileError
from drivers.printer_transport.base import PrinterError
from edge import i18n, slips
from edge.box import Box
from provisioning import doctor


@dataclass
class DeviceReport:
    """The device findings and the test card's fate."""

    findings: list[doctor.Finding] = field(default_factory=list)
    card_printed: bool = False
    card_problem: str = ""  # why the test card was not printed ("" when it was, or no printer)

    def lines(self, lang: str = i18n.DEFAULT_LANG) -> list[str]:
        """What to tell the installer."""
        out = doctor.report_lines(self.findings, lang)
        if self.card_printed:
            out.append(i18n.t("provision.card_printed", lang))
        elif self.card_problem:
            out.append(i18n.t("provision.card_failed", lang, detail=self.card_problem))
        return out


def check_and_print(home: Path, timeout: float = doctor.PROBE_TIMEOUT_S) -> DeviceReport:
    """Check the box's devices; print the test card when the printer can take it."""
    report = DeviceReport(doctor.devices(home, timeout))
    printer_ok = any(f.check == "printer" and f.outcome in (doctor.Outcome.OK,
                                                            doctor.Outcome.WARN)
                     for f in report.findings)
    if not printer_ok:
        return report
    box = Box.open(home)
    try:
        table = box.config.raw.get("printer", {})
        printer, profile = printer_from_config(table, home)
        try:
            doc = slips.enrolment_card(box.config.store_id, box.store_name(),
                                       box.config.device_id, profile.encoding.value)
            printer.send(render(doc, profile))
            report.card_printed = True
        finally:
            printer.close()
    except (PrinterError, ProfileError, RenderError, OSError) as exc:
        report.card_problem = str(exc) or type(exc).__name__
    finally:
        box.close()
    return report
