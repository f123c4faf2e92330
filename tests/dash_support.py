"""A seeded loop for the dashboard's tests: cards, claims, redemptions, returns, rejections.

The events go through HQ's real ingest (``EventStore.ingest_batch``) and the claims through
the web service's real claims (``Claims``), each at its own time. :class:`Seeded` keeps
the same facts as plain Python, so the tests compute the expected figures on their own,
without the aggregates.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any

from edge import tokens
from edge.keys import SigningKey
from hq.db import Database
from hq.ingest.eventstore import EventStore
from hq.issuing.registry import DeviceRegistry
from hq.web.campaigns import Campaign, CampaignKind, create_campaign
from hq.web.claims import Claims, Outcome
from sync.contract import EventBatch, Topics

if TYPE_CHECKING:
    from starlette.testclient import TestClient

    from tests.web_support import WebHq

STORES = ("S1", "S2", "S3")
DAYS = 6
START = dt.date(2026, 3, 2)  # a Monday; local midnight is the first event's day
GIFT = tokens.Benefit(tokens.BenefitKind.FREE_ITEM, 1, "咖啡一杯")


def at(day: int, hour: float) -> float:
    """Local time ``hour`` of day ``day`` of the seed."""
    d = START + dt.timedelta(days=day)
    return dt.datetime(d.year, d.month, d.day).timestamp() + hour * 3600


def local_day(t: float) -> dt.date:
    """The local calendar day of ``t``."""
    return dt.datetime.fromtimestamp(t).date()


@dataclass
class Seeded:
    """The facts seeded, each (store, step, time), in the order HQ got them."""

    facts: list[tuple[str, str, float]] = field(default_factory=list)

    def funnel(self, first: dt.date, last: dt.date,
               store: str | None = None) -> dict[str, int]:
        """The funnel's counts in a range, straight from the facts."""
        counts: Counter[str] = Counter()
        for s, step, t in self.facts:
            if (store is None or s == store) and first <= local_day(t) <= last:
                counts[step] += 1
        return {step: counts[step] for step in ("printed", "claimed", "welcome", "came_back")}

    def count(self, step: str, store: str | None = None) -> int:
        """How many of ``step`` in all (``redeemed``, ``rejected:REASON``, ``pickups``...)."""
        return sum(1 for s, st, _t in self.facts if st == step and store in (None, s))


def _decision(accepted: bool, kind: str, code_id: str | None, campaign: str | None,
              reason: str | None = None, facts: dict[str, Any] | None = None
              ) -> dict[str, Any]:
    return {"accepted": accepted, "reason": reason, "kind": kind, "code_id": code_id,
            "campaign_id": campaign, "till": "", "source": "", "facts": facts or {}}


class _Store:
    """One store's box as HQ sees it: a device and its next seq."""

    def __init__(self, events: EventStore, store: str) -> None:
        self.events = events
        self.store = store
        self.device = f"D-{store}"
        self.seq = 0

    def send(self, batch: Iterable[tuple[str, float, dict[str, Any]]]) -> None:
        wire = []
        for type_, t, body in batch:
            self.seq += 1
            wire.append({"v": 1, "id": uuid.uuid4().hex, "seq": self.seq, "store": self.store,
                         "device": self.device, "type": type_, "at": t,
                         "clock_trusted": True, "body": body})
        self.events.ingest_batch(self.store, self.device,
                                 EventBatch(self.store, self.device, wire))


