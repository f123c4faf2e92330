"""What HQ tells a store: its configuration, pickup orders and uses at other stores.

The wire carries these as signed, versioned envelopes (``sync.contract``); this module is the
domain half: the config body schema, parsed strictly, and the three ``apply_*`` functions
that change the ledger. Each apply is one ``BEGIN IMMEDIATE`` transaction, so a box holds
either the whole previous config or the whole new one, never a mix. Every refusal is a
:class:`Rejection` with a sentence, written to the outbox as a ``config_rejected`` event and
logged, so HQ learns why a store did not take what it was sent.

Versions: per store and kind, strictly increasing. A config whose version is not above the
applied one is refused (``stale``), except an exact re-delivery of the applied config (the
broker re-sends the retained config on a new subscription), which is a quiet no-op. Orders
and remote uses at or below the applied version are QoS 1 re-deliveries: ignored, not
refused.

The body schema is documented in ``docs/mqtt.md``.
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from edge import clock, tokens
from edge.cards import CardError, check_url_base
from edge.config import DEFAULT_CARD_URL_BASE, CardTexts, ConfigError
from edge.events import EventType
from edge.hqdata import (
    ContractError,
    DataKind,
    Envelope,
    HqData,
    OrderUpdate,
    RemoteUse,
    SignatureError,
    UntrustedKeyError,
    WorkshopSession,
    decode_orders,
    decode_remote_uses,
    decode_workshops,
    json_object,
    open_envelope,
)
from edge.keys import Purpose, TrustedKey, parse_trust
from edge.ledger import DEFAULT_SETTINGS, Ledger
from edge.orders import upsert_order
from edge.rules import Identity
from edge.workshops import upsert_sessions

log = logging.getLogger(__name__)

CONFIG_SCHEMA: Final = 1  # the body's "schema"; a box refuses a newer one it cannot read
MAX_TEXT: Final = 200  # printer texts: a line or two on a 58 mm card
VERSION_SETTING: Final = {DataKind.CONFIG: "config_version", DataKind.ORDERS: "orders_version",
                          DataKind.REMOTE_USES: "remote_uses_version",
                          DataKind.WORKSHOPS: "workshops_version"}
CONFIG_DIGEST_SETTING: Final = "config_digest"
TRUST_VERSION_SETTING: Final = "trust_version"  # the trust list applied (0: provisioned set)
TRUST_DIGEST_SETTING: Final = "trust_digest"
ALL_STORES: Final = "*"  # a trust list's store: one list, signed once, for the whole chain
LAST_REJECTION_SETTING: Final = "config_last_rejection"
DEFAULT_VOID_SHIFT_LIMIT: Final = int(DEFAULT_SETTINGS["void_shift_limit"])


class StoreConfigError(ValueError):
    """A config, orders or remote-uses body breaks the schema; the message names the field."""


class Rejection(enum.StrEnum):
    """Why a box refused something HQ sent. The values are the wire names."""

    UNSIGNED = "unsigned"  # no signature at all
    MALFORMED = "malformed"  # not an envelope, or its payload is not the contract's shape
    UNTRUSTED_KEY = "untrusted_key"  # signed by a key the box does not trust for config
    BAD_SIGNATURE = "bad_signature"  # tampered in transit or forged
    WRONG_KIND = "wrong_kind"  # e.g. orders published on the config topic
    WRONG_STORE = "wrong_store"  # meant for another store
    STALE = "stale"  # a version at or below the applied one (replayed or out of order)
    INVALID = "invalid"  # signed and fresh, but the body breaks the schema
    TOO_LARGE = "too_large"  # over the byte limit (edge.wire): refused unread


class CampaignState(enum.StrEnum):
    """A campaign's state as HQ says (the rules read the same words)."""

    ACTIVE = "active"
    PAUSED = "paused"
    REVOKED = "revoked"


# -- the config body ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CampaignConfig:
    """One campaign and its state."""

    campaign_id: str
    state: CampaignState
    name: str = ""


@dataclass(frozen=True, slots=True)
class RevokedConfig:
    """One revoked code (a coupon's ``code_id``)."""

    code_id: str
    reason: str = ""


