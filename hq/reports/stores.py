"""The HQ report: per store, what its boxes did and how their sync stands.

Figures come from ``hq_event`` (event time ``at``, filtered by ``since``) and the state
tables (presence, gaps, conflicts, ingest rejects), all with plain portable SQL.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from edge.events import EventType
from hq.db import Database


@dataclass(slots=True)
class DeviceStatus:
    """A device's sync state as HQ last saw it."""

    device: str
    state: str | None
    last_seen: float | None
    backlog: int | None
    software: str | None
    config_version: int | None
    reported_version: int | None
    max_seq: int
    alarm: bool | None = None  # the box's outbox alarm (presence)
    data_versions: dict[str, int] | None = None  # applied version per kind (reported)
    # Delivery (hq_delivery): HQ holds every event from 1 to ``held``; the box's newest seq
    # and its events sent but not yet confirmed (as its presence said, waiting for HQ's
    # confirmation, apart from ``backlog``, which waits for the broker); the range HQ
    # asks the box to resend, if any, and how often it asked.
    held: int | None = None
    last_seq: int | None = None
    unconfirmed: int | None = None
    asking: tuple[int, int] | None = None
    asks: int = 0
    clock_trusted: bool | None = None  # the box's own word on its clock (presence)


@dataclass(slots=True)
class Gap:
    """Missing sequence numbers of a device; ``missing`` 0 once healed."""

    device: str
    seq_from: int
    seq_to: int
    missing: int
    found_at: float
    filled_at: float | None


@dataclass(slots=True)
class StoreReport:
    """One store's figures."""

    store: str
    events: int = 0
    cards_printed: int = 0
    redemptions_by_campaign: dict[str, int] = field(default_factory=dict)
    voids: int = 0
    pickups_collected: int = 0
    rejects_by_reason: dict[str, int] = field(default_factory=dict)
    devices: list[DeviceStatus] = field(default_factory=list)
    open_gaps: list[Gap] = field(default_factory=list)
    healed_gaps: list[Gap] = field(default_factory=list)
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    ingest_rejects: dict[str, int] = field(default_factory=dict)


def build(db: Database, since: float = 0.0) -> list[StoreReport]:
    """The report for every store HQ knows, sorted by store id."""
    stores: dict[str, StoreReport] = {}

    def get(store: str) -> StoreReport:
        return stores.setdefault(store, StoreReport(store))

    for (store,) in db.query("SELECT store FROM hq_store"):
        get(store)
    for store, n in db.query("SELECT store, COUNT(*) FROM hq_event WHERE at>=? GROUP BY store",
                             (since,)):
        get(store).events = int(n)
    for store, n in db.query("SELECT store, COUNT(*) FROM hq_event WHERE at>=? AND type=?"
                             " GROUP BY store", (since, EventType.CARD_ISSUED.value)):
        get(store).cards_printed = int(n)
    for store, n in db.query("SELECT store, COUNT(*) FROM hq_event WHERE at>=? AND type=?"
                             " AND kind='coupon' GROUP BY store", (since, EventType.VOID.value)):
        get(store).voids = int(n)
    for store, campaign, n in db.query(
            "SELECT store, campaign_id, COUNT(*) FROM hq_event WHERE at>=? AND type=?"
            " AND accepted=1 AND kind='coupon' GROUP BY store, campaign_id ORDER BY campaign_id",
            (since, EventType.DECISION.value)):
        get(store).redemptions_by_campaign[campaign or "-"] = int(n)
    for store, n in db.query("SELECT store, COUNT(*) FROM hq_event WHERE at>=? AND type=?"
                             " AND accepted=1 AND kind='pickup' GROUP BY store",
                             (since, EventType.DECISION.value)):
        get(store).pickups_collected = int(n)
    for store, reason, n in db.query(
            "SELECT store, reason, COUNT(*) FROM hq_event WHERE at>=? AND type=? AND accepted=0"
            " GROUP BY store, reason ORDER BY reason", (since, EventType.DECISION.value)):
        get(store).rejects_by_reason[reason or "-"] = int(n)
    for store, device in device_statuses(db):
        get(store).devices.append(device)
    for row in db.query("SELECT store, device, seq_from, seq_to, missing, found_at, filled_at"
                        " FROM hq_gap ORDER BY device, seq_from"):
        gap = Gap(row[1], int(row[2]), int(row[3]), int(row[4]), row[5], row[6])
        (get(row[0]).open_gaps if gap.missing else get(row[0]).healed_gaps).append(gap)
    for code, users, uses, max_uses, found in db.query(
            "SELECT code_id, stores, uses, max_uses, found_at FROM hq_conflict ORDER BY code_id"):
        for store in str(users).split(","):
            get(store).conflicts.append({"code_id": code, "stores": str(users).split(","),
                                         "uses": int(uses), "max_uses": int(max_uses),
                                         "found_at": found})
    for store, reason, n in db.query("SELECT store, reason, COUNT(*) FROM hq_reject"
                                     " WHERE received_at>=? GROUP BY store, reason"
                                     " ORDER BY reason", (since,)):
        get(store or "?").ingest_rejects[reason] = int(n)
    return [stores[s] for s in sorted(stores)]


