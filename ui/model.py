"""What the cashier UI reads from the daemon's answers: status, pickups, recent decisions.

The daemon owns every decision; these types only give its JSON a shape the widgets can
show. Parsing is lenient on purpose: a field the daemon does not send yet reads as
"unknown" on screen instead of crashing the counter. The fields read are listed in each
``from_dict`` and in ``docs/local-api.md`` (the status shape).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class DeviceState(enum.StrEnum):
    """A peripheral's state as the status bar shows it."""

    READY = "ready"
    NO_PAPER = "no_paper"
    COVER_OPEN = "cover_open"
    OFFLINE = "offline"
    ERROR = "error"
    STARTING = "starting"
    ABSENT = "absent"
    UNKNOWN = "unknown"

    @classmethod
    def parse(cls, part: object) -> DeviceState:
        """The state of a part object from the status (``{state, detail, ...}``).

        A device's own state wins when the daemon sends it (the printer's ``printer_state``:
        ``drivers.printer.PrinterState`` values; a scanner's or camera's ``device_state``:
        absent/connecting/ready/failed). Otherwise the supervisor's part state is mapped
        (running -> ready, failed -> error, stopped -> offline), and a failed printer whose
        detail names the paper or the cover is shown as such. Anything unrecognised is
        :attr:`UNKNOWN`.
        """
        d = _dict(part)
        for value in (d.get("printer_state"), d.get("device_state"), d.get("state")):
            value = _PART_STATES.get(str(value), value)
            try:
                state = cls(str(value))
            except ValueError:
                continue
            if state is cls.ERROR and "printer_state" not in d and "device_state" not in d:
                detail = str(d.get("detail") or "").lower()
                if "paper end" in detail or "no paper" in detail:
                    return cls.NO_PAPER
                if "cover open" in detail:
                    return cls.COVER_OPEN
            return state
        return cls.UNKNOWN

    @property
    def healthy(self) -> bool:
        """Whether the cashier needs to do nothing about it."""
        return self in (DeviceState.READY, DeviceState.ABSENT)


# The daemon supervisor's part states (edged.supervisor.PartState) in the cashier's terms.
_PART_STATES = {"running": "ready", "failed": "error", "stopped": "offline",
                "connecting": "starting"}


def _int(value: object, default: int = 0) -> int:
    try:
        return int(value)  # type: ignore[call-overload, no-any-return]
    except (TypeError, ValueError):
        return default


def _float(value: object) -> float | None:
    try:
        return None if value is None else float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True, slots=True)
class Status:
    """One status snapshot (``Op.STATUS`` result or ``Topic.STATUS`` event data).

    Read (``docs/local-api.md``): ``store_id``, ``device_id``, ``store_name``, ``clock``,
    ``clock_trusted``, ``config_version``, ``online``, ``last_contact``, ``backlog``,
    ``unconfirmed`` (sent, waiting for HQ's confirmation),
    ``alarm`` (the outbox crossed its limits: ``sync.service.SyncState``),
    ``printer.{state, printer_state?, detail, jobs_waiting}``, ``scanner.state``,
    ``camera.state``, ``last_error``, ``storage.full``.
    """

    store_id: str = ""
    device_id: str = ""
    store_name: str = ""
    now: float | None = None
    online: bool = False
    last_contact_at: float | None = None
    backlog: int = 0
    unconfirmed: int = 0  # sent, waiting for HQ's confirmation
    sync_alarm: bool = False
    printer: DeviceState = DeviceState.UNKNOWN
    jobs_waiting: int = 0
    printer_detail: str = ""
    scanner: DeviceState = DeviceState.UNKNOWN
    camera: DeviceState = DeviceState.UNKNOWN
    clock_trusted: bool = False
    config_version: int = 0
    last_error: str = ""
    storage_full: bool = False
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Status:
        """Build from the daemon's status dict."""
        printer = _dict(d.get("printer"))
        return cls(
            store_id=str(d.get("store_id") or ""),
            device_id=str(d.get("device_id") or ""),
            store_name=str(d.get("store_name") or ""),
            now=_float(d.get("clock")),
            online=bool(d.get("online")),
            last_contact_at=_float(d.get("last_contact")),
            backlog=_int(d.get("backlog")),
            unconfirmed=_int(d.get("unconfirmed")),
            sync_alarm=bool(d.get("alarm")),
            printer=DeviceState.parse(printer),
            jobs_waiting=_int(printer.get("jobs_waiting")),
            printer_detail=str(printer.get("detail") or ""),
            scanner=DeviceState.parse(d.get("scanner")),
            camera=DeviceState.parse(d.get("camera")),
            clock_trusted=bool(d.get("clock_trusted")),
            config_version=_int(d.get("config_version")),
            last_error=str(d.get("last_error") or ""),
            storage_full=bool(_dict(d.get("storage")).get("full")),
            raw=d,
        )

    def merged(self, topic: str, data: dict[str, Any]) -> Status:
        """The status with a ``sync`` or ``device`` event folded in.

        A ``device`` event is a part object (``{"name": "printer", "state": ..., ...}``);
        a ``sync`` event carries ``online``, ``last_contact``, ``backlog`` and ``alarm``.
        """
        d = dict(self.raw)
        if topic == "sync":
            d.update({k: v for k, v in data.items() if k in ("online", "last_contact",
                                                                 "backlog", "alarm",
                                                                 "unconfirmed")})
        elif topic == "device" and data.get("name") in ("printer", "scanner", "camera", "sync"):
            name = str(data["name"])
            d[name] = {**_dict(d.get(name)), **data}
        return Status.from_dict(d)