_POLICY_LIMITS: Final = {"batch_size": (1, 1000), "linger_ms": (0, 60_000),
                         "outbox_max_age_s": (3600, 366 * 86400),
                         "outbox_max_rows": (1000, 10_000_000),
                         "alarm_backlog": (1, 10_000_000)}


@dataclass(frozen=True, slots=True)
class SyncPolicy:
    """How the box drains its outbox and when it raises the backlog alarm."""

    batch_size: int = 100  # events per MQTT message
    linger_ms: int = 200  # how long a partial batch waits for more events
    outbox_max_age_s: int = 7 * 86400  # sent events older (event time): pruned; unsent: alarm
    outbox_max_rows: int = 200_000  # sent rows pruned to stay under; unsent over it: alarm
    alarm_backlog: int = 50_000  # unsent events at which the alarm goes on

    @classmethod
    def parse(cls, obj: Any, where: str = "sync") -> SyncPolicy:
        """A policy from its JSON object; absent fields take the defaults.

        Raises:
            StoreConfigError: unknown field, not an integer, or out of range.
        """
        obj = _object(obj, where)
        _no_unknown(obj, set(_POLICY_LIMITS), where)
        values: dict[str, int] = {}
        for name, (lo, hi) in _POLICY_LIMITS.items():
            if name in obj:
                values[name] = _int(obj[name], f"{where}.{name}", lo, hi)
        return cls(**values)


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """A store's whole configuration, as HQ pushes it (each push replaces the last)."""

    store_name: str
    card: CardTexts
    campaigns: tuple[CampaignConfig, ...]
    keys: tuple[TrustedKey, ...] | None  # None: the body names none (the trusted set stays)
    revoked: tuple[RevokedConfig, ...]
    void_window_s: int
    sync: SyncPolicy = field(default_factory=SyncPolicy)
    trust: dict[str, Any] | None = None  # a trust list (Envelope object), checked on apply
    void_shift_limit: int = DEFAULT_VOID_SHIFT_LIMIT  # voids per box per shift (0: none)

    def to_body(self) -> dict[str, Any]:
        """The JSON body form (what HQ signs); :func:`parse_config` reads it back."""
        body = self._body()
        if self.keys is None:
            del body["keys"]
        if self.trust is not None:
            body["trust"] = self.trust
        return body

    def _body(self) -> dict[str, Any]:
        return {
            "schema": CONFIG_SCHEMA,
            "store": {"name": self.store_name},
            "printer": {"url_base": self.card.url_base, "headline": self.card.headline,
                        "gift": self.card.gift, "footer": self.card.footer},
            "campaigns": [{"id": c.campaign_id, "state": c.state.value, "name": c.name}
                          for c in self.campaigns],
            "keys": [{"key_id": k.key_id, "public_key": k.public_key.hex(),
                      "purposes": sorted(k.purposes), "not_after": k.not_after}
                     for k in self.keys or ()],
            "revoked": [{"code_id": r.code_id, "reason": r.reason} for r in self.revoked],
            "void_window_s": self.void_window_s,
            "sync": asdict(self.sync),
            # Only when not the default: a box older than the field refuses it (upgrade first).
            **({"void_shift_limit": self.void_shift_limit}
               if self.void_shift_limit != DEFAULT_VOID_SHIFT_LIMIT else {}),
        }


_TOP = {"schema", "store", "printer", "campaigns", "keys", "revoked", "void_window_s", "sync",
        "trust", "void_shift_limit"}


