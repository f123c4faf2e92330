"""HQ's web service for customers: the packaging-card landing page, claims, "my coupons".

Routes are defined once, in :data:`ROUTES` (``docs/web.md`` lists them); the operators'
dashboard under ``/hq/`` has its own, ``hq.web.dashboard.HQ_ROUTES`` (``docs/dashboard.md``).
Pages are rendered on the server from Jinja templates; the only script (``static/app.js``) asks for
the position on a tap and stops a double submit. The customer is an anonymous first-party
cookie id (``cid``); nothing else is asked for but an optional phone number.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from edge import tokens
from edge.hqdata import SessionStatus
from edge.keys import Purpose
from hq.db import Database, DbError
from hq.issuing import keystore
from hq.issuing.codes import CardCheck, CardResult, verify_card
from hq.web import words
from hq.web.campaigns import Campaign, CampaignKind
from hq.web.claims import CUSTOMER_ID, IDEM_KEY, Claim, Claims, IssuedCoupon, Outcome, set_phone
from hq.web.dashboard import HQ_ROUTES, Dashboard
from hq.web.dashboard import Handler as DashHandler
from hq.web.orders import PickupOrder, PickupStatus, orders_of
from hq.web.qrimage import QrImage, qr_image
from hq.web.security import RateLimiter, SecurityHeaders, csrf_ok, csrf_token, load_secret, nonce_of
from hq.web.stores import Store, get_store, list_stores, nearest_first
from hq.web.workshops import Session, Signup, SignupRefused, SignupStatus, Workshops, get_session
from sync.contract import DEFAULT_ROOT, Topics

HERE = Path(__file__).parent
COOKIE_ID = "cid"
COOKIE_LANG = "lang"
COOKIE_MAX_AGE = 400 * 86400  # the longest a browser keeps a cookie (RFC 6265bis)
NO_STORE = {"Cache-Control": "no-store"}
CARD_PREFIX = tokens.PREFIXES[tokens.Kind.CARD]
MAX_FORM_BYTES = 4096


@dataclass(frozen=True, slots=True)
class WebSettings:
    """What ``edge-hq web`` is started with."""

    home: Path  # HQ home: the coupon key, the device registry, the web secret
    db_url: str
    card_days: int = 30  # a card can be claimed this long after it was printed
    check_limit: int = 60  # card and campaign page views per IP and per customer a minute
    claim_limit: int = 10  # claims per IP and per customer a minute
    secure_cookies: bool = False  # set behind HTTPS
    mqtt_root: str = DEFAULT_ROOT  # the topic root workshop data for boxes is queued under


class _Devices:
    """The device registry file, re-read when it changes."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self._stamp: float | None = None
        self._devices: dict[str, dict[str, str]] = {}

    def get(self) -> dict[str, dict[str, str]]:
        path = self.home / "devices.json"
        stamp = path.stat().st_mtime if path.exists() else None
        if stamp != self._stamp or stamp is None:
            self._devices, self._stamp = keystore.load_devices(self.home), stamp
        return self._devices


