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
    ABSENT = "absent"
    ERROR = "error"
    UNKNOWN = "unknown"

    @classmethod
    def parse(cls, value: object) -> DeviceState:
        """The state named by ``value``; anything unrecognised is :attr:`UNKNOWN`."""
        try:
            return cls(str(value))
        except ValueError:
            return cls.UNKNOWN

    @property
    def healthy(self) -> bool:
        """Whether the cashier needs to do nothing about it."""
        return self in (DeviceState.READY, DeviceState.ABSENT)


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

    Read: ``store_id``, ``device_id``, ``store_name``, ``now``, ``clock_trusted``,
    ``config_version``, ``sync.{online, last_contact_at, backlog}``,
    ``printer.{state, jobs_waiting}``, ``scanner.state``, ``camera.state``.
    """

    store_id: str = ""
    device_id: str = ""
    store_name: str = ""
    now: float | None = None
    online: bool = False
    last_contact_at: float | None = None
    backlog: int = 0
    printer: DeviceState = DeviceState.UNKNOWN
    jobs_waiting: int = 0
    scanner: DeviceState = DeviceState.UNKNOWN
    camera: DeviceState = DeviceState.UNKNOWN
    clock_trusted: bool = False
    config_version: int = 0
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Status:
        """Build from the daemon's status dict."""
        sync, printer = _dict(d.get("sync")), _dict(d.get("printer"))
        return cls(
            store_id=str(d.get("store_id") or ""),
            device_id=str(d.get("device_id") or ""),
            store_name=str(d.get("store_name") or ""),
            now=_float(d.get("now")),
            online=bool(sync.get("online")),
            last_contact_at=_float(sync.get("last_contact_at")),
            backlog=_int(sync.get("backlog")),
            printer=DeviceState.parse(printer.get("state")),
            jobs_waiting=_int(printer.get("jobs_waiting")),
            scanner=DeviceState.parse(_dict(d.get("scanner")).get("state")),
            camera=DeviceState.parse(_dict(d.get("camera")).get("state")),
            clock_trusted=bool(d.get("clock_trusted")),
            config_version=_int(d.get("config_version")),
            raw=d,
        )

    def merged(self, topic: str, data: dict[str, Any]) -> Status:
        """The status with a ``sync`` or ``device`` event folded in.

        A ``device`` event is ``{"device": "printer"|"scanner"|"camera", "state": ...,
        "jobs_waiting"?: n}``; a ``sync`` event carries the ``sync`` section's fields.
        """
        d = dict(self.raw)
        if topic == "sync":
            d["sync"] = {**_dict(d.get("sync")), **data}
        elif topic == "device" and data.get("device") in ("printer", "scanner", "camera"):
            name = str(data["device"])
            d[name] = {**_dict(d.get(name)), **{k: v for k, v in data.items() if k != "device"}}
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

    Read: ``order_id``, ``number``, ``status`` (waiting|collected|cancelled|late),
    ``late`` (bool, the daemon's judgement), ``window_start``, ``window_end``,
    ``customer``, ``items``, ``collected_at``.
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
        if state is PickupState.WAITING and d.get("late"):
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
    """One recorded decision from ``Op.RECENT`` (a ``Verdict.to_dict()`` plus extras).

    Read: the verdict fields, ``till``, ``source``, ``voided_at``, ``voidable`` (bool:
    still inside the void window; the daemon's judgement, default true).
    """

    verdict: dict[str, Any]
    till: str
    source: str
    voided_at: float | None
    voidable: bool

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RecentDecision:
        """Build from one decision dict."""
        return cls(d, str(d.get("till") or ""), str(d.get("source") or ""),
                   _float(d.get("voided_at")), bool(d.get("voidable", True)))