def parse_config(body: Any, identity: Identity, issued_at: float) -> StoreConfig:
    """Parse and check a config body for this box, strictly.

    ``issued_at`` (HQ's signed time) is when the key list must still hold a config key.

    Raises:
        StoreConfigError: the first problem found, naming the field.
    """
    obj = _object(body, "config")
    _no_unknown(obj, _TOP, "config")
    schema = obj.get("schema", CONFIG_SCHEMA)
    if schema != CONFIG_SCHEMA:
        raise StoreConfigError(f"config schema {schema!r} is not {CONFIG_SCHEMA}, the one this "
                               "box reads: upgrade the box first")
    store = _object(obj.get("store", {}), "store")
    _no_unknown(store, {"name"}, "store")
    printer = _object(obj.get("printer", {}), "printer")
    _no_unknown(printer, {"url_base", "headline", "gift", "footer"}, "printer")
    default = CardTexts()
    card = CardTexts(**{k: _text(printer.get(k, getattr(default, k)), f"printer.{k}")
                        for k in ("url_base", "headline", "gift", "footer")})
    try:
        check_url_base(card.url_base, identity)
    except CardError as exc:
        raise StoreConfigError(f"printer.url_base: {exc}") from None
    campaigns = tuple(_campaign(c, f"campaigns[{i}]")
                      for i, c in enumerate(_list(obj.get("campaigns", []), "campaigns")))
    _unique([c.campaign_id for c in campaigns], "campaigns", "id")
    keys = _keys(obj["keys"], issued_at) if "keys" in obj else None
    trust = _object(obj["trust"], "trust") if "trust" in obj else None
    revoked = tuple(_revoked(r, f"revoked[{i}]")
                    for i, r in enumerate(_list(obj.get("revoked", []), "revoked")))
    _unique([r.code_id for r in revoked], "revoked", "code_id")
    void_window = _int(obj.get("void_window_s", 15 * 60), "void_window_s", 0, 7 * 86400)
    void_limit = _int(obj.get("void_shift_limit", DEFAULT_VOID_SHIFT_LIMIT), "void_shift_limit",
                      0, 1000)
    return StoreConfig(_text(store.get("name", ""), "store.name"), card, campaigns, keys,
                       revoked, void_window, SyncPolicy.parse(obj.get("sync", {})), trust,
                       void_limit)


def _campaign(obj: Any, where: str) -> CampaignConfig:
    obj = _object(obj, where)
    _no_unknown(obj, {"id", "state", "name"}, where)
    try:
        state = CampaignState(obj.get("state", "active"))
    except ValueError:
        raise StoreConfigError(f"{where}.state {obj.get('state')!r} is not one of "
                               f"{[s.value for s in CampaignState]}") from None
    return CampaignConfig(_id(obj.get("id"), f"{where}.id"), state,
                          _text(obj.get("name", ""), f"{where}.name"))


def _revoked(obj: Any, where: str) -> RevokedConfig:
    obj = _object(obj, where)
    _no_unknown(obj, {"code_id", "reason"}, where)
    return RevokedConfig(_id(obj.get("code_id"), f"{where}.code_id"),
                         _text(obj.get("reason", ""), f"{where}.reason"))


def _keys(raw: Any, issued_at: float) -> tuple[TrustedKey, ...]:
    items = _list(raw, "keys")
    for i, item in enumerate(items):
        _no_unknown(_object(item, f"keys[{i}]"), {"key_id", "public_key", "purposes",
                                                  "not_after"}, f"keys[{i}]")
    try:
        keys = tuple(parse_trust(items))
    except ConfigError as exc:
        raise StoreConfigError(f"keys: {exc}") from None
    _unique([k.key_id for k in keys], "keys", "key_id")
    # A config that trusts no config key would brick the box's config channel for good.
    if not any(k.usable_for(Purpose.CONFIG, issued_at) for k in keys):
        raise StoreConfigError("keys: no key usable for config at issued_at; the box could "
                               "never verify another config")
    return keys


# -- the trusted key set: changed only by a trust list the trust root signed ---------------


@dataclass(frozen=True, slots=True)
class TrustList:
    """A verified trust list: the whole set of keys a box trusts, and its version."""

    version: int
    keys: tuple[TrustedKey, ...]
    digest: str