def device_statuses(db: Database) -> list[tuple[str, DeviceStatus]]:
    """Every device HQ knows with its store, by device id: presence, reports, delivery."""
    out: list[tuple[str, DeviceStatus]] = []
    for row in db.query("SELECT store, device, state, last_seen, backlog, software,"
                        " config_version, reported_version, max_seq, alarm, data_versions,"
                        " clock_trusted FROM hq_device ORDER BY device"):
        out.append((str(row[0]), DeviceStatus(
            row[1], row[2], row[3], row[4], row[5], row[6], row[7], int(row[8]),
            None if row[9] is None else bool(row[9]),
            None if row[10] is None else json.loads(row[10]),
            clock_trusted=None if row[11] is None else bool(row[11]))))
    by_device = {d.device: d for _s, d in out}
    for device, held, last_seq, unconfirmed, ask_from, ask_to, asks in db.query(
            "SELECT device, held, last_seq, unconfirmed, ask_from, ask_to, asks"
            " FROM hq_delivery"):
        d = by_device.get(device)
        if d is not None:
            d.held, d.last_seq, d.unconfirmed, d.asks = (int(held), int(last_seq),
                                                         unconfirmed, int(asks))
            d.asking = None if ask_from is None else (int(ask_from), int(ask_to))
    return out


def to_json(reports: list[StoreReport]) -> list[dict[str, Any]]:
    """JSON-ready report."""
    return [asdict(r) for r in reports]


def to_text(reports: list[StoreReport]) -> str:
    """A plain text report, one block per store."""
    lines: list[str] = []
    for r in reports:
        lines.append(f"store {r.store}: {r.events} events, {r.cards_printed} cards printed, "
                     f"{r.pickups_collected} pickups collected, {r.voids} voids")
        for campaign, n in r.redemptions_by_campaign.items():
            lines.append(f"  redemptions {campaign}: {n}")
        for reason, n in r.rejects_by_reason.items():
            lines.append(f"  rejected {reason}: {n}")
        for d in r.devices:
            lines.append(f"  device {d.device}: {d.state or 'no presence yet'}, backlog "
                         f"{d.backlog if d.backlog is not None else '?'}, last seen "
                         f"{_when(d.last_seen)}, seq {d.max_seq}, config applied "
                         f"{d.reported_version if d.reported_version is not None else '?'}"
                         + (" OUTBOX ALARM" if d.alarm else "") + _delivery(d))
        for g in r.open_gaps:
            lines.append(f"  GAP {g.device} seq {g.seq_from}-{g.seq_to}: {g.missing} missing")
        for g in r.healed_gaps:
            lines.append(f"  healed gap {g.device} seq {g.seq_from}-{g.seq_to}")
        for c in r.conflicts:
            lines.append(f"  CONFLICT coupon {c['code_id']}: {c['uses']} uses over "
                         f"{c['max_uses']} at {', '.join(c['stores'])}")
        for reason, n in r.ingest_rejects.items():
            lines.append(f"  malformed messages {reason}: {n}")
    return "\n".join(lines) if lines else "no stores yet"


def _delivery(d: DeviceStatus) -> str:
    """What HQ holds of a device, what the box still waits on, what HQ asks for."""
    if d.held is None:
        return ""
    text = f", HQ holds 1-{d.held}" if d.held else ", HQ holds none"
    if d.unconfirmed:
        text += f", {d.unconfirmed} sent awaiting HQ's confirmation"
    if d.asking is not None:
        text += (f", ASKING for seq {d.asking[0]}-{d.asking[1]}"
                 f" ({d.asks} request{'s' if d.asks != 1 else ''} so far)")
    return text


def _when(t: float | None) -> str:
    if t is None:
        return "never"
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
