"""Who is calling a Quart route: an API key, or a logged-in browser's session cookie;
the session cookie itself; and the cross-site refusal for cookie-authenticated changes.

A request that presents a key is authenticated by it (the cookie is then ignored) and
needs no CSRF defence: a browser never adds a key on its own. A request that relies
on the cookie and changes something (anything but GET/HEAD/OPTIONS) is refused with 403
when ``Sec-Fetch-Site`` or ``Origin`` says it comes from another site, and when it
carries a body that is not JSON (the content types a cross-site form can send).

The ``Accounts`` library of the app (one per running gateway, its throttles with it) is
attached here, so every blueprint (the JSON API, the transfer API, the pages) reaches
the same one with ``current_accounts``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import orjson
import trio
from quart import Quart, Response, current_app, request

from .. import errors
from ..accounts.audit import Actor
from ..accounts.errors import AccountError
from ..accounts.service import Accounts
from ..auth import client_ip, from_trusted_proxy, presented_key
from ..errors import GatewayError
from . import error_shapes
from .context import authorize, current_gateway, every_line, gateway_of, request_headers
from storage.base import KeyRecord, Profile

EXTENSION = "cheaplm.accounts"
COOKIE = "cheaplm_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SAME_SITE = frozenset({"same-origin", "none"})  # Sec-Fetch-Site values of a page's own (or typed) requests
HOST = re.compile(r"[a-z0-9.-]+(:[0-9]{1,5})?|\[[0-9a-f:.]+\](:[0-9]{1,5})?")  # a host[:port] a proxy forwards


def install(app: Quart) -> None:
    """Once per app, from any blueprint that needs it: the Accounts library (its key
    hook forgets a changed key in the gateway's cache at once) and the mapping of its
    refusals to answers in the path's shape."""
    if EXTENSION in app.extensions:
        return
    gateway = gateway_of(app)
    config = gateway.config
    app.extensions[EXTENSION] = Accounts(gateway.store, config.accounts, config.value_multiplier,
                                         config.payments.bonus, monotonic=trio.current_time, limits=gateway.limits,
                                         key_changed=gateway.keys.forget)
    app.register_error_handler(AccountError, _refused)


def current_accounts() -> Accounts:
    return current_app.extensions[EXTENSION]


def as_gateway_error(exc: AccountError) -> GatewayError:
    retry = exc.retry_after
    return GatewayError(exc.status, str(exc), param=exc.param,
                        headers=(("retry-after", str(retry)),) if retry else ())


async def _refused(exc: AccountError) -> Response:
    return error_shapes.error_response(as_gateway_error(exc))


@dataclass(frozen=True)
class Caller:
    """The account a request acts for, and how it proved it."""

    account_id: int
    username: str
    key: KeyRecord | None = None        # authenticated by this API key
    profile: Profile | None = None      # authenticated by a session (its account)

    @property
    def limit_key(self) -> object:
        """What per-caller limits count by: the key, or the account of a session."""
        return self.key.id if self.key is not None else ("session", self.account_id)

    @property
    def actor(self) -> Actor:
        """Who acts, for the audit trail (never the key itself)."""
        return Actor(self.username, "key" if self.key is not None else "web")


def the_client_ip() -> str | None:
    return client_ip(request.remote_addr, every_line("x-forwarded-for"), current_gateway().trusted)


def forwarded(name: str) -> str | None:
    """What a trusted proxy says in an ``X-Forwarded-*`` header: its last value (the one
    the proxy next to us set); None from anyone else, or when absent."""
    value = every_line(name)
    if not value or not from_trusted_proxy(request.remote_addr, current_gateway().trusted):
        return None
    return value.rsplit(",", 1)[-1].strip().lower() or None


def public_host() -> str:
    """The host the browser asked for: a trusted proxy's X-Forwarded-Host (a proxy may
    rewrite Host, as nginx does by default), else Host."""
    host = forwarded("x-forwarded-host")
    return host if host is not None and HOST.fullmatch(host) else request.host.lower()


def https() -> bool:
    """Served over https, directly or behind a trusted proxy that says so."""
    return request.scheme == "https" or forwarded("x-forwarded-proto") == "https"


def own_origin() -> str:
    return f"{'https' if https() else 'http'}://{public_host()}"


def own_origins() -> tuple[str, ...]:
    """The origins this site's own pages post from. Behind a trusted proxy that does not
    say the scheme (no X-Forwarded-Proto), either scheme on the public host."""
    if (request.scheme != "https" and forwarded("x-forwarded-proto") is None
            and from_trusted_proxy(request.remote_addr, current_gateway().trusted)):
        return (f"http://{public_host()}", f"https://{public_host()}")
    return (own_origin(),)


def check_same_site() -> None:
    """403 when the browser says the request comes from another site."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site.lower() not in SAME_SITE:
        raise errors.permission("Cross-site request refused")
    origin = request.headers.get("origin")
    if origin is not None and origin.rstrip("/").lower() not in own_origins():
        raise errors.permission("Cross-site request refused: the Origin is not this site")


async def check_cookie_change() -> None:
    """A session's change to a JSON API: same-site, and JSON. A POST says so in its
    Content-Type even when its body is empty (a cross-site form sends an empty body as
    application/x-www-form-urlencoded); a DELETE may carry nothing at all."""
    check_same_site()
    if request.mimetype == "application/json":
        return
    if request.method in ("POST", "PUT", "PATCH") or request.mimetype or await request.get_data():
        raise errors.permission("Send Content-Type: application/json (or an API key)")


async def caller() -> Caller:
    """The key the request presents (401/403 as for any key route), else its session
    (401 without one); a session's changes pass the cross-site checks first."""
    headers = request_headers()
    if presented_key(headers):
        key = await authorize(headers)
        return Caller(key.account_id, key.username, key=key)
    session = await current_accounts().session(request.cookies.get(COOKIE))
    if session is None:
        raise errors.authentication("Log in, or send an API key as x-api-key or Authorization: Bearer")
    if request.method not in SAFE_METHODS:
        await check_cookie_change()
    return Caller(session.profile.account_id, session.profile.username, profile=session.profile)


async def account_caller() -> Caller:
    """A caller that may manage its account (keys, password): a session, or a key
    without restrictions (403 for a restricted key)."""
    who = await caller()
    await current_accounts().check_may_manage(who.key)
    return who


async def admin_caller() -> Caller:
    """A caller whose account is an admin, through a session or a key without
    restrictions (403 otherwise)."""
    who = await account_caller()
    profile = who.profile or await current_accounts().profile(who.username)
    if not profile.is_admin:
        raise errors.permission("This needs an admin account")
    return Caller(who.account_id, who.username, who.key, profile)


def set_session_cookie(response: Response, token: str) -> Response:
    hours = current_accounts().config.session_hours
    response.set_cookie(COOKIE, token, max_age=int(hours * 3600), path="/", httponly=True, samesite="Lax",
                        secure=https())
    return response


def clear_session_cookie(response: Response) -> Response:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="Lax", secure=https())
    return response


async def json_body() -> dict:
    """The request's JSON object, or 400."""
    raw = await request.get_data()
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        raise errors.invalid_request("Body must be a JSON object") from None
    if not isinstance(body, dict):
        raise errors.invalid_request("Body must be a JSON object")
    return body