class Web:
    """The service's state: database, claims, templates, limits; one per process."""

    def __init__(self, settings: WebSettings, db: Database | None = None) -> None:
        """Open HQ's database and coupon key.

        Raises:
            DbError: the database cannot be opened.
            KeystoreError: there is no HQ key for coupons.
        """
        self.settings = settings
        self.key = keystore.signing_key(settings.home, Purpose.COUPON)
        self.db = db or Database(settings.db_url)
        self.claims = Claims(self.db, self.key)
        self.workshops = Workshops(self.db, self.key, Topics(settings.mqtt_root))
        self.devices = _Devices(settings.home)
        self.secret = load_secret(settings.home)
        self.checks = RateLimiter(settings.check_limit)
        self.claim_limits = RateLimiter(settings.claim_limit)
        self.env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                                      autoescape=True, trim_blocks=True, lstrip_blocks=True)

    # -- plumbing ------------------------------------------------------------------

    def _who(self, request: Request) -> tuple[str, bool]:
        """The customer id from the cookie, or a fresh one (True: set it)."""
        cid = request.cookies.get(COOKIE_ID, "")
        if CUSTOMER_ID.fullmatch(cid):
            return cid, False
        return secrets.token_urlsafe(16), True

    def _page(self, request: Request, template: str, status: int = 200,
              script: bool = False, cid: str | None = None, new: bool = False,
              **context: Any) -> HTMLResponse:
        """A rendered page, personal (``no-store``), setting the customer cookie if new."""
        if cid is None:
            cid, new = self._who(request)
        lang = words.pick_lang(request.cookies.get(COOKIE_LANG),
                               request.headers.get("accept-language", ""))

        def tr(key: str, **values: Any) -> str:
            return words.t(key, lang, **values)

        html = self.env.get_template(template).render(
            t=tr, lang=lang, other="en" if lang == "zh" else "zh", path=request.url.path,
            nonce=nonce_of(request.scope), csrf=csrf_token(self.secret, cid), script=script,
            benefit=lambda b: words.benefit(b, lang), date=words.date, km=_km, **context)
        response = HTMLResponse(html, status, headers=NO_STORE)
        if new:
            self._set_cid(response, cid)
        return response

    def _set_cid(self, response: Response, cid: str) -> None:
        response.set_cookie(COOKIE_ID, cid, max_age=COOKIE_MAX_AGE, httponly=True,
                            samesite="lax", secure=self.settings.secure_cookies)

    def _problem(self, request: Request, title: str, text: str = "", status: int = 400,
                 **context: Any) -> HTMLResponse:
        return self._page(request, "problem.html", status, title=title, text=text, **context)

    def _limited(self, request: Request, limiter: RateLimiter, cid: str) -> bool:
        ip = request.client.host if request.client else "-"
        return not limiter.allow("ip:" + ip, "cid:" + cid)

    def _page_limited(self, request: Request, cid: str) -> bool:
        """A page that shows on GET and claims on POST: the claim limit for a POST."""
        limiter = self.claim_limits if request.method == "POST" else self.checks
        return self._limited(request, limiter, cid)

    def _too_many(self, request: Request) -> HTMLResponse:
        lang = self._lang(request)
        response = self._problem(request, words.t("error.rate", lang), status=429)
        response.headers["Retry-After"] = "60"
        return response

    def _lang(self, request: Request) -> str:
        return words.pick_lang(request.cookies.get(COOKIE_LANG),
                               request.headers.get("accept-language", ""))

    async def _form(self, request: Request, cid: str) -> dict[str, str] | None:
        """The posted form, or None when its CSRF token is not this customer's.

        The pages' forms are a few short fields, url-encoded: parsed here from a body of
        at most :data:`MAX_FORM_BYTES` (a bigger one is not ours and fails the check).
        """
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                return None
        try:
            fields = dict(parse_qsl(body.decode("utf-8"), max_num_fields=10))
        except (UnicodeDecodeError, ValueError):
            return None
        if not csrf_ok(self.secret, cid, fields.get("csrf", "")):
            return None
        return fields

    async def _posted(self, request: Request, cid: str, lang: str) -> dict[str, str] | Response:
        """A posted form, within the claim limit, with this customer's CSRF token.

        Otherwise the page saying why not (429 or 403), to return as it is.
        """
        if self._limited(request, self.claim_limits, cid):
            return self._too_many(request)
        fields = await self._form(request, cid)
        if fields is None:
            return self._problem(request, words.t("error.csrf", lang), status=403, cid=cid)
        return fields

    def _check_card(self, code: str) -> tuple[CardResult, bool]:
        """The card check ``edge-hq verify-card`` does, and whether the card has expired."""
        result = verify_card(code, self.devices.get())
        card = result.card
        expired = (result.outcome is CardCheck.VALID and card is not None
                   and time.time() - card.issued_at > self.settings.card_days * 86400)
        return result, expired

    def _store(self, store_id: str) -> Store:
        return get_store(self.db, store_id) or Store(store_id, store_id)

    # -- pages ---------------------------------------------------------------------

    async def card(self, request: Request) -> Response:
        """The landing page of a packaging card (GET) and its claim (POST)."""
        code = request.path_params["code"]
        if not code.upper().startswith(CARD_PREFIX):
            return self._problem(request, words.t("error.not_found", self._lang(request)),
                                 status=404)
        cid, new = self._who(request)
        if self._page_limited(request, cid):
            return self._too_many(request)
        lang = self._lang(request)
        result, expired = await run_in_threadpool(self._check_card, code)
        if result.outcome is not CardCheck.VALID or result.card is None:
            return self._problem(request, words.t("card." + result.outcome.value, lang),
                                 words.t("card.nothing", lang), status=403, cid=cid, new=new)
        if expired:
            return self._problem(request, words.t("card.expired", lang,
                                                  days=self.settings.card_days),
                                 words.t("card.nothing", lang), status=410, cid=cid, new=new)
        card = result.card
        if request.method == "POST":
            return await self._claim_card(request, card, cid, lang)
        claimed = await run_in_threadpool(self.claims.card_claim, card)
        if claimed is not None:
            at, by, coupon_id = claimed
            if by == cid and coupon_id:
                return RedirectResponse(f"/me/{coupon_id}", 303, headers=NO_STORE)
            return self._taken(request, at, lang, cid)
        store = await run_in_threadpool(self._store, card.store_id)
        gift = await run_in_threadpool(self.claims.gift_for, card.store_id)
        return self._page(request, "landing.html", script=True, cid=cid, store=store,
                          gift=gift, action=f"/{code}", idem=secrets.token_urlsafe(16),
                          headline=words.t("landing.headline", lang), new=new)

    def _taken(self, request: Request, at: float, lang: str, cid: str) -> HTMLResponse:
        return self._problem(request, words.t("card.taken", lang, when=words.date(at)),
                             words.t("card.taken_hint", lang), status=409, cid=cid)

    async def _claim_card(self, request: Request, card: tokens.Card, cid: str,
                          lang: str) -> Response:
        claim = await self._posted_claim(request, cid, lang, self.claims.claim_card, card)
        if not isinstance(claim, Claim):
            return claim
        if claim.outcome is Outcome.TAKEN:
            return self._taken(request, claim.claimed_at or 0.0, lang, cid)
        if claim.outcome is Outcome.NO_GIFT or (claim.coupon is None
                                                and claim.outcome is Outcome.ALREADY_YOURS):
            store = await run_in_threadpool(self._store, card.store_id)
            return self._problem(request, words.t("campaign.no_gift", lang),
                                 words.t("landing.no_gift", lang), status=200, cid=cid,
                                 join=store)
        return self._after_claim(request, claim, lang, cid)

    async def _posted_claim(self, request: Request, cid: str, lang: str,
                            claim: Callable[[Any, str, str], Claim],
                            what: Any) -> Claim | Response:
        """A posted claim form, checked (CSRF) and claimed; or the page saying why not."""
        fields = await self._form(request, cid)
        if fields is None:
            return self._problem(request, words.t("error.csrf", lang), status=403, cid=cid)
        idem = fields.get("idem", "")
        if not IDEM_KEY.fullmatch(idem):
            idem = secrets.token_urlsafe(16)  # a form without one still claims, once per card
        try:
            return await run_in_threadpool(claim, what, cid, idem)
        except DbError:
            return self._problem(request, words.t("error.busy", lang), status=503, cid=cid)

    def _after_claim(self, request: Request, claim: Claim, lang: str, cid: str) -> Response:
        if claim.coupon is not None:
            return RedirectResponse(f"/me/{claim.coupon.coupon_id}", 303, headers=NO_STORE)
        return self._problem(request, words.t("campaign." + claim.outcome.value, lang),
                             status=409, cid=cid)

    async def campaign(self, request: Request) -> Response:
        """A campaign link's page (GET) and its claim (POST)."""
        cid, new = self._who(request)
        lang = self._lang(request)
        if self._page_limited(request, cid):
            return self._too_many(request)
        campaign_id = request.path_params["campaign_id"]
        if request.method == "POST":
            claim = await self._posted_claim(request, cid, lang, self.claims.claim_link,
                                             campaign_id)
            return claim if not isinstance(claim, Claim) else self._after_claim(
                request, claim, lang, cid)
        campaign: Campaign | None = await run_in_threadpool(self.claims.campaign, campaign_id)
        if (campaign is None or campaign.kind is not CampaignKind.LINK
                or not campaign.active(time.time())):
            return self._problem(request, words.t("campaign.not_active", lang), status=404,
                                 cid=cid, new=new)
        if campaign.spent():
            return self._problem(request, words.t("campaign.budget_spent", lang), status=410,
                                 cid=cid, new=new)
        return self._page(request, "landing.html", script=True, cid=cid, store=None,
                          gift=campaign, action=f"/c/{campaign_id}",
                          idem=secrets.token_urlsafe(16), headline=campaign.name, new=new)

    async def mine(self, request: Request) -> Response:
        """The customer's pickup orders and coupons, each with its status."""
        cid, new = self._who(request)
        rows = await run_in_threadpool(self._rows, cid, self._lang(request))
        orders = await run_in_threadpool(self._orders, cid, self._lang(request))
        signups = await run_in_threadpool(self._signups, cid, self._lang(request))
        return self._page(request, "mine.html", cid=cid, new=new, rows=rows, orders=orders,
                          signups=signups, saved="saved" in request.query_params,
                          phone_error="")

    def _signups(self, cid: str, lang: str) -> list[tuple[Signup, str, str, str]]:
        """The customer's workshop sign-ups: each with its session's title, time, state."""
        out = []
        for s in self.workshops.signups_of(cid):
            session = get_session(self.db, s.session_id)
            if session is None:
                continue
            state = (words.t("ticket.held", lang, party=s.party)
                     if s.status is SignupStatus.TICKET
                     else words.t("ticket.place", lang, n=s.position)
                     if s.status is SignupStatus.WAITLIST else words.t("ticket.cancelled", lang))
            out.append((s, session.title, words.date(session.starts), state))
        return out

    def _orders(self, cid: str, lang: str) -> list[tuple[PickupOrder, str, str, QrImage]]:
        """The customer's pickup orders: each with its store's name, status and code's QR."""
        out = []
        for o in orders_of(self.db, cid, time.time()):
            store = self._store(o.store).name
            key = o.status.value if o.collected_at is not None or o.status is not \
                PickupStatus.COLLECTED else "collected_undated"  # HQ pushed it collected
            status = words.t("pickup." + key, lang, store=store,
                             date=words.date(o.collected_at or 0))
            out.append((o, store, status, qr_image(o.code)))
        return out

    def _rows(self, cid: str, lang: str) -> list[tuple[IssuedCoupon, str]]:
        """The customer's coupons with their status, for the my-coupons page."""
        return [(c, self._status(c, lang)) for c in self.claims.coupons_of(cid)]

    async def phone(self, request: Request) -> Response:
        """Keep the optional phone number and, only if ticked, the marketing consent."""
        cid, _new = self._who(request)
        lang = self._lang(request)
        fields = await self._posted(request, cid, lang)
        if isinstance(fields, Response):
            return fields
        try:
            await run_in_threadpool(set_phone, self.db, cid, fields.get("phone", "").strip(),
                                    fields.get("marketing") == "yes")
        except ValueError:
            rows = await run_in_threadpool(self._rows, cid, lang)
            orders = await run_in_threadpool(self._orders, cid, lang)
            signups = await run_in_threadpool(self._signups, cid, lang)
            return self._page(request, "mine.html", 400, cid=cid, rows=rows, orders=orders,
                              signups=signups, saved=False,
                              phone_error=words.t("phone.bad", lang))
        return RedirectResponse("/me?saved=1", 303, headers=NO_STORE)

    def _status(self, coupon: IssuedCoupon, lang: str) -> str:
        uses = self.claims.uses(coupon.coupon_id)
        if uses:
            store, at = uses[-1]
            return words.t("status.used", lang, store=self._store(store).name,
                           date=words.date(at or 0))
        if coupon.valid_until < time.time():
            return words.t("status.expired", lang)
        return words.t("status.unused", lang)

    async def coupon(self, request: Request) -> Response:
        """One coupon: its QR, words, validity, status and where it works."""
        cid, _new = self._who(request)
        lang = self._lang(request)
        coupon = await run_in_threadpool(self.claims.coupon, request.path_params["coupon_id"],
                                         cid)
        if coupon is None:
            return self._problem(request, words.t("error.not_found", lang), status=404, cid=cid)
        lat, lon = _position(request)
        stores = await run_in_threadpool(list_stores, self.db)
        if coupon.stores:
            stores = [s for s in stores if s.store in coupon.stores]
        join = None
        if coupon.store:
            join = await run_in_threadpool(self._store, coupon.store)
        status = await run_in_threadpool(self._status, coupon, lang)
        join_qr = qr_image(join.join_link()) if join is not None and join.join_url else None
        return self._page(request, "coupon.html", script=True, cid=cid, coupon=coupon,
                          token=coupon.token, qr=qr_image(coupon.code), coupon_status=status,
                          stores=nearest_first(stores, lat, lon), located=lat is not None,
                          join=join, join_qr=join_qr)

    async def workshop(self, request: Request) -> Response:
        """A workshop session's sign-up page (GET) and its sign-up (POST)."""
        cid, new = self._who(request)
        lang = self._lang(request)
        if self._page_limited(request, cid):
            return self._too_many(request)
        session = await run_in_threadpool(get_session, self.db, request.path_params["session_id"])
        if session is None:
            return self._problem(request, words.t("workshop.unknown", lang), status=404,
                                 cid=cid, new=new)
        error = ""
        if request.method == "POST":
            fields = await self._form(request, cid)
            if fields is None:
                return self._problem(request, words.t("error.csrf", lang), status=403, cid=cid)
            idem = fields.get("idem", "")
            if not IDEM_KEY.fullmatch(idem):
                idem = secrets.token_urlsafe(16)
            party = fields.get("party", "1").strip()
            try:
                signup = await run_in_threadpool(
                    self.workshops.sign_up, session.session_id, cid,
                    fields.get("holder", ""), int(party) if party.isdigit() else 0, idem)
            except SignupRefused as exc:
                error = words.t(_REFUSAL_WORDS[exc.code], lang, max=session.party_max)
                session = await run_in_threadpool(get_session, self.db, session.session_id)
                assert session is not None
            except DbError:
                return self._problem(request, words.t("error.busy", lang), status=503, cid=cid)
            else:
                return RedirectResponse(f"/t/{signup.ticket_id}", 303, headers=NO_STORE)
        return self._session_page(request, session, cid, new, error)

    def _session_page(self, request: Request, session: Session, cid: str, new: bool,
                      error: str) -> HTMLResponse:
        store = self._store(session.store)
        closed = session.status is not SessionStatus.OPEN or time.time() >= session.starts
        return self._page(request, "workshop.html", 400 if error else 200, script=True, cid=cid,
                          new=new, session=session, store=store, left=session.capacity
                          - session.taken, closed=closed, error=error, hm=_hm(session.ends),
                          action=f"/w/{session.session_id}", idem=secrets.token_urlsafe(16))

    async def ticket(self, request: Request) -> Response:
        """A customer's sign-up: the ticket's QR, or the waitlist place, or cancelled."""
        cid, _new = self._who(request)
        lang = self._lang(request)
        signup: Signup | None = await run_in_threadpool(
            self.workshops.signup, request.path_params["ticket_id"], cid)
        if signup is None:
            return self._problem(request, words.t("error.not_found", lang), status=404, cid=cid)
        session = await run_in_threadpool(get_session, self.db, signup.session_id)
        assert session is not None
        store = await run_in_threadpool(self._store, session.store)
        qr = (qr_image(signup.code) if signup.status is SignupStatus.TICKET and signup.code
              else None)
        return self._page(request, "ticket.html", script=True, cid=cid, signup=signup,
                          session=session, store=store, qr=qr, hm=_hm(session.ends))

    async def cancel_ticket(self, request: Request) -> Response:
        """Cancel the customer's sign-up: frees the seats, moves the waitlist up."""
        cid, _new = self._who(request)
        lang = self._lang(request)
        fields = await self._posted(request, cid, lang)
        if isinstance(fields, Response):
            return fields
        ticket_id = request.path_params["ticket_id"]
        try:
            done = await run_in_threadpool(self.workshops.cancel, ticket_id, cid)
        except DbError:
            return self._problem(request, words.t("error.busy", lang), status=503, cid=cid)
        if done is None:
            return self._problem(request, words.t("error.not_found", lang), status=404, cid=cid)
        return RedirectResponse(f"/t/{ticket_id}", 303, headers=NO_STORE)

    async def lang(self, request: Request) -> Response:
        """Switch the page language and go back."""
        target = request.query_params.get("next", "/me")
        if not target.startswith("/") or target.startswith("//"):
            target = "/me"  # never redirect off this origin
        response = RedirectResponse(target, 303)
        lang = request.path_params["lang"]
        if lang in words.LANGS:
            response.set_cookie(COOKIE_LANG, lang, max_age=COOKIE_MAX_AGE, samesite="lax",
                                secure=self.settings.secure_cookies)
        return response


