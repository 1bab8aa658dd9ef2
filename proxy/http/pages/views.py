"""The dashboard: server-rendered pages (Jinja2 templates under templates/, CSS and JS
under static/, served by this blueprint; no CDN, no build step) for the people who use
the gateway and its admins. Every operation is a call into the same library the JSON
API and the CLI call (proxy/accounts/; the transfer API's ``send``). The blueprint is
put together in site.py; the admin pages are admin.py.

Who: the session cookie of identity.py. A page that needs a login sends a logged-out
browser to /login; /admin answers 403 to anyone but an admin. Form posts: refused when
the browser says they come from another site (identity.check_same_site), and a logged-in
form carries the session's CSRF token (accounts.csrf_token) or is refused (403). Every
refusal is shown on the page it came from, in words (never a stack trace); every page
has the security headers of ``SECURITY_HEADERS`` (no inline script: the JS is a file).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable, Callable
from urllib.parse import urlencode

from quart import Response, redirect, render_template, request
from quart.blueprints import BlueprintSetupState

from ... import errors
from ...accounts.errors import AccountError
from ...accounts.sessions import csrf_token, same_token
from ...errors import GatewayError
from ...money import MICRO, format_usd, parse_usd, scale
from ...payments.registry import TOPUP_MAX, TOPUP_MIN
from .. import identity
from ..api.accounts import describe_entry, describe_key, describe_usage, key_order, usage_lines
from ..context import current_gateway
from ..identity import Caller, current_accounts
from ..api.payments import current_payments
from ..redirect_target import same_site_path
from ..api.transfer import check_rate, send, usd_amount
from . import topup as topping_up
from storage.base import Profile, Session, StoreError
from storage.records import iso_time

NAME = "pages"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = (("Content-Security-Policy", CSP), ("X-Frame-Options", "DENY"),
                    ("Referrer-Policy", "same-origin"), ("X-Content-Type-Options", "nosniff"))
CHART_DAYS = 30
RECENT = 10                        # requests on the dashboard
USAGE_PAGE = 50
LEDGER_PAGE = 50
REFUSALS = (GatewayError, AccountError, StoreError)  # expected: shown on the page, in words
LANES = (("input", "Input"), ("cache_write_5m", "Cache write 5m"), ("cache_write_1h", "Cache write 1h"),
         ("cache_read", "Cache read"), ("output", "Output"))


def set_up(state: BlueprintSetupState) -> None:
    identity.install(state.app)


def is_page(endpoint: str | None) -> bool:
    """A page or a static file of the dashboard (not an API route)."""
    return bool(endpoint) and endpoint.startswith(NAME + ".")


def wants_html() -> bool:
    """A browser asking for a page: text/html preferred to JSON (API clients, and Claude
    Code's ``HEAD /``, send ``*/*`` or nothing, and keep getting JSON)."""
    return request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html"


async def add_security_headers(response: Response) -> Response:
    if response.mimetype == "text/html" or is_page(request.endpoint):
        for name, value in SECURITY_HEADERS:
            response.headers[name] = value
    return response


# -- who -------------------------------------------------------------------------------
class LoginNeeded(Exception):
    """A page that needs a session was asked for without one."""


async def current_session() -> Session | None:
    return await current_accounts().session(request.cookies.get(identity.COOKIE))


async def logged_in(admin_only: bool = False) -> Session:
    session = await current_session()
    if session is None:
        raise LoginNeeded()
    if admin_only and not session.profile.is_admin:
        raise errors.permission("This page is for admins")
    return session


def as_caller(session: Session) -> Caller:
    return Caller(session.profile.account_id, session.profile.username, profile=session.profile)


async def form() -> dict[str, str]:
    """A same-site form post's fields (403 for another site's)."""
    identity.check_same_site()
    return {k: v for k, v in (await request.form).items()}


async def checked_form(session: Session) -> dict[str, str]:
    """A logged-in form post's fields: same-site, with this session's CSRF token."""
    fields = await form()
    if not same_token(fields.get("csrf", ""), csrf_token(request.cookies.get(identity.COOKIE, ""))):
        raise errors.permission("This form has expired or did not come from this site: reload the page and retry")
    return fields


# -- rendering -------------------------------------------------------------------------
async def page(template: str, session: Session | None = None, status: int = 200, **values: Any) -> Response:
    """A page, with what every template needs (who is logged in, the CSRF token)."""
    if session is None:
        session = await current_session()
    token = request.cookies.get(identity.COOKIE)
    html = await render_template(template, me=session.profile if session else None,
                                 csrf=csrf_token(token) if session and token else "", path=request.path,
                                 **values)
    return Response(html, status=status, content_type="text/html; charset=utf-8")


def as_error(exc: Exception) -> GatewayError:
    """An expected refusal (one of REFUSALS) as the error the API would answer with."""
    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, AccountError):
        return identity.as_gateway_error(exc)
    return errors.from_store(exc)  # a StoreError


