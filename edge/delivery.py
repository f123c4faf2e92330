"""HQ's delivery messages to one device: confirmations and resend requests, applied.

The broker's PUBACK only moves an event from unsent to sent: a broker may lose what it
acknowledged (a crash, or a restart that forgets HQ's shared subscription). HQ's signed
``confirmed`` message (:class:`~edge.hqdata.Confirmed`) is what makes events confirmed, and
only confirmed events may be pruned (``sync.outbox``). A ``resend`` message
(:class:`~edge.hqdata.ResendRequest`) makes a range unsent again, so the drain sends it
again; HQ de-duplicates by (device, seq).

Both kinds share one version sequence per device (kept in ``outbox_confirmed``): a message
at or below the last one applied is a re-delivery or a replay and changes nothing. Applying
one records no event (an event would need confirming in turn); a refusal is recorded as
every refused HQ message is (``config_rejected``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final

from edge.hqdata import Confirmed, ContractError, DataKind, HqData, ResendRequest
from edge.ledger import Ledger, confirm_in, unsend_in
from edge.rules import Identity
from edge.storeconfig import ApplyResult, Outcome, Rejection, record_rejection

log = logging.getLogger(__name__)

KINDS: Final = (DataKind.CONFIRMED, DataKind.RESEND)


def apply_delivery(ledger: Ledger, identity: Identity, data: HqData,
                   wall_clock: Callable[[], float] = time.time) -> ApplyResult:
    """Apply a verified ``confirmed`` or ``resend`` message to the outbox, or refuse it.

    ``ApplyResult.changed`` is the confirmed seq after a confirmation, and the number of
    events made unsent by a resend request.
    """
    def refuse(reason: Rejection, detail: str) -> ApplyResult:
        return record_rejection(ledger, reason, detail, data.kind, data.version, data.store,
                                wall_clock)

    if data.kind not in KINDS:
        return refuse(Rejection.WRONG_KIND, f"expected a delivery message, got {data.kind}")
    try:
        msg: Confirmed | ResendRequest = (Confirmed.from_dict(data.body)
                                          if data.kind is DataKind.CONFIRMED
                                          else ResendRequest.from_dict(data.body))
    except ContractError as exc:
        return refuse(Rejection.INVALID, f"{data.kind.value} v{data.version}: {exc}")
    if data.store != identity.store_id or msg.device != identity.device_id:
        return refuse(Rejection.WRONG_STORE,
                      f"{data.kind.value} v{data.version} is for {data.store}/{msg.device}, "
                      f"this is {identity.store_id}/{identity.device_id}")
    with ledger.immediate() as conn:
        # Read inside the write lock: another connection may have applied a later one.
        applied = conn.execute("SELECT version FROM outbox_confirmed WHERE id = 1").fetchone()[0]
        if data.version <= applied:
            return ApplyResult(data.kind, data.version, Outcome.DUPLICATE)
        if isinstance(msg, Confirmed):
            changed = confirm_in(conn, msg.seq, data.version, data.issued_at)
        else:
            changed = unsend_in(conn, msg.first, msg.last)
            conn.execute("UPDATE outbox_confirmed SET version = ? WHERE id = 1",
                         (data.version,))
        ledger.advance_trusted_time(conn, data.issued_at, f"hq-{data.kind.value}")
    if isinstance(msg, ResendRequest):
        log.info("HQ lacks events %d-%d: %d of them to send again", msg.first, msg.last,
                 changed)
    return ApplyResult(data.kind, data.version, Outcome.APPLIED, changed=changed)