# A refused sign-up's words (hq.web.workshops.SignupRefused.code -> words key).
_REFUSAL_WORDS = {"unknown": "workshop.unknown", "closed": "workshop.closed",
                  "party": "workshop.party_bad", "holder": "workshop.holder_bad"}


def _hm(ts: float) -> str:
    return time.strftime("%H:%M", time.localtime(ts))


def _km(d: float) -> str:
    return f"{d:.1f}" if d < 10 else f"{d:.0f}"


def _position(request: Request) -> tuple[float | None, float | None]:
    try:
        lat = float(request.query_params["lat"])
        lon = float(request.query_params["lon"])
    except (KeyError, ValueError):
        return None, None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None, None
    return lat, lon


Handler = Callable[[Web, Request], Awaitable[Response]]

# The one table of routes: (path, methods, handler, what it is). docs/web.md lists them.
ROUTES: tuple[tuple[str, tuple[str, ...], Handler, str], ...] = (
    ("/me", ("GET",), Web.mine, "my pickup orders and coupons, each with its status"),
    ("/me/phone", ("POST",), Web.phone, "keep an optional phone and marketing consent"),
    ("/me/{coupon_id}", ("GET",), Web.coupon, "one coupon: QR, validity, where it works"),
    ("/c/{campaign_id}", ("GET", "POST"), Web.campaign, "a campaign link; POST claims"),
    ("/lang/{lang}", ("GET",), Web.lang, "switch the language (zh, en) and go back"),
    ("/w/{session_id}", ("GET", "POST"), Web.workshop,
     "a workshop session's sign-up page (the store group's link); POST signs up"),
    ("/t/{ticket_id}", ("GET",), Web.ticket, "my sign-up: the ticket QR, or my waitlist place"),
    ("/t/{ticket_id}/cancel", ("POST",), Web.cancel_ticket,
     "cancel my sign-up: frees the seats, moves the waitlist up, revokes the ticket"),
    ("/{code}", ("GET", "POST"), Web.card, "a packaging card's landing page; POST claims"),
)
STATIC_PATH = "/static"