async def refused_page(render: Callable[..., Awaitable[Response]], exc: Exception, *args: Any,
                       **values: Any) -> Response:
    """``render``'s page with the refusal on it, its status and headers (a 429's retry-after)."""
    error = as_error(exc)
    response = await render(*args, status=error.status, error=error.message, **values)
    for name, value in error.headers:
        response.headers[name] = value
    return response


async def to_login(_exc: LoginNeeded) -> Response:
    return redirect("/login?" + urlencode({"next": request.path}), 303)


async def refusal_page(exc: Exception) -> Response:
    return await refused_page(page, exc, "error.html")


async def server_error_page(_exc: BaseException) -> Response:
    """No session lookup here (the store may be what failed), and no detail."""
    html = await render_template("error.html", me=None, csrf="", path=request.path,
                                 error="Something went wrong on our side; nothing was changed. Please try again.")
    return Response(html, status=500, content_type="text/html; charset=utf-8")


Action = Callable[[Session, dict[str, str]], Awaitable[Response | dict[str, Any]]]


async def posted(session: Session, action: Action, render: Callable[..., Awaitable[Response]]) -> Response:
    """Run a logged-in form's action: its answer (a response, or values for the page),
    or the page again with the refusal on it."""
    try:
        result = await action(session, await checked_form(session))
    except REFUSALS as exc:
        return await refused_page(render, exc, session)
    if isinstance(result, Response):
        return result
    return await render(await current_session() or session, **result)


async def form_page(render: Callable[..., Awaitable[Response]], action: Action) -> Response:
    """A logged-in page with a form: GET shows it, POST runs ``action``."""
    session = await logged_in()
    if request.method == "GET":
        return await render(session)
    return await posted(session, action, render)


def dollars(text: str, what: str = "The amount") -> int:
    """A form's positive USD amount -> micro-USD (400 otherwise)."""
    amount = usd_amount(text.strip())
    if amount is None:
        raise errors.invalid_request(f"{what} must be a positive number of dollars, at most 6 decimals")
    return amount


def after_login(profile: Profile, token: str) -> Response:
    target = same_site_path(request.args.get("next", ""))  # only this site's paths
    if target is None:
        target = "/admin" if profile.is_admin else "/dashboard"
    return identity.set_session_cookie(redirect(target, 303), token)


# -- public pages ----------------------------------------------------------------------
async def home() -> Response:
    """What the service is, the models and their five price lanes, the top-up calculator."""
    gateway = current_gateway()
    multiplier = gateway.config.value_multiplier
    try:
        paid = parse_usd(request.args.get("pay", "20"))
    except ValueError:
        paid = 0
    error = None
    if not TOPUP_MIN * MICRO <= paid <= TOPUP_MAX * MICRO:
        paid, error = 20 * MICRO, f"Pick an amount from ${TOPUP_MIN} to ${TOPUP_MAX}"
    models = [{"id": m.id, "name": m.display_name,
               "lanes": [format_usd(getattr(m.prices, lane)) for lane, _ in LANES]} for m in gateway.catalog.models]
    return await page("home.html", models=models, lanes=[label for _, label in LANES],
                      multiplier=format(multiplier.normalize(), "f"), paid=format_usd(paid),
                      value=format_usd(scale(paid, multiplier)), pay_error=error,
                      topup_min=TOPUP_MIN, topup_max=TOPUP_MAX, base_url=identity.own_origin())