def seed(db: Database, key: SigningKey, stores: tuple[str, ...] = STORES,
         days: int = DAYS) -> Seeded:
    """Seed ``days`` days of the loop at ``stores``; the facts, for the expected figures."""
    out = Seeded()
    create_campaign(db, Campaign("GIFT", CampaignKind.CARD, "新人礼", GIFT,
                                 int(at(-1, 0)), int(at(days + 30, 0)), 30, (), True, 0, 0))
    create_campaign(db, Campaign("LIVE1", CampaignKind.LINK, "直播", GIFT, int(at(-1, 0)),
                                 int(at(days + 30, 0)), 30, (), False, 0, 1000))
    events = EventStore(db, Topics(), DeviceRegistry())
    now = [0.0]
    claims = Claims(db, key, clock=lambda: now[0])
    boxes = {s: _Store(events, s) for s in stores}
    serial = 0
    redemptions: Counter[str] = Counter()  # per customer, in the order HQ gets them
    for day in range(days):
        for i, store in enumerate(stores):
            box = boxes[store]
            printed = 3 + i + day % 4
            batch = []
            for n in range(printed):
                serial += 1
                t = at(day, 9 + n * 0.1)
                batch.append(("card_issued", t, {"serial": serial, "receipt_ref": ""}))
                out.facts.append((store, "printed", t))
            box.send(batch)
            claimed = 1 + (i + day) % 3
            for n in range(claimed):
                now[0] = at(day, 12 + n * 0.1)
                customer = f"cust-{store}-{day}-{n}".ljust(16, "x")
                card = tokens.Card(store, box.device, serial - n, int(at(day, 9)))
                claim = claims.claim_card(card, customer, uuid.uuid4().hex[:20])
                assert claim.outcome is Outcome.CLAIMED and claim.coupon is not None
                out.facts.append((store, "claimed", now[0]))
                if n == 2:  # the third claimant of a day never comes to the till
                    continue
                t = at(day, 15 + n * 0.1)
                box.send([("decision", t, _decision(
                    True, "coupon", "C:" + claim.coupon.coupon_id, "GIFT",
                    facts={"coupon_id": claim.coupon.coupon_id, "channel": "welcome"}))])
                out.facts += [(store, "welcome", t), (store, "redeemed", t)]
                redemptions[customer] += 1
                if n == 0 and day % 2 == 0:  # the first comes back with a livestream coupon
                    now[0] = at(day, 18)
                    link = claims.claim_link("LIVE1", customer, uuid.uuid4().hex[:20])
                    assert link.coupon is not None
                    back = at(day + 1, 10 + i * 0.1)  # the next day, at the same store
                    box.send([("decision", back, _decision(
                        True, "coupon", "C:" + link.coupon.coupon_id, "LIVE1",
                        facts={"coupon_id": link.coupon.coupon_id,
                               "channel": "livestream"}))])
                    out.facts.append((store, "redeemed", back))
                    redemptions[customer] += 1
                    if redemptions[customer] == 2:
                        out.facts.append((store, "came_back", back))
            reasons = ("forged", "already_used_here", "wrong_store")[: 1 + (i + day) % 3]
            box.send([("decision", at(day, 16), _decision(False, "coupon", None, None, r))
                      for r in reasons])
            out.facts += [(store, f"rejected:{r}", at(day, 16)) for r in reasons]
            box.send([("decision", at(day, 17), _decision(True, "pickup", f"P:O{store}{day}",
                                                          None))])
            out.facts.append((store, "pickups", at(day, 17)))
    return out


class _Tables(HTMLParser):
    """Every ``<table id=...>`` of a page: its rows of cell texts, header first."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: list[list[str]] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._table = self.tables.setdefault(dict(attrs).get("id") or "", [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self._table[-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def html_tables(html: str) -> dict[str, list[list[str]]]:
    """The tables of a page by id (``t-funnel``...), each a list of rows of cell texts."""
    parser = _Tables()
    parser.feed(html)
    return parser.tables


def csv_rows(text: str) -> list[list[str]]:
    """A CSV download's rows."""
    return list(csv.reader(io.StringIO(text)))


def funnel_counts(table: list[list[str]]) -> list[int]:
    """The counts column of a funnel table (its header row left out)."""
    return [int(row[1]) for row in table[1:]]


def without_tokens(html: str) -> str:
    """A page without its random tokens (CSP nonce, CSRF), which may spell any id by chance."""
    return re.sub(r'(nonce|value)="[A-Za-z0-9_-]*"', r'\1=""', html)


def login(web: WebHq, name: str, password: str, expect: int = 303) -> TestClient:
    """A client signed in to the dashboard as ``name`` through the login form."""
    client = web.client()
    form = client.get("/hq/login")
    assert form.status_code == 200
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf
    done = client.post("/hq/login?next=/hq", data={"name": name, "password": password,
                                                   "csrf": csrf.group(1)})
    assert done.status_code == expect, done.text
    return client