def routes(web: Web) -> list[BaseRoute]:
    """Starlette routes for :data:`ROUTES`, plus the static files."""

    def bind(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await handler(web, request)
        return endpoint

    out: list[BaseRoute] = [Mount(STATIC_PATH, StaticFiles(directory=HERE / "static"),
                                  name="static")]
    # the operator pages first: the card landing's /{code} would take /hq
    dash = Dashboard(web)

    def bind_dash(handler: DashHandler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await handler(dash, request)
        return endpoint

    out += [Route(path, bind_dash(handler), methods=list(methods))
            for path, methods, handler, _what in HQ_ROUTES]
    out += [Route(path, bind(handler), methods=list(methods))
            for path, methods, handler, _what in ROUTES]
    return out


def build_app(settings: WebSettings, db: Database | None = None) -> Starlette:
    """The ASGI app for ``settings`` (opening the database unless ``db`` is given).

    Raises:
        DbError: the database cannot be opened.
        KeystoreError: there is no HQ key for coupons.
    """
    web = Web(settings, db)

    async def busy(request: Request, exc: Exception) -> Response:
        # the database failed mid-page: say so plainly; a claim was rolled back whole
        return web._problem(request, words.t("error.busy", web._lang(request)), status=503)

    app = Starlette(routes=routes(web), exception_handlers={DbError: busy})
    app.state.web = web
    app.add_middleware(SecurityHeaders)
    return app

