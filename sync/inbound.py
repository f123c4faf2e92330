"""HQ-to-box messages: verify the envelope, then hand the payload to the domain.

Config and data go to ``edge.storeconfig``; confirmations and resend requests (the device's
``hq`` topic) to ``edge.delivery``.

Each refusal gets its :class:`~edge.storeconfig.Rejection`, recorded as a
``config_rejected`` event; what passes is applied by the domain functions. Parsing is
bounded (``edge.wire``, through ``Envelope.decode``): a message too large, too deep or not
JSON is a refusal like any other, never an exception that would leave it unacknowledged.

Refusals found before the signature is known good (anyone with broker access can cause
them) are coalesced: the first of each reason and kind per minute is recorded at once, the
rest are counted and recorded as one event with ``count`` when the minute ends
(:meth:`Inbound.flush`, from the sync service's housekeeping and at stop). Refusals of
signed messages are recorded one by one (they need HQ's key).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from edge import clock
from edge.coalesce import Coalescer
from edge.delivery import apply_delivery
from edge.ledger import Ledger
from edge.rules import Identity
from edge.storeconfig import (
    APPLY,
    ApplyResult,
    Outcome,
    Rejection,
    announced_keys,
    record_rejection,
)
from sync.contract import (
    ContractError,
    DataKind,
    Envelope,
    SignatureError,
    TooLargeError,
    Topics,
    UnsignedError,
    UntrustedKeyError,
    open_envelope,
)

log = logging.getLogger(__name__)


class Inbound:
    """Judges and applies what HQ publishes to one store's config and data topics."""

    def __init__(self, ledger: Ledger, identity: Identity, topics: Topics,
                 wall_clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        """Handle messages for ``identity`` on ``ledger``."""
        self.ledger = ledger
        self.identity = identity
        self.wall_clock = wall_clock
        self.monotonic = monotonic
        self.junk: Coalescer[tuple[Rejection, DataKind | None]] = Coalescer()
        self.config_topic = topics.config(identity.store_id)
        self.data_topic = topics.data(identity.store_id)
        self.hq_topic = topics.hq(identity.store_id, identity.device_id)

    @property
    def topics(self) -> list[str]:
        """What the box subscribes to."""
        return [self.config_topic, self.data_topic, self.hq_topic]

    def handle(self, topic: str, payload: bytes) -> ApplyResult | None:
        """Verify and apply one message.

        ``None`` for a message that is not for us, and for a refusal counted into the next
        coalesced event (nothing new to report). Never raises for bad input: every refusal
        is recorded (or counted) and the message may be acknowledged.
        """
        if topic == self.config_topic:
            expected: tuple[DataKind, ...] = (DataKind.CONFIG,)
        elif topic == self.data_topic:
            expected = (DataKind.ORDERS, DataKind.REMOTE_USES, DataKind.WORKSHOPS)
        elif topic == self.hq_topic:
            expected = (DataKind.CONFIRMED, DataKind.RESEND)
        else:
            log.warning("message on unexpected topic %s ignored", topic)
            return None
        if not payload and topic == self.config_topic:
            log.info("HQ cleared the retained config; the applied config stays")
            return None
        guess = DataKind.CONFIG if topic == self.config_topic else None
        try:
            env = Envelope.decode(payload)
        except TooLargeError as exc:
            return self._refuse(Rejection.TOO_LARGE, str(exc), guess)
        except UnsignedError as exc:
            return self._refuse(Rejection.UNSIGNED, str(exc), guess)
        except ContractError as exc:
            return self._refuse(Rejection.MALFORMED, str(exc), guess)
        now = clock.read(self.wall_clock(), self.ledger.trusted_time(),
                         self.ledger.setting("clock_skew_s")).now
        # A config carrying a newer trust list may be signed by a key of that list.
        announced = (announced_keys(env, self.ledger, self.identity, now)
                     if topic == self.config_topic else [])
        try:
            data = open_envelope(env, self.ledger.trusted_keys(), now, announced)
        except UntrustedKeyError as exc:
            return self._refuse(Rejection.UNTRUSTED_KEY, str(exc), guess)
        except SignatureError as exc:
            return self._refuse(Rejection.BAD_SIGNATURE, str(exc), guess)
        except ContractError as exc:
            return self._refuse(Rejection.MALFORMED, str(exc), guess)
        if data.kind not in expected:
            return self._refuse(Rejection.WRONG_KIND, f"a {data.kind.value} message on {topic}",
                                data.kind, data.version, data.store)
        apply = APPLY.get(data.kind, apply_delivery)  # delivery: confirmations, resends
        result = apply(self.ledger, self.identity, data, self.wall_clock)
        if result.outcome is Outcome.DUPLICATE:
            log.debug("%s v%s: already applied", data.kind.value, data.version)
        return result

    def flush(self, force: bool = False) -> int:
        """Record the coalesced counts whose minute ended (all of them with ``force``).

        Returns how many refusals the written events stand for.

        Raises:
            sqlite3.Error: the ledger could not be written (the counts are lost, logged).
        """
        folded = 0
        for (reason, kind), tally in self.junk.due(self.monotonic(), force):
            record_rejection(self.ledger, reason,
                             f"{tally.count} more refused within "
                             f"{tally.last_at - tally.first_at:.0f} s; last: {tally.detail}",
                             kind, None, None, self.wall_clock, count=tally.count)
            folded += tally.count
        return folded

    def _refuse(self, reason: Rejection, detail: str, kind: DataKind | None,
                version: int | None = None, store: str | None = None) -> ApplyResult | None:
        self.flush()  # an ended minute's count goes before the refusal that opens the next
        if not self.junk.admit((reason, kind), self.monotonic(), detail):
            log.debug("refused HQ message (counted): %s: %s", reason.value, detail)
            return None
        return record_rejection(self.ledger, reason, detail, kind, version, store,
                                self.wall_clock)