def read_trust_list(obj: Any, trusted: list[TrustedKey], identity: Identity,
                    now: float) -> TrustList:
    """Verify a config's ``trust`` member (an envelope of kind ``trust``) and parse it.

    It must be signed by a trust-root key of ``trusted`` (the set in force), be for every
    store (``*``) or this one, and name at least one trust root and one config key.

    Raises:
        UntrustedKeyError: not signed by a trust root the box trusts.
        SignatureError: the signature does not verify.
        ContractError: not an envelope, or a malformed payload.
        StoreConfigError: not a trust list, another store's, or a bad key set.
    """
    env = Envelope.from_object(obj)
    data = open_envelope(env, trusted, now)
    if data.kind is not DataKind.TRUST:
        raise StoreConfigError(f"trust: a {data.kind.value} envelope, not a trust list")
    if data.store not in (ALL_STORES, identity.store_id):
        raise StoreConfigError(f"trust: list v{data.version} is for store {data.store!r}")
    _no_unknown(data.body, {"keys"}, "trust")
    keys = _keys(data.body.get("keys"), data.issued_at)
    if not any(k.usable_for(Purpose.TRUST, data.issued_at) for k in keys):
        raise StoreConfigError("trust: names no trust-root key; nothing could change the "
                               "set again")
    return TrustList(data.version, keys, hashlib.sha256(env.payload.encode()).hexdigest())


def announced_keys(env: Envelope, ledger: Ledger, identity: Identity,
                   now: float) -> list[TrustedKey]:
    """The keys of a newer trust list a config envelope carries (unverified config), if any.

    A config bringing a new trusted set may be signed by a config key of that set (the old
    one retired); the box tries them after its own (``open_envelope``'s ``candidates``)
    once the list itself verifies under the set in force. Anything unreadable gives none:
    the apply step explains the refusal.
    """
    try:
        body = json_object(env.payload.encode("utf-8"), "config").get("body")
        if not isinstance(body, dict) or "trust" not in body:
            return []
        trust = read_trust_list(body["trust"], ledger.trusted_keys(), identity, now)
    except (ContractError, StoreConfigError):
        return []
    applied = int(ledger.setting(TRUST_VERSION_SETTING) or 0)
    return list(trust.keys) if trust.version > applied else []


def _listed_keys(obj: Any) -> list[TrustedKey]:
    """The trust-root keys a trust list names (unverified: only to check its own signature)."""
    try:
        body = json_object(Envelope.from_object(obj).payload.encode("utf-8"), "trust")
        listed = parse_trust((body.get("body") or {}).get("keys"))
    except (ContractError, ConfigError, AttributeError):
        return []
    return [k for k in listed if k.purposes == frozenset({Purpose.TRUST})]


def _same_keys(a: tuple[TrustedKey, ...] | list[TrustedKey], b: list[TrustedKey]) -> bool:
    return sorted(a, key=lambda k: k.key_id) == sorted(b, key=lambda k: k.key_id)


_KeySetChange = tuple[TrustList | None, tuple[TrustedKey, ...] | None,
                      tuple[Rejection, str] | None]


def _new_key_set(ledger: Ledger, identity: Identity, cfg: StoreConfig,
                 now: float) -> _KeySetChange:
    """What a config does to the trusted set: ``(trust list, new keys, refusal)``.

    With a trust list: its keys, if newer than the applied one (the same list again
    changes nothing; an older or a different one of the same version is refused). With
    only ``keys`` (before key roles): accepted while the set in force has no trust root
    (a box provisioned before them), else only if it changes nothing.
    """
    current = ledger.trusted_keys()
    legacy = not any(Purpose.TRUST in k.purposes for k in current)
    if cfg.trust is not None:
        try:
            try:
                tl = read_trust_list(cfg.trust, current, identity, now)
            except UntrustedKeyError:
                if not legacy:
                    raise
                # Provisioned before key roles: the config key that signed this config
                # (one of the set in force) may change the set, so it vouches for the
                # first list, which must still verify under the root it names.
                tl = read_trust_list(cfg.trust, _listed_keys(cfg.trust), identity, now)
        except UntrustedKeyError as exc:
            return None, None, (Rejection.UNTRUSTED_KEY, f"trust: {exc}")
        except SignatureError as exc:
            return None, None, (Rejection.BAD_SIGNATURE, f"trust: {exc}")
        except (ContractError, StoreConfigError) as exc:
            return None, None, (Rejection.INVALID, f"trust: {exc}")
        applied = int(ledger.setting(TRUST_VERSION_SETTING) or 0)
        if cfg.keys is not None and not _same_keys(cfg.keys, list(tl.keys)):
            return None, None, (Rejection.INVALID, "keys differ from the trust list's")
        if tl.version > applied:
            return tl, tl.keys, None
        if tl.version == applied and tl.digest == ledger.setting(TRUST_DIGEST_SETTING):
            return None, None, None
        return None, None, (Rejection.STALE, f"trust list v{tl.version} is not newer than "
                            f"the applied v{applied}")
    if cfg.keys is None or _same_keys(cfg.keys, current):
        return None, None, None
    if legacy:
        return None, cfg.keys, None  # provisioned before key roles: config keys rule the set
    return None, None, (Rejection.UNTRUSTED_KEY, "keys: the trusted set changes only with a "
                        "trust list signed by a trust-root key")


