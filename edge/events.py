"""The event schema: every fact the box reports to HQ goes through the outbox as one of these.

The wire form (what ``sync`` publishes and HQ ingests) is :meth:`Event.to_wire`; it is
documented in ``docs/events.md`` and both sides are tested against this module.
"""

from __future__ import annotations

import enum
import json
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


# The outbox stores each event's wire JSON text (``wire_text``) when it is appended, so the
# drain sends stored text and never encodes an event again. The store and device are not
# the ledger's to know, so the text holds ORIGIN_MARK where ``,"store":...,"device":...``
# goes; ``origin_text`` is what replaces it. JSON text never holds a raw control character
# (``json.dumps`` escapes them all), so the mark cannot occur anywhere else.
ORIGIN_MARK = "\x01"


_NO_ORIGIN = ',"store":"","device":""'  # to_wire's origin when both are empty


def wire_text(event: Event) -> str:
    """``event``'s wire JSON (from :meth:`Event.to_wire`) with ORIGIN_MARK for its origin.

    Filled with :func:`origin_text`, it is byte for byte ``json.dumps(to_wire(store,
    device), ensure_ascii=False, separators=(",", ":"))`` (``tests/test_sync_outbox.py``).
    The origin comes right after ``seq`` (dict order), before the body, so the first
    occurrence is the one replaced.
    """
    text = json.dumps(event.to_wire("", ""), ensure_ascii=False, separators=(",", ":"))
    return text.replace(_NO_ORIGIN, ORIGIN_MARK, 1)


def origin_text(store_id: str, device_id: str) -> str:
    """What replaces ORIGIN_MARK in :func:`wire_text` for this store and device."""
    return (f',"store":{json.dumps(store_id, ensure_ascii=False)},'
            f'"device":{json.dumps(device_id, ensure_ascii=False)}')
