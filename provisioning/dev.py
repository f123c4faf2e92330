"""A demo box home for development, ``edge run --simulate`` and ``make demo``.

What ``scripts/tour.sh`` does with the two command lines, done in Python in one folder:
HQ's keys, one per role (``<home>/hq``: issuing, config, data, the trust root, and the
trust list the root signed), a box for store BJ001 that trusts them, the device
registered at HQ, sample coupons and pickup orders issued, the orders imported.
``<home>/samples.txt`` lists codes to type or pipe into the simulated scanner;
``<home>/samples.json`` holds the same for scripts.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from edge import tokens
from edge.box import Box, init_home
from edge.config import ConfigError
from edge.keys import Purpose
from edge.orders import learn_pickup_code
from hq.issuing import keystore
from hq.issuing.codes import random_pickup_number, sign_token
from hq.issuing.trust import sign_trust_list

STORE, DEVICE, NAME = "BJ001", "BJ001-T1", "望京店"
HQ_KEY = "HQ1"  # issues coupons and pickup codes
# One key per role (docs/security.md, "Keys and roles"): the ingest worker gets DATA_KEY only.
ROLE_KEYS = {"HQ1": [Purpose.COUPON, Purpose.PICKUP], "CFG1": [Purpose.CONFIG],
             "DATA1": [Purpose.DATA], "ROOT1": [Purpose.TRUST]}


def hq_home(home: Path) -> Path:
    """The demo's HQ folder inside a box home."""
    return home / "hq"


def ensure_demo_home(home: Path) -> bool:
    """Create a demo home at ``home`` unless one is there; returns whether it was created.

    Raises:
        ConfigError: ``home`` holds files but no ``edge.toml`` (not ours to fill).
    """
    if (home / "edge.toml").exists():
        return False
    if home.exists() and any(home.iterdir()):
        raise ConfigError(f"{home} is not empty and has no edge.toml: give an empty folder "
                          "for a demo home")
    hq = hq_home(home)
    trusted = [keystore.create_key(hq, key_id, purposes)
               for key_id, purposes in ROLE_KEYS.items()]
    sign_trust_list(hq)  # push-config carries it; the box starts with the same set
    init_home(home, STORE, DEVICE, trusted, NAME)
    box = Box.open(home)
    try:
        keystore.register_device(hq, DEVICE, STORE, box.device_key.public_key)
        now = int(time.time())
        coupons = issue_coupons(home, 5, campaign="LIVE1125", prefix="DEMO")
        pickups = []
        for i, (items, customer) in enumerate((("吐司x2 牛角包x1", "王*"),
                                               ("蛋糕x1", "李*"), ("法棍x3", "张*"))):
            number = random_pickup_number()
            code = issue_pickup(home, f"ORD-{88 + i}", number, items, customer,
                                now - 600, now + 4 * 3600)
            learn_pickup_code(box.ledger, STORE, code)
            pickups.append({"code": code, "number": number, "items": items})
    finally:
        box.close()
    (home / "samples.json").write_text(json.dumps(
        {"coupons": coupons, "pickups": pickups}, ensure_ascii=False, indent=1) + "\n")
    lines = ["# codes to scan: echo CODE > run/scanner  (each coupon works once)"]
    lines += [f"coupon  {c}" for c in coupons]
    lines += [f"pickup  {p['number']}  {p['code']}  {p['items']}" for p in pickups]
    lines += ["ean13   6901234567892  (not ours: rejected as bad format)"]
    (home / "samples.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return True


def issue_coupons(home: Path, n: int, campaign: str = "LIVE1125", prefix: str = "C",
                  max_uses: int = 1) -> list[str]:
    """``n`` free-coffee coupons signed by the demo HQ key of ``home``."""
    key = keystore.signing_key(hq_home(home), Purpose.COUPON)
    now = int(time.time())
    benefit = tokens.Benefit(tokens.BenefitKind.FREE_ITEM, 1, "咖啡一杯")
    return [sign_token(key, tokens.Coupon(key.key_id, f"{prefix}-{i:05d}", campaign,
                                          tokens.Channel.LIVESTREAM, benefit, now - 3600,
                                          now + 30 * 86400, max_uses))
            for i in range(n)]


def issue_pickup(home: Path, order_id: str, number: str, items: str, customer: str,
                 window_start: int, window_end: int) -> str:
    """A pickup code for the demo store, signed by the demo HQ key of ``home``."""
    key = keystore.signing_key(hq_home(home), Purpose.PICKUP)
    return sign_token(key, tokens.Pickup(key.key_id, order_id, STORE, number, window_start,
                                         window_end, items, customer))


def samples(home: Path) -> dict[str, Any]:
    """The sample codes of a demo home."""
    data: dict[str, Any] = json.loads((home / "samples.json").read_text())
    return data