# -- results and recording ------------------------------------------------------------


class Outcome(enum.StrEnum):
    """What became of one HQ message."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"  # already applied (a re-delivery): nothing changed, nothing recorded
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """The outcome of one HQ message, and the outbox event recording it (if any)."""

    kind: DataKind | None
    version: int | None
    outcome: Outcome
    reason: Rejection | None = None
    detail: str = ""
    event_seq: int | None = None
    changed: int = 0  # rows applied (orders, uses) or 1 for a config

    @property
    def applied(self) -> bool:
        """Whether the ledger now holds this message's content."""
        return self.outcome is Outcome.APPLIED


def _reading(ledger: Ledger, conn: sqlite3.Connection,
             wall_clock: Callable[[], float]) -> clock.Reading:
    row = conn.execute("SELECT at FROM trusted_time WHERE id=1").fetchone()
    return clock.read(wall_clock(), float(row[0]) if row else 0.0,
                      ledger.setting("clock_skew_s"))


def record_rejection(ledger: Ledger, reason: Rejection, detail: str,
                     kind: DataKind | None = None, version: int | None = None,
                     store: str | None = None,
                     wall_clock: Callable[[], float] = time.time,
                     count: int = 1) -> ApplyResult:
    """Record a refused HQ message: a ``config_rejected`` event and a log line.

    Used by ``sync`` for refusals found before a payload can be read (unsigned, tampered)
    and by the ``apply_*`` functions for the rest. ``count`` > 1: one event standing for
    that many refusals of this reason (``sync.inbound`` coalesces junk); the body then
    carries ``count``.
    """
    log.warning("refused HQ %s v%s: %s: %s", kind.value if kind else "message", version,
                reason.value, detail)
    body: dict[str, object] = {"kind": kind.value if kind else None, "version": version,
                               "store": store, "reason": reason.value, "detail": detail[:500]}
    if count != 1:
        body["count"] = count
    with ledger.immediate() as conn:
        reading = _reading(ledger, conn, wall_clock)
        seq, _ = ledger.append_event(
            conn, EventType.CONFIG_REJECTED, reading.now, reading.trusted, body)
        if kind in (None, DataKind.CONFIG):
            ledger.put_setting(conn, LAST_REJECTION_SETTING,
                               {"version": version, "reason": reason.value,
                                "detail": detail[:500], "at": reading.now})
    return ApplyResult(kind, version, Outcome.REJECTED, reason, detail, seq)


def _precheck(ledger: Ledger, identity: Identity, data: HqData, kind: DataKind,
              wall_clock: Callable[[], float]) -> ApplyResult | None:
    """Refuse the wrong kind or store (recorded); ``None`` when the message may go on."""
    if data.kind is not kind:
        return record_rejection(ledger, Rejection.WRONG_KIND,
                                f"expected a {kind.value} message, got {data.kind.value}",
                                data.kind, data.version, data.store, wall_clock)
    if data.store != identity.store_id:
        return record_rejection(ledger, Rejection.WRONG_STORE,
                                f"{kind.value} v{data.version} is for store {data.store!r}, "
                                f"this is {identity.store_id!r}", kind, data.version, data.store,
                                wall_clock)
    return None


def _digest(data: HqData) -> str:
    return hashlib.sha256(json.dumps(data.body, sort_keys=True, ensure_ascii=False)
                          .encode("utf-8")).hexdigest()


# -- applying -------------------------------------------------------------------------