async def signup() -> Response:
    return await enter("signup.html", lambda fields, ip: current_accounts().signup(
        fields.get("username", ""), fields.get("password", ""), fields.get("email") or None, ip))


async def login() -> Response:
    return await enter("login.html", lambda fields, ip: current_accounts().login(
        fields.get("username", ""), fields.get("password", ""), ip))


async def enter(template: str, act: Callable[[dict[str, str], str | None], Awaitable[tuple[Profile, str]]]) -> Response:
    """The signup or login page; its post: a new session and on to the dashboard, or the
    page again with the refusal (and a 429's ``retry-after``)."""
    if request.method == "GET":
        return await page(template)
    fields = await form()
    try:
        profile, token = await act(fields, identity.the_client_ip())
    except REFUSALS as exc:
        return await refused_page(page, exc, template, username=fields.get("username", ""))
    return after_login(profile, token)


async def logout() -> Response:
    session = await current_session()
    if session is not None:
        await checked_form(session)
        await current_accounts().logout(request.cookies.get(identity.COOKIE))
    return identity.clear_session_cookie(redirect("/login", 303))


# -- the dashboard ---------------------------------------------------------------------
async def balances(username: str) -> dict[str, str]:
    account = await current_accounts().account(username)
    return {"balance": format_usd(account.balance), "held": format_usd(account.held),
            "available": format_usd(account.available)}


def spend_chart(days: list[tuple[str, int]], today: datetime) -> dict[str, Any]:
    """The last CHART_DAYS days' spend as SVG bars (heights in a 100-unit box)."""
    spent = dict(days)
    dates = [(today - timedelta(days=CHART_DAYS - 1 - i)).date().isoformat() for i in range(CHART_DAYS)]
    costs = [spent.get(d, 0) for d in dates]
    scale_to = max(costs + [1])
    bars = []
    for i, (day, cost) in enumerate(zip(dates, costs)):
        height = round(90 * cost / scale_to, 2)
        bars.append({"day": day, "x": i * 10, "height": height, "y": 100 - height, "usd": format_usd(cost)})
    return {"bars": bars, "top": format_usd(max(costs)), "first": dates[0], "last": dates[-1],
            "total": format_usd(sum(costs))}


async def dashboard() -> Response:
    session = await logged_in()
    username = session.profile.username
    accounts = current_accounts()
    today = datetime.now(timezone.utc)
    since = (today - timedelta(days=CHART_DAYS - 1)).date().isoformat()
    recent = await accounts.usage_page(username, RECENT)
    return await page("dashboard.html", session, **await balances(username),
                      chart=spend_chart(list(await accounts.spend_by_day(username, since)), today),
                      recent=[describe_usage(u) for u in recent])


def client_setup(key: str | None) -> dict[str, str]:
    """What the client snippets fill in: the base URLs of this gateway and the key."""
    base = identity.own_origin()
    return {"base": base, "v1": base + "/v1", "key": key or "sk-cl-YOUR_KEY"}


async def keys_page(session: Session, status: int = 200, new_key: str | None = None, **values: Any) -> Response:
    listed = await current_accounts().keys(session.profile.username)
    models = [m.id for m in current_gateway().catalog.models]
    return await page("keys.html", session, status, keys=[describe_key(k) for k in listed], new_key=new_key,
                      setup=client_setup(new_key), models=models, catalog_models=current_gateway().catalog.models,
                      **values)


async def _create_key(session: Session, fields: dict[str, str]) -> dict[str, Any]:
    accounts = current_accounts()
    chosen = [m for m in fields.get("models", "").replace(",", " ").split() if m]
    order = key_order({"name": fields.get("name", "") or "default", "models": chosen or None,
                       "stream": fields.get("stream", "") != "off",
                       "ips": [i for i in fields.get("ips", "").replace(",", " ").split() if i],
                       "expires_at": fields.get("expires_at") or None}, accounts.clock())
    key, record = await accounts.create_key(current_gateway().catalog, session.profile.username, **order)
    return {"new_key": key, "notice": f"Key {record.name} created: copy it now, it is shown only once."}


