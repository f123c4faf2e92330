"""A box home folder: creating one (``edge init``) and opening it for the commands and daemon."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge import clock, config, storeconfig
from edge.cards import IssuedCard, check_url_base, issue_card
from edge.config import BoxConfig, CardTexts, ConfigError
from edge.events import EventType
from edge.keys import SigningKey, TrustedKey
from edge.ledger import Ledger, LedgerFull
from edge.rules import Counter, Identity

log = logging.getLogger(__name__)

DEFAULT_HOME_ENV = "EDGE_HOME"


def default_home() -> Path:
    """``$EDGE_HOME``, else ``/var/lib/store-edge`` for root, else ``~/.store-edge``."""
    env = os.environ.get(DEFAULT_HOME_ENV)
    if env:
        return Path(env)
    return Path("/var/lib/store-edge") if os.geteuid() == 0 else Path.home() / ".store-edge"


def init_home(home: Path, store_id: str, device_id: str, trust: list[TrustedKey],
              store_name: str = "", url_base: str = config.DEFAULT_CARD_URL_BASE) -> Path:
    """Create a box home: ``edge.toml``, a fresh device key (0600) and the ledger.

    Raises:
        ConfigError: a bad id, a URL base too long for a scannable card, or a home that
            already holds a device key (never overwritten: its cards would stop verifying).
    """
    config.check_id("store id", store_id)
    config.check_id("device id", device_id)
    check_url_base(url_base, Identity(store_id, device_id))
    home.mkdir(parents=True, exist_ok=True)
    key_path = home / "device.key"
    if key_path.exists():
        raise ConfigError(f"{key_path} already exists: this home is initialised")
    # The service user's alone: edge.toml may hold the broker password, the ledger every
    # decision (the cashier reaches the daemon through the API socket, not these files).
    os.chmod(home, 0o700)
    fd = os.open(home / config.CONFIG_NAME, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(f'[store]\nid = "{store_id}"\ndevice = "{device_id}"\n'
                f"name = {json.dumps(store_name)}\n"
                f"\n[card]\nurl_base = {json.dumps(url_base)}\n")
    key = SigningKey.generate(device_id)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.seed.hex() + "\n")
    ledger = Ledger(home / "ledger.sqlite")
    try:
        with ledger.immediate() as conn:
            for k in trust:
                ledger.put_trusted_key(conn, k)
    finally:
        ledger.close()
    return key_path


def load_device_key(cfg: BoxConfig) -> SigningKey:
    """The box's Ed25519 device key (signs packaging cards and every message to HQ).

    Raises:
        ConfigError: the key file is missing, unreadable or not a 32-byte seed.
    """
    key_path = cfg.path(cfg.device_key_path)
    try:
        seed = bytes.fromhex(key_path.read_text().strip())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"device key {key_path}: {exc}") from None
    if len(seed) != 32:
        raise ConfigError(f"device key {key_path} is not a 32-byte seed")
    return SigningKey(cfg.device_id, seed)


@dataclass
class Box:
    """An opened box home: its config, ledger, rules and device key."""

    config: BoxConfig
    ledger: Ledger
    counter: Counter
    device_key: SigningKey
    # An NTP jump not believed (edge.clock.ntp_limit), as recorded; None when in bounds.
    clock_jump: dict[str, Any] | None = field(default=None, init=False)
    _clock_anchor: tuple[float, float] | None = field(default=None, init=False, repr=False)

    @classmethod
    def open(cls, home: Path) -> Box:
        """Open the box home at ``home``.

        Raises:
            ConfigError: the home is missing, incomplete or unreadable.
        """
        cfg = config.load(home)
        device_key = load_device_key(cfg)
        ledger = Ledger(cfg.path(cfg.ledger_path))
        identity = Identity(cfg.store_id, cfg.device_id)
        box = cls(cfg, ledger, Counter(ledger, identity), device_key)
        # On a full disk the trusted time waits for space; the box must still open.
        with contextlib.suppress(LedgerFull):
            box.note_synchronised_clock()
        return box

    @property
    def identity(self) -> Identity:
        """Store and device ids."""
        return self.counter.identity

    def note_synchronised_clock(
            self, synchronised: Callable[[], bool] = clock.kernel_synchronised,
            wall: Callable[[], float] = time.time,
            monotonic: Callable[[], float] = time.monotonic) -> bool:
        """Advance the trusted time to now if the kernel says NTP has synchronised it.

        Called when the box opens and periodically by the daemon. Returns whether it moved.
        A jump past :func:`edge.clock.ntp_limit` (the last HQ-signed time, or the trusted
        time when this process first looked, plus the time elapsed since, plus one step) is
        not believed: the trusted time stays, the jump is logged and recorded once as a
        ``clock`` event, and :attr:`clock_jump` says so until a sync is in bounds again.
        """
        if not synchronised():
            return False
        now, mono = wall(), monotonic()
        with self.ledger.immediate() as conn:
            trusted, source = self.ledger.trusted_time_source(conn)
            anchor = self._clock_anchor
            if anchor is None or (source != "ntp" and trusted != anchor[0]):
                # First look in this process, or HQ moved it: the new reference.
                anchor = self._clock_anchor = (trusted, mono)
            limit = clock.ntp_limit(anchor[0], anchor[1], mono)
            if trusted > 0 and now > limit:
                if self.clock_jump is None:
                    self.clock_jump = {"jump": True, "wall": now, "trusted": trusted,
                                       "ahead_s": round(now - limit + clock.NTP_MAX_STEP_S),
                                       "max_step_s": clock.NTP_MAX_STEP_S}
                    log.warning("NTP moved the clock %.0f s past what the box can vouch for; "
                                "trusted time kept at %.0f until HQ's signed time",
                                self.clock_jump["ahead_s"], trusted)
                    self.ledger.append_event(conn, EventType.CLOCK, trusted, False,
                                             dict(self.clock_jump))
                return False
            self.clock_jump = None
            return self.ledger.advance_trusted_time(conn, now, "ntp")

    def card_texts(self) -> CardTexts:
        """The card texts and URL base HQ last pushed, else ``edge.toml``'s."""
        return storeconfig.card_texts(self.ledger, self.config.card)

    def store_name(self) -> str:
        """The store's name as HQ last pushed it, else ``edge.toml``'s."""
        return storeconfig.store_name(self.ledger, self.config.store_name)

    def clock(self) -> clock.Reading:
        """The time decisions would use now."""
        return clock.read(time.time(), self.ledger.trusted_time(),
                          self.ledger.setting("clock_skew_s"))

    def issue_card(self, receipt_ref: str = "") -> IssuedCard:
        """Mint a packaging card with this box's key and URL base."""
        return issue_card(self.ledger, self.identity, self.device_key, self.card_texts().url_base,
                          self.clock(), receipt_ref)

    def close(self) -> None:
        """Close the ledger."""
        self.ledger.close()