def apply_config(ledger: Ledger, identity: Identity, data: HqData,
                 wall_clock: Callable[[], float] = time.time) -> ApplyResult:
    """Apply a verified config to the ledger in one transaction, or refuse it.

    Refuses (recording a ``config_rejected`` event and logging) a message of another kind,
    for another store, at or below the applied version (unless it is the applied config
    re-delivered: a quiet ``DUPLICATE``), or with an invalid body. A good config replaces
    the trusted keys, campaigns, revoked codes and settings, sets ``config_version``,
    advances the trusted time to HQ's ``issued_at`` and records ``config_applied``.
    """
    refused = _precheck(ledger, identity, data, DataKind.CONFIG, wall_clock)
    if refused:
        return refused
    applied = int(ledger.setting("config_version"))
    digest = _digest(data)
    if data.version <= applied:
        if data.version == applied and ledger.setting(CONFIG_DIGEST_SETTING) == digest:
            log.debug("config v%s re-delivered; already applied", data.version)
            return ApplyResult(DataKind.CONFIG, data.version, Outcome.DUPLICATE)
        what = "replays" if data.version == applied else "is older than"
        return record_rejection(ledger, Rejection.STALE,
                                f"config v{data.version} {what} the applied v{applied}",
                                DataKind.CONFIG, data.version, data.store, wall_clock)
    try:
        cfg = parse_config(data.body, identity, data.issued_at)
    except StoreConfigError as exc:
        return record_rejection(ledger, Rejection.INVALID, f"config v{data.version}: {exc}",
                                DataKind.CONFIG, data.version, data.store, wall_clock)
    trust, new_keys, refusal = _new_key_set(ledger, identity, cfg,
                                            max(wall_clock(), data.issued_at))
    if refusal is not None:
        return record_rejection(ledger, refusal[0], f"config v{data.version}: {refusal[1]}",
                                DataKind.CONFIG, data.version, data.store, wall_clock)
    with ledger.immediate() as conn:
        moved = ledger.advance_trusted_time(conn, data.issued_at, f"hq-config-v{data.version}")
        if not moved:
            _correct_time_ahead(ledger, conn, data, wall_clock)
        if new_keys is not None:
            conn.execute("DELETE FROM trusted_key")
            for key in new_keys:
                ledger.put_trusted_key(conn, key)
        if trust is not None:
            ledger.put_setting(conn, TRUST_VERSION_SETTING, trust.version)
            ledger.put_setting(conn, TRUST_DIGEST_SETTING, trust.digest)
        conn.execute("DELETE FROM campaign")
        conn.executemany("INSERT INTO campaign(campaign_id, state, name) VALUES (?, ?, ?)",
                         [(c.campaign_id, c.state.value, c.name) for c in cfg.campaigns])
        conn.execute("DELETE FROM revoked_code")
        conn.executemany("INSERT INTO revoked_code(code_id, reason) VALUES (?, ?)",
                         [(r.code_id, r.reason) for r in cfg.revoked])
        for name, value in (("store_name", cfg.store_name), ("card_texts", asdict(cfg.card)),
                           ("void_window_s", cfg.void_window_s),
                           ("void_shift_limit", cfg.void_shift_limit),
                           ("sync_policy", asdict(cfg.sync)),
                           ("config_version", data.version), (CONFIG_DIGEST_SETTING, digest),
                           ("config_issued_at", data.issued_at)):
            ledger.put_setting(conn, name, value)
        reading = _reading(ledger, conn, wall_clock)
        keys_now = new_keys if new_keys is not None else ledger.trusted_keys()
        seq, _ = ledger.append_event(
            conn, EventType.CONFIG_APPLIED, reading.now, reading.trusted,
            {"version": data.version, "previous_version": applied, "issued_at": data.issued_at,
             "trusted_time_advanced": moved, "keys": sorted(k.key_id for k in keys_now),
             "trust_version": None if trust is None else trust.version,
             "campaigns": len(cfg.campaigns), "revoked": len(cfg.revoked)})
    log.info("applied config v%s (was v%s): %d keys, %d campaigns, %d revoked codes",
             data.version, applied, len(keys_now), len(cfg.campaigns), len(cfg.revoked))
    return ApplyResult(DataKind.CONFIG, data.version, Outcome.APPLIED, event_seq=seq, changed=1)