async def _revoke(session: Session, fields: dict[str, str]) -> dict[str, Any]:
    record = await current_accounts().revoke_key(fields.get("prefix", ""), owner=session.profile.username)
    return {"notice": f"Key {record.prefix} revoked."}


async def keys() -> Response:
    return await form_page(keys_page, _create_key)


async def revoke() -> Response:
    return await posted(await logged_in(), _revoke, keys_page)


async def usage() -> Response:
    session = await logged_in()
    try:
        lines = await usage_lines(as_caller(session), USAGE_PAGE)
    except GatewayError as exc:
        lines, error = [], exc.message
    else:
        error = None
    rows = [describe_usage(u) for u in lines]
    filters = {k: request.args.get(k, "")[:128] for k in ("key", "model")}
    query = {k: v for k, v in filters.items() if v}
    older = urlencode({**query, "before": rows[-1]["request_id"]}) if len(rows) == USAGE_PAGE else None
    listed = await current_accounts().keys(session.profile.username)
    return await page("usage.html", session, status=400 if error else 200, rows=rows, filters=filters, error=error,
                      csv_url="/api/usage.csv" + ("?" + urlencode(query) if query else ""), older=older,
                      key_prefixes=[k.prefix for k in listed], models=[m.id for m in current_gateway().catalog.models])


async def ledger() -> Response:
    """Every change of the balance (credits, top-ups, transfers, corrections, charges)
    with its reason and actor, newest first, paged; the same as CSV at /api/ledger.csv."""
    session = await logged_in()
    before = request.args.get("before", "")
    cursor = int(before) if before.isascii() and before.isdigit() and len(before) <= 18 else None
    entries = await current_accounts().ledger_page(session.profile.username, LEDGER_PAGE, cursor)
    rows = [describe_entry(e) for e in entries]
    older = urlencode({"before": rows[-1]["id"]}) if len(rows) == LEDGER_PAGE else None
    return await page("ledger.html", session, rows=rows, older=older, **await balances(session.profile.username))


def balance_page(template: str) -> Callable[..., Awaitable[Response]]:
    async def render(session: Session, status: int = 200, **values: Any) -> Response:
        return await page(template, session, status, **await balances(session.profile.username), **values)
    return render


async def topup_page(session: Session, status: int = 200, **values: Any) -> Response:
    return await page("topup.html", session, status, **await balances(session.profile.username),
                      **{**topping_up.topup_values(), **values})


async def _redeem(session: Session, fields: dict[str, str]) -> dict[str, Any]:
    credited = await current_payments().code.confirm(fields.get("code", "").encode(), {}, session.profile.username,
                                                     identity.the_client_ip())
    return {"notice": f"Redeemed: paid ${format_usd(credited.paid)}, credited ${format_usd(credited.credit)} "
                      "of API value."}


async def topup() -> Response:
    return await form_page(topup_page, _redeem)


async def _transfer(session: Session, fields: dict[str, str]) -> dict[str, Any]:
    who = as_caller(session)
    await check_rate(who)
    to_username = fields.get("toUsername", "").strip()
    if not to_username:
        raise errors.invalid_request("Enter the username to send to")
    amount = dollars(fields.get("amount", ""))
    _, receiver = await send(who, to_username, amount)
    return {"notice": f"Sent ${format_usd(amount)} to {receiver.username}."}


async def transfer() -> Response:
    return await form_page(balance_page("transfer.html"), _transfer)


async def settings_page(session: Session, status: int = 200, **values: Any) -> Response:
    since = (iso_time(session.profile.created_at) or "")[:10]
    return await page("settings.html", session, status, since=since, **values)


async def _change_password(session: Session, fields: dict[str, str]) -> Response:
    accounts = current_accounts()
    profile = await accounts.change_password(session.profile.username, fields.get("password", ""),
                                             fields.get("new_password", ""), identity.the_client_ip())
    token = await accounts.new_session(profile)  # every other session has ended
    return identity.set_session_cookie(redirect("/dashboard/settings?changed=1", 303), token)


async def settings() -> Response:
    session = await logged_in()
    if request.method == "GET":
        changed = request.args.get("changed") == "1"
        return await settings_page(session, notice="Password changed: every other session has ended."
                                   if changed else None)
    return await posted(session, _change_password, settings_page)