class PickupState(enum.StrEnum):
    """How a pickup order shows in the list."""

    WAITING = "waiting"
    COLLECTED = "collected"
    CANCELLED = "cancelled"
    LATE = "late"


@dataclass(frozen=True, slots=True)
class PickupRow:
    """One of today's pickup orders (``Op.PICKUPS`` result's ``orders`` items).

    Read: ``order_id``, ``number``, ``status`` (waiting|collected|cancelled),
    ``window_start``, ``window_end``, ``customer``, ``items``, ``collected_at``, and
    ``late`` (the daemon's judgement by its own decision time; the UI does not use its
    clock for it).
    """

    order_id: str
    number: str
    state: PickupState
    window_start: float | None
    window_end: float | None
    customer: str
    items: str
    collected_at: float | None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PickupRow:
        """Build from one order dict."""
        try:
            state = PickupState(str(d.get("status")))
        except ValueError:
            state = PickupState.WAITING
        if state is PickupState.WAITING and d.get("late") is True:
            state = PickupState.LATE
        return cls(str(d.get("order_id") or ""), str(d.get("number") or ""), state,
                   _float(d.get("window_start")), _float(d.get("window_end")),
                   str(d.get("customer") or ""), str(d.get("items") or ""),
                   _float(d.get("collected_at")))

    def matches(self, needle: str) -> bool:
        """Whether a search for ``needle`` (number prefix, or part of a name) finds it."""
        needle = needle.strip().lower()
        return (not needle or self.number.startswith(needle) or needle in self.customer.lower()
                or needle in self.items.lower())


@dataclass(frozen=True, slots=True)
class RecentDecision:
    """One recorded decision from ``Op.RECENT``.

    Read: ``decision_id``, ``at``, ``kind``, ``code_id``, ``accepted``, ``reason``,
    ``clock_trusted``, ``facts``, ``till``, ``source``, ``voided_at``, and ``voidable``
    when the daemon sends it (still inside the void window; default true: the daemon
    refuses a void outside it either way). ``verdict`` is the row in
    ``Verdict.to_dict()`` form, for the same words as the scan screen.
    """

    verdict: dict[str, Any]
    till: str
    source: str
    voided_at: float | None
    voidable: bool

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RecentDecision:
        """Build from one decision dict."""
        verdict = {**d, "decided_at": _float(d.get("decided_at", d.get("at"))) or 0.0,
                   "clock_trusted": bool(d.get("clock_trusted", True))}
        return cls(verdict, str(d.get("till") or ""), str(d.get("source") or ""),
                   _float(d.get("voided_at")), bool(d.get("voidable", True)))