def _correct_time_ahead(ledger: Ledger, conn: sqlite3.Connection, data: HqData,
                        wall_clock: Callable[[], float]) -> None:
    """Pull back a trusted time NTP set too far past this config's ``issued_at``.

    More than ``clock.CORRECT_AHEAD_S`` ahead: a forged or broken time server. A ``clock``
    event records the correction.
    """
    trusted, source = ledger.trusted_time_source(conn)
    if source != "ntp" or trusted - data.issued_at <= clock.CORRECT_AHEAD_S:
        return
    ledger.correct_trusted_time(conn, data.issued_at, f"hq-config-v{data.version}")
    reading = _reading(ledger, conn, wall_clock)
    ledger.append_event(conn, EventType.CLOCK, reading.now, reading.trusted,
                        {"corrected": True, "from": trusted, "to": data.issued_at,
                         "source": f"hq-config-v{data.version}"})
    log.warning("trusted time %.0f (set by NTP) was %.0f s ahead of HQ's signed config v%s: "
                "corrected to %.0f", trusted, trusted - data.issued_at, data.version,
                data.issued_at)


def _apply_data(ledger: Ledger, identity: Identity, data: HqData, kind: DataKind,
                parse: Callable[[], list[Any]],
                write: Callable[[sqlite3.Connection, list[Any]], int],
                wall_clock: Callable[[], float]) -> ApplyResult:
    refused = _precheck(ledger, identity, data, kind, wall_clock)
    if refused:
        return refused
    setting = VERSION_SETTING[kind]
    applied = int(ledger.setting(setting) or 0)
    if data.version <= applied:
        log.debug("%s v%s re-delivered (applied v%s); ignored", kind.value, data.version,
                  applied)
        return ApplyResult(kind, data.version, Outcome.DUPLICATE)
    try:
        items = parse()
    except (StoreConfigError, ContractError) as exc:
        return record_rejection(ledger, Rejection.INVALID, f"{kind.value} v{data.version}: {exc}",
                                kind, data.version, data.store, wall_clock)
    with ledger.immediate() as conn:
        # Re-read inside the write lock: another connection may have applied it meanwhile.
        row = conn.execute("SELECT value FROM setting WHERE key=?", (setting,)).fetchone()
        if row and int(json.loads(row[0])) >= data.version:
            return ApplyResult(kind, data.version, Outcome.DUPLICATE)
        changed = write(conn, items)
        ledger.advance_trusted_time(conn, data.issued_at, f"hq-{kind.value}-v{data.version}")
        ledger.put_setting(conn, setting, data.version)
    log.info("applied %s v%s: %d rows", kind.value, data.version, changed)
    return ApplyResult(kind, data.version, Outcome.APPLIED, changed=changed)


def apply_orders(ledger: Ledger, identity: Identity, data: HqData,
                 wall_clock: Callable[[], float] = time.time) -> ApplyResult:
    """Apply pickup orders (new, changed, cancelled) from a verified ``orders`` message.

    Idempotent: a version at or below the applied one is a re-delivery and changes nothing;
    an order the counter already marked collected stays collected.
    """
    def write(conn: sqlite3.Connection, items: list[OrderUpdate]) -> int:
        for u in items:
            order = tokens.Pickup("", u.order_id, identity.store_id, u.number, u.window_start,
                                  u.window_end, u.items, u.customer)
            upsert_order(conn, order, u.status.value)
        return len(items)

    return _apply_data(ledger, identity, data, DataKind.ORDERS,
                       lambda: decode_orders(data.body), write, wall_clock)


def apply_remote_uses(ledger: Ledger, identity: Identity, data: HqData,
                      wall_clock: Callable[[], float] = time.time) -> ApplyResult:
    """Record uses of codes at other stores from a verified ``remote_uses`` message.

    Each item states HQ's current count for one (code, store), so applying it twice gives
    the same table; this store's own total is skipped (the ledger already counts this
    box's uses), but another box of this store's count (an item naming its ``device``) is
    kept, under ``store/device``, so two tills of one store cannot both spend a code.
    """
    def write(conn: sqlite3.Connection, items: list[RemoteUse]) -> int:
        rows = [(u.code_id, u.place, u.uses, u.last_at) for u in items
                if u.store != identity.store_id
                or (u.device and u.device != identity.device_id)]
        conn.executemany(
            "INSERT INTO remote_use(code_id, store_id, uses, last_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(code_id, store_id) DO UPDATE SET uses=excluded.uses,"
            " last_at=excluded.last_at", rows)
        return len(rows)

    return _apply_data(ledger, identity, data, DataKind.REMOTE_USES,
                       lambda: decode_remote_uses(data.body), write, wall_clock)


