"""The event schema: every fact the box reports to HQ goes through the outbox as one of these.

The wire form (what ``sync`` publishes and HQ ingests) is :meth:`Event.to_wire`; it is
documented in ``docs/events.md`` and both sides are tested against this module.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

SCHEMA_VERSION = 1


class EventType(enum.StrEnum):
    """Every kind of event, with its wire name."""

    DECISION = "decision"  # a scan decided, accepted or rejected
    VOID = "void"  # an accepted redemption voided
    VOID_REFUSED = "void_refused"  # a void asked for and refused
    CARD_ISSUED = "card_issued"  # a packaging card token minted
    CONFIG_APPLIED = "config_applied"
    CONFIG_REJECTED = "config_rejected"
    CLOCK = "clock"  # the trusted time moved, or the clock was found behind it
    OUTBOX_ALARM = "outbox_alarm"  # the unsent backlog crossed the sync policy's limits, or cleared


@dataclass(frozen=True, slots=True)
class Event:
    """One outbox row: per-device gapless ``seq``, globally unique ``event_id``."""

    seq: int
    event_id: str
    type: str
    at: float
    clock_trusted: bool
    body: dict[str, Any]

    def to_wire(self, store_id: str, device_id: str) -> dict[str, Any]:
        """The JSON object sent to HQ for this event."""
        return {
            "v": SCHEMA_VERSION,
            "id": self.event_id,
            "seq": self.seq,
            "store": store_id,
            "device": device_id,
            "type": self.type,
            "at": self.at,
            "clock_trusted": self.clock_trusted,
            "body": self.body,
        }
