"""HQ's operator dashboard under ``/hq/``: the loop per chain, store, campaign and day.

Routes are defined once, in :data:`HQ_ROUTES`; the navigation is one list, :data:`NAV`
(a new page is a handler, a route and a line there). Every page needs a signed-in
operator (``hq.web.operators``); a store manager is held to their store on the server: any
other store's page or CSV is 403 with nothing of it, and chain-wide pages show only their
store. Every table is also its own CSV (``?csv=TABLE``), made from the same rows; every
chart is server-drawn SVG (``hq.web.svg``) beside its table.
"""

from __future__ import annotations

import calendar
import csv
import html
import io
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast
from urllib.parse import parse_qsl, urlencode

from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from hq.reports import dashboard as figures
from hq.reports import workshops as workshop_figures
from hq.reports.aggregates import COLUMNS
from hq.reports.dashboard import Days, RangeError, Totals
from hq.web import svg, words
from hq.web.operators import (
    Operator,
    Role,
    check_password,
    close_session,
    open_session,
    session_operator,
)
from hq.web.security import RateLimiter, csrf_ok, csrf_token, nonce_of

if TYPE_CHECKING:  # the app module imports this one
    from hq.web.app import Web

SESSION_COOKIE: Final = "hqs"
LOGIN_COOKIE: Final = "hql"  # a random id the login form's CSRF token is bound to
DEFAULT_DAYS: Final = 30
MAX_DAY_ROWS: Final = 62  # the chain's longer ranges go by month
TOP_N: Final = 10
MAX_FORM_BYTES: Final = 4096
NO_STORE: Final = {"Cache-Control": "no-store"}

