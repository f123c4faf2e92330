"""HQ-to-box messages: verify the envelope, then hand the payload to the domain.

Config and data go to ``edge.storeconfig``; confirmations and resend requests (the device's
``hq`` topic) to ``edge.delivery``.

Each refusal gets its :class:`~edge.storeconfig.Rejection`, recorded as a
``config_rejected`` event; what passes is applied by the domain functions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from edge import clock
from edge.delivery import apply_delivery
from edge.ledger import Ledger
from edge.rules import Identity
from edge.storeconfig import APPLY, ApplyResult, Outcome, Rejection, record_rejection
from sync.contract import (
    ContractError,
    DataKind,
    Envelope,
    SignatureError,
    Topics,
    UnsignedError,
    UntrustedKeyError,
    open_envelope,
)

log = logging.getLogger(__name__)


class Inbound:
    """Judges and applies what HQ publishes to one store's config and data topics."""

    def __init__(self, ledger: Ledger, identity: Identity, topics: Topics,
                 wall_clock: Callable[[], float] = time.time) -> None:
        """Handle messages for ``identity`` on ``ledger``."""
        self.ledger = ledger
        self.identity = identity
        self.wall_clock = wall_clock
        self.config_topic = topics.config(identity.store_id)
        self.data_topic = topics.data(identity.store_id)
        self.hq_topic = topics.hq(identity.store_id, identity.device_id)

    @property
    def topics(self) -> list[str]:
        """What the box subscribes to."""
        return [self.config_topic, self.data_topic, self.hq_topic]

    def handle(self, topic: str, payload: bytes) -> ApplyResult | None:
        """Verify and apply one message; ``None`` for a message that is not for us.

        Never raises for bad input: every refusal is recorded and returned.
        """
        if topic == self.config_topic:
            expected: tuple[DataKind, ...] = (DataKind.CONFIG,)
        elif topic == self.data_topic:
            expected = (DataKind.ORDERS, DataKind.REMOTE_USES)
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
        except UnsignedError as exc:
            return self._refuse(Rejection.UNSIGNED, str(exc), guess)
        except ContractError as exc:
            return self._refuse(Rejection.MALFORMED, str(exc), guess)
        now = clock.read(self.wall_clock(), self.ledger.trusted_time(),
                         self.ledger.setting("clock_skew_s")).now
        try:
            data = open_envelope(env, self.ledger.trusted_keys(), now)
        except UntrustedKeyError as exc:
            return self._refuse(Rejection.UNTRUSTED_KEY, str(exc), guess)
        except SignatureError as exc:
            return self._refuse(Rejection.BAD_SIGNATURE, str(exc), guess)
        except ContractError as exc:
            return self._refuse(Rejection.MALFORMED, str(exc), guess)
        if data.kind not in expected:
            return record_rejection(self.ledger, Rejection.WRONG_KIND,
                                    f"a {data.kind.value} message on {topic}", data.kind,
                                    data.version, data.store, self.wall_clock)
        apply = APPLY.get(data.kind, apply_delivery)  # delivery: confirmations, resends
        result = apply(self.ledger, self.identity, data, self.wall_clock)
        if result.outcome is Outcome.DUPLICATE:
            log.debug("%s v%s: already applied", data.kind.value, data.version)
        return result

    def _refuse(self, reason: Rejection, detail: str, kind: DataKind | None) -> ApplyResult:
        return record_rejection(self.ledger, reason, detail, kind, None, None, self.wall_clock)
