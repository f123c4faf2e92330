"""HQ to box: sign a store's config or pickup orders and publish them.

The version is taken (and committed) in the HQ database before the publish, so it never
repeats even if the publish fails; the box only needs versions to increase.
"""

from __future__ import annotations

import json
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.keys import SigningKey
from hq.broker import BrokerOptions, OneShot
from hq.db import Cursor, Database
from hq.publishing.versions import next_version
from hq.timeparse import parse_time
from hq.web.orders import WebLink, WebOrderError, codes_for, record_links, split_web_fields
from sync.contract import (
    ContractError,
    DataKind,
    HqData,
    OrderUpdate,
    decode_orders,
    encode_orders,
    seal,
)


class BodyError(ValueError):
    """A config or orders file cannot be read or does not have the right shape."""


@dataclass(frozen=True, slots=True)
class Published:
    """What was published where."""

    store: str
    kind: DataKind
    version: int
    topic: str
    retained: bool
    size: int


def read_body(path: Path) -> dict[str, Any]:
    """A JSON (``.json``) or TOML (anything else ending ``.toml``) object from ``path``.

    Raises:
        BodyError: unreadable file, bad syntax, or not an object.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BodyError(f"{path}: {exc}") from None
    try:
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        raise BodyError(f"{path}: not valid {'TOML' if path.suffix == '.toml' else 'JSON'}: "
                        f"{exc}") from None
    if not isinstance(data, dict):
        raise BodyError(f"{path}: the top level must be an object")
    return data


def orders_from_body(data: dict[str, Any]) -> list[OrderUpdate]:
    """Validated orders from a file's ``orders`` list; window times may be ISO or ``+2h``.

    An order's web fields (``web_customer``, ``pickup_code``: :func:`web_links_from_body`)
    are HQ's alone and left out of the orders the box gets.

    Raises:
        BodyError: no list, or a bad order (the message names it).
    """
    items = data.get("orders")
    if not isinstance(items, list) or not items:
        raise BodyError("an orders file needs a non-empty 'orders' list")
    items = _split(items)[0]
    fixed = []
    for item in items:
        if isinstance(item, dict):
            item = dict(item)
            for k in ("window_start", "window_end"):
                if isinstance(item.get(k), str):
                    try:
                        item[k] = parse_time(item[k])
                    except ValueError as exc:
                        raise BodyError(f"order {item.get('order_id')!r} {k}: {exc}") from None
        fixed.append(item)
    try:
        return decode_orders({"orders": fixed})
    except ContractError as exc:
        raise BodyError(str(exc)) from None


def web_links_from_body(data: dict[str, Any]) -> list[WebLink]:
    """The web customers (and given pickup codes) an orders file binds its orders to.

    Raises:
        BodyError: a ``web_customer`` that is not a cookie id, or a ``pickup_code`` not text.
    """
    items = data.get("orders")
    return _split(items)[1] if isinstance(items, list) else []


def _split(items: list[Any]) -> tuple[list[Any], list[WebLink]]:
    try:
        return split_web_fields(items)
    except WebOrderError as exc:
        raise BodyError(str(exc)) from None


def sign_and_publish(db: Database, opts: BrokerOptions, key: SigningKey, store: str,
                     kind: DataKind, body: dict[str, Any], version: int | None = None,
                     clock: Callable[[], float] = time.time,
                     record: Callable[[Cursor, float], None] | None = None) -> Published:
    """Take the next version, sign, and publish (config retained, data not), QoS 1.

    ``record``, if given, writes what goes with this push in the version's transaction.

    Raises:
        hq.publishing.versions.VersionError: ``version`` is not above the last one given.
        hq.broker.BrokerError: the broker did not take the message.
        hq.db.DbError: the version counter could not be committed.
    """
    now = clock()
    with db.tx() as cur:
        v = next_version(cur, store, kind, now, version)
        if record is not None:
            record(cur, now)
    payload = seal(key, HqData(kind, store, v, now, body)).encode()
    topics = opts.topics
    retained = kind is DataKind.CONFIG
    topic = topics.config(store) if retained else topics.data(store)
    # A retained config goes to every node of a cluster that keeps retained messages per
    # node (opts.cluster_nodes), so a box on any node gets it on subscribe; live, a box
    # receives each copy and ignores the ones after the first (same version).
    for target in opts.retain_targets() if retained else [opts]:
        with OneShot(target, f"edge-hq-push-{store}-{int(now * 1000)}") as conn:
            conn.publish(topic, payload, retain=retained)
    return Published(store, kind, v, topic, retained, len(payload))


def push_config(db: Database, opts: BrokerOptions, key: SigningKey, store: str,
                body: dict[str, Any], version: int | None = None) -> Published:
    """Sign and publish a store's whole config, retained."""
    return sign_and_publish(db, opts, key, store, DataKind.CONFIG, body, version)


def push_orders(db: Database, opts: BrokerOptions, key: SigningKey, store: str,
                orders: list[OrderUpdate], links: list[WebLink] | None = None,
                pickup_key: SigningKey | None = None) -> Published:
    """Sign and publish new, changed or cancelled pickup orders to a store.

    The orders are kept (``hq_order``: a box that comes without a session later gets them
    in its catch-up, ``hq.ingest.eventstore.EventStore.record_reported``), and the orders
    bound to a web customer (``links``) with their pickup codes (given, or signed with
    ``pickup_key``) in ``web_order``, both in the push's version transaction. The box gets
    the orders alone: no customer id.

    Raises:
        BodyError: a link names no order of ``orders``, or its pickup code does not fit.
    """
    try:
        linked = codes_for(store, orders, links or [], pickup_key)
    except WebOrderError as exc:
        raise BodyError(str(exc)) from None

    def record(cur: Cursor, now: float) -> None:
        for o in orders:
            cur.execute("INSERT INTO hq_order(store, order_id, body, window_end, updated_at)"
                        " VALUES (?,?,?,?,?) ON CONFLICT (store, order_id) DO UPDATE SET"
                        " body=excluded.body, window_end=excluded.window_end,"
                        " updated_at=excluded.updated_at",
                        (store, o.order_id, json.dumps(o.to_dict(), ensure_ascii=False),
                         o.window_end, now))
        record_links(cur, store, linked, now)

    return sign_and_publish(db, opts, key, store, DataKind.ORDERS, encode_orders(orders),
                            record=record)