Cell = str | tuple[str, str]  # text, or (text, link)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Table:
    """A table as the page shows it and its CSV gives it: the same header and rows."""

    id: str
    header: tuple[Cell, ...]  # a link in a header sorts by that column
    rows: tuple[tuple[Cell, ...], ...]

    def body_html(self) -> Markup:
        """The rows as ``<tr>`` markup, every text escaped.

        Built here: a 2,000-store table renders several times faster than cell by cell
        in the template.
        """
        out = []
        for row in self.rows:
            cells = "".join(f"<td>{_esc(c)}</td>" if isinstance(c, str) else
                            f'<td><a href="{_esc(c[1])}">{_esc(c[0])}</a></td>'
                            for c in row)
            out.append(f"<tr>{cells}</tr>\n")
        return Markup("".join(out))

    def csv(self) -> str:
        """The table as CSV text (links dropped, text kept)."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow([_text(c) for c in self.header])
        for row in self.rows:
            writer.writerow([_inert(_text(c)) for c in row])
        return out.getvalue()


def _esc(text: str) -> str:
    """``text`` escaped for HTML text or a quoted attribute.

    Most cells are numbers, with nothing to escape; ``html.escape`` is some 3x faster
    per cell than markupsafe's.
    """
    return text if text.isdigit() else html.escape(text)


def _text(cell: Cell) -> str:
    return cell if isinstance(cell, str) else cell[0]


def _inert(text: str) -> str:
    """A cell a spreadsheet would run as a formula, quoted (a box's reason text is data)."""
    risky = text[:1] in ("=", "+", "@", "\t", "\r") or (
        text[:1] == "-" and len(text) > 1 and not text[1].isdigit())
    return "'" + text if risky else text


@dataclass(frozen=True, slots=True)
class Section:
    """A heading, a chart (SVG markup, may be empty) and the table it draws."""

    title: str
    table: Table
    chart: str = ""


def _pct(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.1f}%"


class Dashboard:
    """The operator pages over the web service's database, templates and secret."""

    def __init__(self, web: Web, login_limit: int = 10) -> None:
        """Serve over ``web``'s state; ``login_limit`` sign-in tries per IP and name a minute."""
        self.web = web
        self.db = web.db
        self.logins = RateLimiter(login_limit)

    # -- plumbing ------------------------------------------------------------------

    def _lang(self, request: Request) -> str:
        return words.pick_lang(request.cookies.get("lang"),
                               request.headers.get("accept-language", ""))

    def _render(self, request: Request, template: str, status: int = 200,
                **context: Any) -> HTMLResponse:
        lang = self._lang(request)

        def tr(key: str, **values: Any) -> str:
            return words.t(key, lang, **values)

        context.setdefault("path", request.url.path)
        html = self.web.env.get_template(template).render(
            t=tr, lang=lang, other="en" if lang == "zh" else "zh",
            nonce=nonce_of(request.scope), **context)
        return HTMLResponse(html, status, headers=NO_STORE)

    async def _operator(self, request: Request) -> Operator | None:
        sid = request.cookies.get(SESSION_COOKIE, "")
        if not sid:
            return None
        return await run_in_threadpool(session_operator, self.db, sid)

    def _to_login(self, request: Request) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse("/hq/login?" + urlencode({"next": target}), 303,
                                headers=NO_STORE)

    def _forbidden(self, request: Request, op: Operator) -> Response:
        lang = self._lang(request)
        return self._page(request, op, words.t("hq.forbidden", lang), [], None, status=403)

    def _page(self, request: Request, op: Operator, heading: str, sections: list[Section],
              days: Days | None, status: int = 200, back: str = "") -> Response:
        """The page, or one of its tables as CSV when ``?csv=ID`` names one."""
        wanted = request.query_params.get("csv")
        if wanted is not None and status == 200:
            for s in sections:
                if s.table.id == wanted:
                    # the path is the operator's to type: only safe characters in a header
                    base = re.sub(r"[^A-Za-z0-9_-]+", "-", request.url.path.strip("/"))
                    name = f"{base}-{wanted}.csv"
                    return Response(s.table.csv(), 200, media_type="text/csv; charset=utf-8",
                                    headers={**NO_STORE, "Content-Disposition":
                                             f'attachment; filename="{name}"'})
            return Response("no such table\n", 404, media_type="text/plain")
        sid = request.cookies.get(SESSION_COOKIE, "")
        lang = self._lang(request)
        query = [(k, v) for k, v in request.query_params.multi_items() if k != "csv"]
        return self._render(
            # a refused page echoes nothing of what was asked, not even its path
            request, "hq_page.html", status, path=request.url.path if status < 400 else "/hq",
            title=heading, op=op, nav=_nav(op, lang, days),
            sections=sections, days=None if days is None else days.iso(), back=back,
            csrf=csrf_token(self.web.secret, "op:" + sid),
            csv_base=request.url.path + "?" + urlencode([*query, ("csv", "")]))

    def _days(self, request: Request) -> Days:
        """The page's date range (``from``, ``to``), the last 30 days by default.

        Raises:
            RangeError: a date that cannot be read.
        """
        first, last = request.query_params.get("from"), request.query_params.get("to")
        if not first and not last:
            return Days.last_days(DEFAULT_DAYS)
        default_first, default_last = Days.last_days(DEFAULT_DAYS).iso()
        return Days.parse(first or default_first, last or default_last)

    async def _load(self, request: Request, load: Callable[[Operator, Days], T],
                    may: Callable[[Operator], bool] = lambda _op: True,
                    ) -> tuple[Operator, Days, T] | Response:
        """The signed-in operator, the range and what ``load`` read for it, or why not.

        One trip to a worker thread: the session is checked against the database first
        (a removed operator is out at once), then ``may`` (a manager's store, an admin's
        page), and only then does ``load`` read the figures.
        """
        sid = request.cookies.get(SESSION_COOKIE, "")
        try:
            days: Days | None = self._days(request)
            bad = ""
        except RangeError as exc:
            days, bad = None, str(exc)

        def work() -> tuple[Operator | None, T | None]:
            op = session_operator(self.db, sid)
            if op is None or days is None or not may(op):
                return op, None
            return op, load(op, days)

        # no cookie: nobody to look up, no trip to a worker thread
        op, found = await run_in_threadpool(work) if sid else (None, None)
        if op is None:
            return self._to_login(request)
        if days is None:
            lang = self._lang(request)
            return self._page(request, op, words.t("hq.bad_range", lang, why=bad), [], None,
                              status=400)
        if not may(op):
            return self._forbidden(request, op)
        return op, days, cast(T, found)

    async def _form(self, request: Request) -> dict[str, str]:
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                return {}
        try:
            return dict(parse_qsl(body.decode("utf-8"), max_num_fields=10))
        except (UnicodeDecodeError, ValueError):
            return {}

    # -- sign in and out ---------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        """The sign-in form (GET) and the sign-in (POST)."""
        lang = self._lang(request)
        target = request.query_params.get("next", "/hq")
        if not target.startswith("/hq") or "//" in target:
            target = "/hq"  # never sign in onto another origin
        nonce_id = request.cookies.get(LOGIN_COOKIE, "")
        fresh = len(nonce_id) < 16
        if fresh:
            nonce_id = secrets.token_urlsafe(16)
        error, status = "", 200
        if request.method == "POST":
            fields = await self._form(request)
            name = fields.get("name", "")[:64]
            ip = request.client.host if request.client else "-"
            if fresh or not csrf_ok(self.web.secret, "login:" + nonce_id,
                                    fields.get("csrf", "")):
                error, status = words.t("error.csrf", lang), 403
            elif not self.logins.allow("ip:" + ip, "name:" + name):
                error, status = words.t("error.rate", lang), 429
            else:
                op = await run_in_threadpool(check_password, self.db, name,
                                             fields.get("password", ""))
                if op is not None:
                    sid = await run_in_threadpool(open_session, self.db, op)
                    response = RedirectResponse(target, 303, headers=NO_STORE)
                    response.set_cookie(SESSION_COOKIE, sid, httponly=True, samesite="lax",
                                        secure=self.web.settings.secure_cookies, path="/hq")
                    return response
                error, status = words.t("hq.login_failed", lang), 401
        page = self._render(request, "hq_login.html", status, title=words.t("hq.login", lang),
                                error=error, target=target,
                                csrf=csrf_token(self.web.secret, "login:" + nonce_id))
        if status == 429:
            page.headers["Retry-After"] = "60"
        if fresh:
            page.set_cookie(LOGIN_COOKIE, nonce_id, httponly=True, samesite="strict",
                            secure=self.web.settings.secure_cookies, path="/hq")
        return page

    async def logout(self, request: Request) -> Response:
        """Sign out (POST with the page's CSRF token): the session ends at HQ too."""
        sid = request.cookies.get(SESSION_COOKIE, "")
        fields = await self._form(request)
        if sid and csrf_ok(self.web.secret, "op:" + sid, fields.get("csrf", "")):
            await run_in_threadpool(close_session, self.db, sid)
        response = RedirectResponse("/hq/login", 303, headers=NO_STORE)
        response.delete_cookie(SESSION_COOKIE, path="/hq")
        return response

    async def home(self, request: Request) -> Response:
        """The operator's first page: the chain for an admin, their store for a manager."""
        op = await self._operator(request)
        if op is None:
            return self._to_login(request)
        if op.role is Role.MANAGER:
            return RedirectResponse(f"/hq/stores/{op.store}", 303, headers=NO_STORE)
        return RedirectResponse("/hq/chain", 303, headers=NO_STORE)

    # -- pages ---------------------------------------------------------------------

    async def chain(self, request: Request) -> Response:
        """The chain's funnel, its days and every store's figures."""
        def load(_op: Operator, days: Days) -> tuple[list[Totals], list[Totals]]:
            # a long range reads (and shows) months
            per_period = (figures.by_month if len(days) > MAX_DAY_ROWS else figures.by_day)
            return per_period(self.db, days), figures.by_store(self.db, days)

        guard = await self._load(request, load, lambda op: op.role is Role.ADMIN)
        if isinstance(guard, Response):
            return guard
        op, days, (per_period, per_store) = guard
        lang = self._lang(request)
        monthly = len(days) > MAX_DAY_ROWS
        q = _range_query(days)
        sections = [
            _funnel_section(figures.total(per_store), lang),
            _months_section(per_period, lang) if monthly else
            _days_section(per_period, lang, None, q),
            Section(words.t("hq.sec.stores", lang), _totals_table(
                "stores", "hq.col.store", per_store, lang,
                lambda key: f"/hq/stores/{key}?{q}")),
        ]
        return self._page(request, op, words.t("hq.nav.chain", lang), sections, days)

    async def store(self, request: Request) -> Response:
        """One store's funnel and its days (a long range: its months, each a link to its days)."""
        store = str(request.path_params["store"])

        def load(_op: Operator, days: Days) -> list[Totals]:
            per_period = (figures.by_month if len(days) > MAX_DAY_ROWS else figures.by_day)
            return per_period(self.db, days, store)

        guard = await self._load(request, load, lambda op: op.may_see(store))
        if isinstance(guard, Response):
            return guard
        op, days, per_period = guard
        lang = self._lang(request)
        q = _range_query(days)
        sections = [_funnel_section(figures.total(per_period), lang),
                    _months_section(per_period, lang, _month_link(store, days))
                    if len(days) > MAX_DAY_ROWS else _days_section(per_period, lang, store, q)]
        return self._page(request, op, words.t("hq.store_title", lang, store=store), sections,
                          days, back=f"/hq/chain?{q}" if op.role is Role.ADMIN else "")

    async def day(self, request: Request) -> Response:
        """One store's day: its funnel, campaigns, channels and rejections."""
        store = str(request.path_params["store"])
        lang = self._lang(request)
        try:
            one: Days | None = Days.parse(request.path_params["day"], request.path_params["day"])
            bad = ""
        except RangeError as exc:
            one, bad = None, str(exc)

        def load(_op: Operator, _days: Days) -> tuple[list[Totals], list[Section]] | None:
            if one is None:
                return None
            return figures.by_day(self.db, one, store), self._breakdowns(one, store, lang)

        guard = await self._load(request, load, lambda op: op.may_see(store))
        if isinstance(guard, Response):
            return guard
        op, days, found = guard
        if one is None or found is None:
            return self._page(request, op, words.t("hq.bad_range", lang, why=bad), [], None,
                              status=400)
        per_day, breakdowns = found
        sections = [_funnel_section(figures.total(per_day), lang), *breakdowns]
        # the range the operator came with stays in every link (back to the store, the chain)
        return self._page(request, op, words.t("hq.day_title", lang, store=store,
                                               day=one.iso()[0]), sections, days,
                          back=f"/hq/stores/{store}?{_range_query(days)}")

    def _breakdowns(self, days: Days, store: str | None, lang: str) -> list[Section]:
        uses = figures.campaigns(self.db, days, store)
        channels = figures.details(self.db, days, "channel", store)
        reasons = figures.details(self.db, days, "reason", store)
        return [
            Section(words.t("hq.sec.campaigns", lang), Table(
                "campaigns", _header(lang, "campaign", "name", "redeemed", "issued", "budget",
                                     "budget_used"),
                tuple((u.campaign_id, u.name, str(u.redeemed), _opt(u.issued),
                       _opt(u.budget), _pct(u.issued / u.budget if u.budget and u.issued
                                            is not None else None))
                      for u in uses)),
                svg.hbars(words.t("hq.sec.campaigns", lang),
                          [(u.campaign_id, u.redeemed) for u in uses])),
            Section(words.t("hq.sec.channels", lang), Table(
                "channels", _header(lang, "channel", "redeemed"),
                tuple((_channel(c, lang), str(n)) for c, n in channels)),
                svg.hbars(words.t("hq.sec.channels", lang),
                          [(_channel(c, lang), n) for c, n in channels])),
            Section(words.t("hq.sec.reasons", lang), Table(
                "reasons", _header(lang, "reason", "rejected"),
                tuple((r, str(n)) for r, n in reasons)),
                svg.hbars(words.t("hq.sec.reasons", lang), reasons)),
        ]

    async def campaigns(self, request: Request) -> Response:
        """Redemptions by campaign and channel, top and bottom stores, rejection reasons."""
        lang = self._lang(request)

        def load(op: Operator, days: Days) -> tuple[list[Section], list[Totals]]:
            return (self._breakdowns(days, op.scope, lang),
                    figures.by_store(self.db, days, op.scope))

        guard = await self._load(request, load)
        if isinstance(guard, Response):
            return guard
        op, days, (sections, per_store) = guard
        ranked = sorted(per_store, key=lambda t: (-t.get("redeemed"), t.key))
        q = _range_query(days)
        for table_id, title, rows in (("top", "hq.sec.top", ranked[:TOP_N]),
                                      ("bottom", "hq.sec.bottom", ranked[::-1][:TOP_N])):
            sections.append(Section(words.t(title, lang), Table(
                table_id, _header(lang, "store", "redeemed", "rejected", "voided"),
                tuple(((t.key, f"/hq/stores/{t.key}?{q}"), str(t.get("redeemed")),
                       str(t.get("rejected")), str(t.get("voided"))) for t in rows))))
        return self._page(request, op, words.t("hq.nav.campaigns", lang), sections, days)

    async def pickups(self, request: Request) -> Response:
        """Pickup orders per store: collected on time, late, not collected; online share."""
        guard = await self._load(request, lambda op, days: figures.pickups(self.db, days,
                                                                             op.scope))
        if isinstance(guard, Response):
            return guard
        op, days, rows = guard
        lang = self._lang(request)
        table = Table("pickups", _header(lang, "store", "assigned", "on_time", "late",
                                         "not_collected", "waiting", "cancelled",
                                         "online_share"),
                      tuple((p.store, str(p.assigned), str(p.on_time), str(p.late),
                             str(p.not_collected), str(p.waiting), str(p.cancelled),
                             _pct(p.online_share)) for p in rows))
        chart = svg.bars(words.t("hq.sec.pickups", lang), [p.store for p in rows],
                         [(words.t("hq.col.on_time", lang), [p.on_time for p in rows]),
                          (words.t("hq.col.late", lang), [p.late for p in rows]),
                          (words.t("hq.col.not_collected", lang),
                           [p.not_collected for p in rows])])
        return self._page(request, op, words.t("hq.nav.pickups", lang),
                          [Section(words.t("hq.sec.pickups", lang), table, chart)], days)

    async def workshops(self, request: Request) -> Response:
        """Workshop sessions starting in the range: sign-ups, check-ins, no-shows."""
        def load(op: Operator, days: Days) -> list[workshop_figures.SessionFigures]:
            since, until = days.epoch()
            return workshop_figures.build(self.db, since, until=until, store=op.scope)

        guard = await self._load(request, load)
        if isinstance(guard, Response):
            return guard
        op, days, rows = guard
        lang = self._lang(request)
        sessions = Table("workshops", _header(
            lang, "store", "session", "title", "starts", "capacity", "tickets", "seats",
            "waitlist", "cancelled", "checked_in", "people_in", "no_shows"),
            tuple((f.store, f.session_id, f.title,
                   time.strftime("%Y-%m-%d %H:%M", time.localtime(f.starts)),
                   str(f.capacity), str(f.tickets), str(f.seats), str(f.waitlist),
                   str(f.cancelled), str(f.checked_in), str(f.people_in), str(f.no_shows))
                  for f in rows))
        per_store = workshop_figures.by_store(rows)
        stores = Table("workshop_stores", _header(
            lang, "store", "sessions", "tickets", "checked_in", "no_shows"),
            tuple((s.store, str(s.sessions), str(s.tickets), str(s.checked_in),
                   str(s.no_shows)) for s in per_store))
        chart = svg.bars(words.t("hq.sec.workshop_stores", lang), [s.store for s in per_store],
                         [(words.t("hq.col.tickets", lang), [s.tickets for s in per_store]),
                          (words.t("hq.col.checked_in", lang),
                           [s.checked_in for s in per_store]),
                          (words.t("hq.col.no_shows", lang), [s.no_shows for s in per_store])])
        return self._page(request, op, words.t("hq.nav.workshops", lang),
                          [Section(words.t("hq.sec.workshop_stores", lang), stores, chart),
                           Section(words.t("hq.sec.workshops", lang), sessions)], days)

    async def boxes(self, request: Request) -> Response:
        """Every box, the ones in trouble first (or sorted by ``?sort=COLUMN``)."""
        op = await self._operator(request)
        if op is None:
            return self._to_login(request)
        lang = self._lang(request)
        store = op.scope
        found = await run_in_threadpool(figures.boxes, self.db, store)

        def yes_no(v: bool | None) -> str:
            return "-" if v is None else words.t("hq.yes" if v else "hq.no", lang)

        rows = [(b.store, b.status.device,
                 words.t(f"hq.state.{b.status.state}", lang)
                 if b.status.state in ("online", "offline") else "-",
                 "-" if b.status.last_seen is None else words.date(b.status.last_seen),
                 _opt(b.status.backlog), _opt(b.status.reported_version),
                 yes_no(b.clock_trusted), str(b.conflicts), str(b.open_gaps),
                 " ".join(words.t(f"hq.problem.{p}", lang) for p in b.problems))
                for b in found]
        header = _header(lang, "store", "device", "state", "last_seen", "backlog", "config",
                         "clock", "conflicts", "gaps", "trouble")
        sort = request.query_params.get("sort", "")
        if sort in BOX_COLUMNS:  # else trouble first, as figures.boxes ordered them
            i = BOX_COLUMNS.index(sort)
            rows.sort(key=lambda r: _sort_key(r[i]))
        sortable = tuple((h, f"/hq/boxes?sort={c}") for h, c in zip(header, BOX_COLUMNS,
                                                                        strict=True))
        table = Table("boxes", sortable, tuple(rows))
        return self._page(request, op, words.t("hq.nav.boxes", lang),
                          [Section(words.t("hq.sec.boxes", lang), table)], None)


BOX_COLUMNS: Final = ("store", "device", "state", "last_seen", "backlog", "config", "clock",
                      "conflicts", "gaps", "trouble")


def _sort_key(text: str) -> tuple[int, float, str]:
    try:
        return (0, -float(text), "")  # numbers: biggest first
    except ValueError:
        return (1, 0.0, text)


def _opt(v: int | None) -> str:
    return "-" if v is None else str(v)


def _channel(c: str, lang: str) -> str:
    key = f"hq.channel.{c}"
    return words.t(key, lang) if key in words.WORDS else c


def _header(lang: str, *cols: str) -> tuple[str, ...]:
    return tuple(words.t(f"hq.col.{c}", lang) for c in cols)


def _range_query(days: Days) -> str:
    first, last = days.iso()
    return urlencode({"from": first, "to": last})


def _funnel_section(totals: Totals, lang: str) -> Section:
    steps = figures.funnel(totals)
    table = Table("funnel", _header(lang, "step", "count", "of_previous", "of_first"),
                  tuple((words.t(f"hq.step.{s.name}", lang), str(s.count), _pct(s.of_previous),
                         _pct(s.of_first)) for s in steps))
    chart = svg.hbars(words.t("hq.sec.funnel", lang),
                      [(words.t(f"hq.step.{s.name}", lang), s.count) for s in steps])
    return Section(words.t("hq.sec.funnel", lang), table, chart)


_DAY_COLUMNS: Final = (*figures.FUNNEL, "redeemed", "rejected", "voided", "pickups")
_DAY_AT: Final = tuple(COLUMNS.index(c) for c in _DAY_COLUMNS)  # where each is in Totals


def _col_name(column: str, lang: str) -> str:
    return words.t(f"hq.step.{column}" if column in figures.FUNNEL else f"hq.col.{column}",
                   lang)


def _totals_table(table_id: str, key_col: str, rows: Sequence[Totals], lang: str,
                  link: Callable[[str], str]) -> Table:
    header = (words.t(key_col, lang), *(_col_name(c, lang) for c in _DAY_COLUMNS))
    return Table(table_id, header, tuple(
        (_linked(t.key, link(t.key)), *(str(t.values[i]) for i in _DAY_AT)) for t in rows))


def _linked(text: str, href: str) -> Cell:
    return (text, href) if href else text


def _days_section(per_day: Sequence[Totals], lang: str, store: str | None,
                  q: str) -> Section:
    labeled = [Totals(figures.iso_day(int(t.key)), t.values) for t in per_day]

    def link(day: str) -> str:
        # the chain's days have no single store to drill into: they link to nothing deeper
        return f"/hq/stores/{store}/{day}?{q}" if store is not None else ""

    table = _totals_table("days", "hq.col.day", labeled, lang, link)
    chart = svg.bars(words.t("hq.sec.days", lang), [t.key for t in labeled],
                     [(_col_name(c, lang), [t.get(c) for t in labeled])
                      for c in figures.FUNNEL])
    return Section(words.t("hq.sec.days", lang), table, chart)


def _month_link(store: str, days: Days) -> Callable[[str], str]:
    """A store's month (``YYYY-MM``) to its page over that month's days of ``days``."""

    def link(month: str) -> str:
        year, mon = int(month[:4]), int(month[5:])
        last = calendar.monthrange(year, mon)[1]
        first_day = max(days.first, year * 10000 + mon * 100 + 1)
        last_day = min(days.last, year * 10000 + mon * 100 + last)
        return f"/hq/stores/{store}?{_range_query(Days(first_day, last_day))}"

    return link


def _months_section(per_month: Sequence[Totals], lang: str,
                    link: Callable[[str], str] = lambda _key: "") -> Section:
    labeled = [Totals(f"{t.key[:4]}-{t.key[4:]}", t.values) for t in per_month]
    table = _totals_table("months", "hq.col.month", labeled, lang, link)
    chart = svg.bars(words.t("hq.sec.months", lang), [t.key for t in labeled],
                     [(_col_name(c, lang), [t.get(c) for t in labeled])
                      for c in figures.FUNNEL])
    return Section(words.t("hq.sec.months", lang), table, chart)


def _nav(op: Operator, lang: str, days: Days | None) -> list[tuple[str, str]]:
    """The navigation for ``op``: :data:`NAV`, a manager's store in place of the chain."""
    q = "" if days is None else "?" + _range_query(days)
    out = []
    for key, href in NAV:
        if key == "chain" and op.role is Role.MANAGER:
            key, href = "store", f"/hq/stores/{op.store}"
        out.append((words.t(f"hq.nav.{key}", lang), href + (q if key != "boxes" else "")))
    return out


Handler = Callable[[Dashboard, Request], Awaitable[Response]]

# The dashboard's routes, defined once: (path, methods, handler, what it is). The web app
# mounts them before the customer pages' catch-all; docs/dashboard.md lists them.
HQ_ROUTES: tuple[tuple[str, tuple[str, ...], Handler, str], ...] = (
    ("/hq", ("GET",), Dashboard.home, "the chain (admin) or the operator's store (manager)"),
    ("/hq/login", ("GET", "POST"), Dashboard.login, "sign in; POST checks the password"),
    ("/hq/logout", ("POST",), Dashboard.logout, "sign out"),
    ("/hq/chain", ("GET",), Dashboard.chain, "the chain's funnel, days and stores (admin)"),
    ("/hq/stores/{store}", ("GET",), Dashboard.store,
     "a store's funnel and days (over 62 days: its months, each a link to that month's days)"),
    ("/hq/stores/{store}/{day}", ("GET",), Dashboard.day,
     "a store's day: funnel, campaigns, channels, rejections"),
    ("/hq/campaigns", ("GET",), Dashboard.campaigns,
     "redemptions by campaign and channel, budget used, top and bottom stores, rejections"),
    ("/hq/pickups", ("GET",), Dashboard.pickups,
     "pickup orders per store: on time, late, not collected; online share"),
    ("/hq/workshops", ("GET",), Dashboard.workshops,
     "workshop sessions per store: sign-ups, waitlist, check-ins, no-shows"),
    ("/hq/boxes", ("GET",), Dashboard.boxes, "every box's sync state, trouble first"),
)

# The navigation, one list: (word key under hq.nav., path). A new page adds a line here.
NAV: tuple[tuple[str, str], ...] = (
    ("chain", "/hq/chain"),
    ("campaigns", "/hq/campaigns"),
    ("pickups", "/hq/pickups"),
    ("workshops", "/hq/workshops"),
    ("boxes", "/hq/boxes"),
)
