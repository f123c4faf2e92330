"""The box's own configuration file (``edge.toml`` in the box home), parsed once, strictly.

HQ's pushed config (campaigns, keys, revocations, texts) lives in the ledger, not here: this
file says who the box is and where its files and devices are.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_NAME = "edge.toml"
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")  # packable into a card (id6)
DEFAULT_CARD_URL_BASE = "HTTPS://Q.EDGE.CN/"  # short: leaves room for a receipt ref


class ConfigError(ValueError):
    """The configuration file is missing, unreadable or wrong; the message says where."""


@dataclass(frozen=True, slots=True)
class CardTexts:
    """What a packaging card says around its QR."""

    url_base: str = DEFAULT_CARD_URL_BASE
    headline: str = "扫码入群 领新人礼"
    gift: str = "新人礼: 到店免费咖啡一杯"
    footer: str = "谢谢惠顾"


@dataclass(frozen=True, slots=True)
class BoxConfig:
    """Who this box is and where its state lives."""

    home: Path
    store_id: str
    device_id: str
    store_name: str = ""
    card: CardTexts = field(default_factory=CardTexts)
    ledger_path: Path = Path("ledger.sqlite")
    device_key_path: Path = Path("device.key")
    raw: dict[str, Any] = field(default_factory=dict)  # every section, for the drivers

    def path(self, p: Path) -> Path:
        """``p`` resolved against the home folder."""
        return p if p.is_absolute() else self.home / p


def check_id(what: str, value: object) -> str:
    """Validate a store or device id.

    Raises:
        ConfigError: the id is not 1-32 letters, digits, ``_ -``.
    """
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise ConfigError(f"{what} {value!r} must be 1-32 letters, digits, '_' or '-'")
    return value


def load(home: Path) -> BoxConfig:
    """Read ``home/edge.toml``.

    Raises:
        ConfigError: missing file, bad TOML, or a bad or missing value (the message names it).
    """
    path = home / CONFIG_NAME
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist: run `edge init` first") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    store = _section(data, "store")
    card = _section(data, "card")
    paths = _section(data, "paths")
    texts = CardTexts(**{k: _text(card, k, getattr(CardTexts(), k)) for k in
                         ("url_base", "headline", "gift", "footer")})
    return BoxConfig(
        home=home,
        store_id=check_id("store.id", store.get("id")),
        device_id=check_id("store.device", store.get("device")),
        store_name=_text(store, "name", ""),
        card=texts,
        ledger_path=Path(_text(paths, "ledger", "ledger.sqlite")),
        device_key_path=Path(_text(paths, "device_key", "device.key")),
        raw=data,
    )


def _section(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"[{name}] must be a table")
    return value


def _text(section: dict[str, Any], key: str, default: str) -> str:
    value = section.get(key, default)
    if not isinstance(value, str):
        raise ConfigError(f"{key} must be a string, not {type(value).__name__}")
    return value
