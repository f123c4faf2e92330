"""The one verdict type: what the box decided about a scanned code, and why."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any


class Reason(enum.StrEnum):
    """Every reason a code can be rejected. The values are the wire and ledger names."""

    BAD_FORMAT = "bad_format"
    FORGED = "forged"
    UNKNOWN_KEY = "unknown_key"
    KEY_EXPIRED = "key_expired"
    NOT_YET_VALID = "not_yet_valid"
    EXPIRED = "expired"
    WRONG_STORE = "wrong_store"
    CAMPAIGN_PAUSED = "campaign_paused"
    CAMPAIGN_REVOKED = "campaign_revoked"
    COUPON_REVOKED = "coupon_revoked"
    ALREADY_USED_HERE = "already_used_here"
    USED_AT_OTHER_STORE = "used_at_other_store"
    ORDER_CANCELLED = "order_cancelled"
    ALREADY_COLLECTED = "already_collected"
    OUTSIDE_PICKUP_WINDOW = "outside_pickup_window"
    UNKNOWN_PICKUP_NUMBER = "unknown_pickup_number"
    TOO_MANY_ATTEMPTS = "too_many_attempts"  # typed numbers locked at this till for a while
    NOT_REDEEMABLE = "not_redeemable"  # a packaging card shown at the till
    # workshop tickets (edge.workshops)
    ALREADY_CHECKED_IN = "already_checked_in"  # this ticket was checked in (once per ticket)
    OUTSIDE_SESSION_WINDOW = "outside_session_window"  # before start - early, after end + late
    TICKET_CANCELLED = "ticket_cancelled"  # the customer cancelled it (or HQ the session)
    PARTY_TOO_LARGE = "party_too_large"  # more people than the ticket's party


@dataclass(frozen=True, slots=True)
class Verdict:
    """A decision about one scan.

    ``facts`` carries what the cashier's words need: the benefit, the order's items and
    number, or when and where the code was used before.
    """

    accepted: bool
    reason: Reason | None
    kind: str | None
    code_id: str | None
    decided_at: float
    clock_trusted: bool
    facts: dict[str, Any] = field(default_factory=dict)
    decision_id: int | None = None  # None when only checked, not recorded
    event_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        d = asdict(self)
        d["reason"] = self.reason.value if self.reason else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Verdict:
        """Rebuild from :meth:`to_dict` output (used by the local API's clients)."""
        return cls(
            accepted=bool(d["accepted"]),
            reason=Reason(d["reason"]) if d.get("reason") else None,
            kind=d.get("kind"),
            code_id=d.get("code_id"),
            decided_at=float(d["decided_at"]),
            clock_trusted=bool(d["clock_trusted"]),
            facts=dict(d.get("facts") or {}),
            decision_id=d.get("decision_id"),
            event_id=d.get("event_id"),
        )
