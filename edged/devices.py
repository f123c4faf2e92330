"""The daemon's glue to the drivers: their config checks, and the printer service.

Each driver owns its table of ``edge.toml`` (``SerialScannerConfig.from_toml``,
``CameraConfig.from_toml``, ``PrinterProfile.from_config`` plus the printer URL); this module
runs those checks up front so a bad key stops ``edge run`` with one line (exit 2) instead of
leaving a part failing, and turns driver errors into :class:`~edge.config.ConfigError`.

OpenCV is not imported here: ``drivers.camera`` imports it only when a camera runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drivers.camera import CameraConfig
from drivers.printer import PRINTABLE, PrinterConfigError, PrinterState, open_printer
from drivers.printer_profile import PROFILE_KEYS, PrinterProfile, ProfileError
from drivers.printqueue import PrintQueue, QueueError
from drivers.scan import ScannerConfigError
from drivers.scanner_serial import SerialScannerConfig
from drivers.spooler import Spooler
from edge import slips
from edge.cards import IssuedCard
from edge.config import CardTexts, ConfigError
from edge.printdoc import Document
from edge.verdict import Verdict
from edged.config import DaemonConfig
from edged.printing import PrintError, StateCallback

log = logging.getLogger("edge.devices")

PRINTER_KEYS = ("url", "absent_after", *PROFILE_KEYS)


@dataclass(frozen=True, slots=True)
class Devices:
    """The checked driver configs of the parts that are configured (None: absent)."""

    scanner: SerialScannerConfig | None
    camera: CameraConfig | None
    profile: PrinterProfile | None


def check(cfg: DaemonConfig, scanner_port: str | None = None) -> Devices:
    """Have each driver check its table; ``scanner_port`` stands in for a simulated port.

    Raises:
        ConfigError: a bad or unknown key in ``[scanner]``, ``[camera]`` or ``[printer]``.
    """
    scanner = camera = profile = None
    try:
        if cfg.scanner or scanner_port:  # a table without a port is a mistake to report
            table = dict(cfg.scanner)
            if scanner_port:
                table["port"] = scanner_port
            scanner = SerialScannerConfig.from_toml(table)
        if cfg.camera_enabled:
            camera = CameraConfig.from_toml(dict(cfg.camera))
    except ScannerConfigError as exc:
        raise ConfigError(str(exc)) from None
    if cfg.printer_url:
        unknown = sorted(set(cfg.printer) - set(PRINTER_KEYS))
        if unknown:
            raise ConfigError(f"printer.{unknown[0]} is not a known setting (known: "
                              f"{', '.join(PRINTER_KEYS)}, redemption_slip, card_after_sale)")
        try:
            profile = PrinterProfile.from_config(cfg.printer, cfg.box.home)
            open_printer(cfg.printer_url, cfg.box.home)  # checks the URL; opens nothing
        except (ProfileError, PrinterConfigError) as exc:
            raise ConfigError(f"printer: {exc}") from None
    return Devices(scanner, camera, profile)


class QueuePrinting:
    """The daemon's :class:`~edged.printing.PrintService` over the queue and the spooler.

    Slips go to the persistent queue; the spooler prints them when the printer can.
    """

    def __init__(self, cfg: DaemonConfig, profile: PrinterProfile,
                 lang: str = "zh") -> None:
        """Open the queue (``<home>/printq.sqlite``) and the printer of ``cfg``.

        Raises:
            PrintError: the queue file or the printer URL cannot be used.
        """
        self.cfg, self.profile, self.lang = cfg, profile, lang
        home: Path = cfg.box.home
        try:
            self.queue = PrintQueue.in_home(home)
            self.printer = open_printer(cfg.printer_url, home)
        except (QueueError, PrinterConfigError) as exc:
            raise PrintError(str(exc)) from None
        if self.queue.recovered:
            log.warning("print queue: %d job(s) interrupted mid-print at the last stop; "
                        "not sent again (reprint if the slip is missing)", self.queue.recovered)
        self.spooler: Spooler | None = None
        self.state = PrinterState.UNKNOWN

    def _enqueue(self, doc: Document) -> int:
        try:
            job = self.queue.enqueue(doc)
        except QueueError as exc:
            raise PrintError(f"slip not queued: {exc}") from None
        if self.spooler is not None:
            self.spooler.kick()
        return job

    def card(self, card: IssuedCard, texts: CardTexts, store_name: str) -> int:
        """Queue a packaging card with the store's current texts; returns the job id."""
        return self._enqueue(slips.card_slip(store_name, texts.headline, texts.gift,
                                             card.url, card.serial, card.issued_at,
                                             texts.footer, self.lang))

    def redemption(self, verdict: Verdict, till: str = "") -> int:
        """Queue a redemption slip; returns the job id."""
        return self._enqueue(slips.redemption_slip(verdict, till, self.lang))

    def report(self, figures: dict[str, Any]) -> int:
        """Queue a day report; returns the job id."""
        return self._enqueue(slips.report_slip(figures, self.lang))

    def reprint(self, count: int) -> list[int]:
        """Queue again the last ``count`` finished jobs; returns the new job ids."""
        try:
            ids = self.queue.reprint_last(count)
        except (ValueError, QueueError) as exc:
            raise PrintError(str(exc)) from None
        if self.spooler is not None:
            self.spooler.kick()
        return ids

    def waiting(self) -> int:
        """Jobs not yet printed (-1 when the queue cannot be read)."""
        try:
            return self.queue.waiting()
        except QueueError:
            return -1

    async def run(self, on_state: StateCallback) -> None:
        """Spool until cancelled; ``on_state(state, ok, detail)`` on every change."""
        def changed(state: PrinterState, waiting: int, detail: str) -> None:
            self.state = state
            on_state(state.value, state in PRINTABLE, detail, waiting)

        self.spooler = Spooler(self.queue, self.printer, self.profile, changed)
        try:
            await self.spooler.run()
        finally:
            self.spooler = None

    def close(self) -> None:
        """Close the queue file (the spooler closes the printer when it stops)."""
        self.queue.close()