def apply_workshops(ledger: Ledger, identity: Identity, data: HqData,
                    wall_clock: Callable[[], float] = time.time) -> ApplyResult:
    """Store HQ's state of the store's workshop sessions from a verified ``workshops`` message.

    Each line is a session's whole state (times, counts, margins, cancelled tickets), so a
    re-delivery or a later line for the same session simply replaces it; a ticket once
    cancelled stays refused.
    """
    def write(conn: sqlite3.Connection, items: list[WorkshopSession]) -> int:
        return upsert_sessions(conn, items)

    return _apply_data(ledger, identity, data, DataKind.WORKSHOPS,
                       lambda: decode_workshops(data.body), write, wall_clock)


APPLY: Final[dict[DataKind, Callable[..., ApplyResult]]] = {
    DataKind.CONFIG: apply_config, DataKind.ORDERS: apply_orders,
    DataKind.REMOTE_USES: apply_remote_uses, DataKind.WORKSHOPS: apply_workshops}


# -- reading back -------------------------------------------------------------------------


def sync_policy(ledger: Ledger) -> SyncPolicy:
    """The sync policy HQ last pushed (defaults before any config)."""
    raw = ledger.setting("sync_policy")
    return SyncPolicy(**raw) if isinstance(raw, dict) else SyncPolicy()


def card_texts(ledger: Ledger, fallback: CardTexts | None = None) -> CardTexts:
    """The card texts and URL base HQ last pushed, else ``fallback`` (``edge.toml``'s)."""
    raw = ledger.setting("card_texts")
    if isinstance(raw, dict):
        return CardTexts(**raw)
    return fallback or CardTexts(url_base=DEFAULT_CARD_URL_BASE)


def store_name(ledger: Ledger, fallback: str = "") -> str:
    """The store name HQ last pushed, else ``fallback`` (``edge.toml``'s)."""
    raw = ledger.setting("store_name")
    return raw if isinstance(raw, str) and raw else fallback


def last_rejection(ledger: Ledger) -> dict[str, Any] | None:
    """The last refused config: ``{version, reason, detail, at}``, or ``None``."""
    raw = ledger.setting(LAST_REJECTION_SETTING)
    return raw if isinstance(raw, dict) else None


def data_versions(ledger: Ledger) -> dict[str, int]:
    """The applied version of each kind of HQ message."""
    return {kind.value: int(ledger.setting(name) or 0) for kind, name in VERSION_SETTING.items()}


# -- strict little parsers ---------------------------------------------------------------


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise StoreConfigError(f"{where} must be a JSON object, not {type(value).__name__}")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise StoreConfigError(f"{where} must be a JSON list, not {type(value).__name__}")
    return value


def _no_unknown(obj: dict[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(obj) - known)
    if unknown:
        raise StoreConfigError(f"{where}: unknown field(s) {unknown}; known: {sorted(known)}")


def _int(value: Any, where: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise StoreConfigError(f"{where} must be an integer, not {value!r}")
    if not lo <= value <= hi:
        raise StoreConfigError(f"{where} = {value} is outside {lo}..{hi}")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise StoreConfigError(f"{where} must be a string, not {type(value).__name__}")
    if len(value) > MAX_TEXT:
        raise StoreConfigError(f"{where} is {len(value)} characters; at most {MAX_TEXT}")
    return value


def _id(value: Any, where: str) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 64 or not value.isprintable():
        raise StoreConfigError(f"{where} must be 1-64 printable characters, not {value!r}")
    return value


def _unique(ids: list[str], where: str, name: str) -> None:
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            raise StoreConfigError(f"{where}: {name} {i!r} appears twice")
        seen.add(i)
