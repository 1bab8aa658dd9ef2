"""The self-serve JSON API: signup, login, logout, the caller's account, keys, usage,
ledger and code redemption. A session cookie or an API key on each (identity.py); a
key with restrictions may read but not manage the account (keys, password). Errors in
the Anthropic shape. Every operation is a call into the accounts library
(proxy/accounts/), which the CLI and the dashboard pages call too.

Money is answered as exact decimal strings of USD (``"12.500000"``), as ``cheaplm
balance`` prints it.
"""

from __future__ import annotations

import csv
import json
import io
from datetime import date, timedelta
from typing import Any

from quart import Blueprint, Response, request
from quart.blueprints import BlueprintSetupState

from ... import errors
from ...accounts.checks import iso, parse_expiry
from ...money import format_usd
from .. import error_shapes, identity
from ..context import current_gateway
from ..identity import Caller, account_caller, caller, current_accounts, json_body
from ..params import int_arg, str_arg
from ..responses import json_response
from .payments import current_payments
from storage.base import KeyRecord, LedgerEntry, Profile, UsageLine
from storage.records import iso_time
from storage.caps import spend_day_start

# The paths whose errors answer in the Anthropic shape (a trailing "/": and below).
CLAIMED = ("/api/auth/", "/api/me", "/api/keys", "/api/keys/", "/api/usage", "/api/usage.csv", "/api/ledger",
           "/api/ledger.csv", "/api/topup/", "/api/admin/")
MAX_PAGE = 500
MAX_CSV = 10_000


def blueprint() -> Blueprint:
    bp = Blueprint("accounts_api", __name__)
    bp.record(_set_up)
    for method, path, view in (
        ("POST", "/api/auth/signup", signup), ("POST", "/api/auth/login", login), ("POST", "/api/auth/logout", logout),
        ("POST", "/api/auth/password", change_password), ("GET", "/api/me", me), ("GET", "/api/keys", list_keys),
        ("POST", "/api/keys", create_key), ("DELETE", "/api/keys/<prefix>", revoke_key), ("GET", "/api/usage", usage),
        ("GET", "/api/usage.csv", usage_csv), ("GET", "/api/ledger", ledger), ("GET", "/api/ledger.csv", ledger_csv),
        ("POST", "/api/topup/redeem", redeem),
    ):
        bp.add_url_rule(path, view_func=view, methods=[method])
    return bp


def _set_up(state: BlueprintSetupState) -> None:
    identity.install(state.app)
    for path in CLAIMED:
        error_shapes.claim(state.app, path, error_shapes.anthropic)


# -- descriptions --------------------------------------------------------------------
def describe_key(k: KeyRecord) -> dict[str, Any]:
    return {"prefix": k.prefix, "name": k.name, "models": list(k.models) if k.models is not None else None,
            "stream": k.allow_stream, "ips": list(k.ips), "created_at": iso_time(k.created_at),
            "last_used_at": iso_time(k.last_used_at), "revoked_at": iso_time(k.revoked_at), "expires_at": iso(k.expires_at)}


def describe_usage(line: UsageLine, with_user: bool = False) -> dict[str, Any]:
    u = line.row
    out = {  # USAGE_FIELDS: these names, in this order
        "request_id": u.request_id, "created_at": iso_time(u.created_at), "key": line.key_prefix, "model": u.model,
        "endpoint": u.endpoint, "stream": u.stream, "status": u.status, "input_tokens": u.input_tokens,
        "cache_write_5m_tokens": u.cache_write_5m, "cache_write_1h_tokens": u.cache_write_1h,
        "cache_read_tokens": u.cache_read, "output_tokens": u.output_tokens, "cost_usd": format_usd(u.cost),
        "partial": u.partial, "error_type": u.error_type,
        "server_tool_use": json.loads(u.server_tool_use) if u.server_tool_use else {},
        "server_tool_cost_usd": format_usd(u.server_tool_cost)}
    return {"username": line.username, **out} if with_user else out


def describe_entry(e: LedgerEntry) -> dict[str, Any]:
    return {"id": e.id, "created_at": iso_time(e.created_at), "kind": e.kind, "amount_usd": format_usd(e.delta),
            "balance_after_usd": format_usd(e.balance_after), "ref": e.ref,
            "paid_usd": None if e.paid is None else format_usd(e.paid), "reason": e.reason, "actor": e.actor}


LEDGER_FIELDS = ("id", "created_at", "kind", "amount_usd", "balance_after_usd", "ref", "paid_usd", "reason", "actor")


async def describe_me(profile: Profile) -> dict[str, Any]:
    accounts = current_accounts()
    account = await accounts.account(profile.username)
    return {"username": profile.username, "email": profile.email, "role": profile.role,
            "created_at": iso_time(profile.created_at), "balance_usd": format_usd(account.balance),
            "held_usd": format_usd(account.held), "available_usd": format_usd(account.available),
            "paid_usd_total": format_usd(await accounts.paid_total(profile.username))}


# -- auth ----------------------------------------------------------------------------
async def signup() -> Response:
    identity.check_same_site()
    body = await json_body()
    profile, token = await current_accounts().signup(body.get("username"), body.get("password"), body.get("email"),
                                                     identity.the_client_ip())
    return identity.set_session_cookie(json_response(await describe_me(profile), 201), token)


async def login() -> Response:
    identity.check_same_site()
    body = await json_body()
    profile, token = await current_accounts().login(body.get("username"), body.get("password"),
                                                    identity.the_client_ip())
    return identity.set_session_cookie(json_response(await describe_me(profile)), token)


async def logout() -> Response:
    token = request.cookies.get(identity.COOKIE)
    if token and not request.headers.get("x-api-key"):
        identity.check_same_site()
    await current_accounts().logout(token)
    return identity.clear_session_cookie(json_response({"ok": True}))


async def change_password() -> Response:
    """``{"current_password", "new_password"}``: every session ends, this one gets a new one."""
    who = await account_caller()
    body = await json_body()
    accounts = current_accounts()
    profile = await accounts.change_password(who.username, body.get("current_password"), body.get("new_password"),
                                             identity.the_client_ip())
    token = await accounts.new_session(profile)
    return identity.set_session_cookie(json_response({"ok": True}), token)


async def me() -> Response:
    who = await caller()
    profile = who.profile or await current_accounts().profile(who.username)
    return json_response(await describe_me(profile))


# -- keys ----------------------------------------------------------------------------
async def list_keys() -> Response:
    who = await caller()
    keys = await current_accounts().keys(who.username)
    return json_response({"data": [describe_key(k) for k in keys]})


def key_order(body: dict, now: float) -> dict[str, Any]:
    """POST /api/keys' fields, their JSON types checked (the library checks the rest, as
    for `cheaplm key create`)."""
    name = body.get("name", "default")
    models, ips, stream = body.get("models"), body.get("ips", []), body.get("stream", True)
    if models is not None and (not isinstance(models, list) or not all(isinstance(m, str) for m in models)):
        raise errors.invalid_request("models must be a list of model ids (or null: every model)", param="models")
    if not isinstance(ips, list) or not all(isinstance(i, str) for i in ips) or len(ips) > 64:
        raise errors.invalid_request("ips must be a list of at most 64 networks (CIDR)", param="ips")
    if not isinstance(stream, bool):
        raise errors.invalid_request("stream must be true or false", param="stream")
    expires = body.get("expires_at")
    if expires is not None and not isinstance(expires, str):
        raise errors.invalid_request("expires_at must be an ISO 8601 date or date-time", param="expires_at")
    return {"name": name, "models": models, "allow_stream": stream, "ips": ips,
            "expires_at": None if expires is None else parse_expiry(expires, now)}


async def create_key() -> Response:
    who = await account_caller()
    accounts = current_accounts()
    order = key_order(await json_body(), accounts.clock())
    key, record = await accounts.create_key(current_gateway().catalog, who.username, **order)
    return json_response({"key": key, **describe_key(record)}, 201)


async def revoke_key(prefix: str) -> Response:
    who = await account_caller()
    record = await current_accounts().revoke_key(prefix, owner=who.username)
    return json_response(describe_key(record))


# -- reports -------------------------------------------------------------------------
async def usage_lines(who: Caller | None, limit: int) -> list[UsageLine]:
    """The usage page the query asks for: ``who``'s, or everyone's (None; then ``user``
    filters by account); ``since``/``until``: UTC days (until: that day included)."""
    username = str_arg("user") if who is None else who.username
    return list(await current_accounts().usage_page(username, limit, str_arg("before"), str_arg("key"),
                                                    str_arg("model"), day_arg("since"), day_arg("until", 1)))


def day_arg(name: str, plus: int = 0) -> float | None:
    """A UTC day (YYYY-MM-DD) from the query, as the unix time it starts (``plus`` days on)."""
    text = request.args.get(name)
    if not text:
        return None
    try:
        day = date.fromisoformat(text) if len(text) == 10 else None
    except ValueError:
        day = None
    if day is None:
        raise errors.invalid_request(f"{name} must be a day, YYYY-MM-DD", param=name)
    try:
        day += timedelta(days=plus)
    except OverflowError:
        return None
    return spend_day_start(day.isoformat())


def page(items: list[dict], limit: int, cursor: str) -> dict[str, Any]:
    return {"data": items, "next_before": items[-1][cursor] if len(items) == limit else None}


async def usage() -> Response:
    who = await caller()
    limit = int_arg("limit", 50, 1, MAX_PAGE)
    return json_response(page([describe_usage(u) for u in await usage_lines(who, limit)], limit, "request_id"))


async def usage_csv() -> Response:
    who = await caller()
    lines = await usage_lines(who, int_arg("limit", MAX_CSV, 1, MAX_CSV))
    rows = [describe_usage(u) for u in lines]  # server tools as "web_search=3 web_fetch=1"
    return csv_response(USAGE_FIELDS, [{**row, "server_tool_use": " ".join(
        f"{k}={n}" for k, n in row["server_tool_use"].items())} for row in rows], "usage.csv")


def csv_response(fields: tuple[str, ...], rows: list[dict], filename: str) -> Response:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return Response(out.getvalue(), content_type="text/csv; charset=utf-8",
                    headers={"content-disposition": f'attachment; filename="{filename}"'})


USAGE_FIELDS = ("request_id", "created_at", "key", "model", "endpoint", "stream", "status", "input_tokens",
                 "cache_write_5m_tokens", "cache_write_1h_tokens", "cache_read_tokens", "output_tokens", "cost_usd",
                 "partial", "error_type", "server_tool_use", "server_tool_cost_usd")


async def ledger() -> Response:
    who = await caller()
    limit = int_arg("limit", 50, 1, MAX_PAGE)
    before = int_arg("before", None, 1, 2**62)
    entries = await current_accounts().ledger_page(who.username, limit, before)
    return json_response(page([describe_entry(e) for e in entries], limit, "id"))


async def ledger_csv() -> Response:
    """The caller's ledger as CSV, newest first (every credit, top-up, transfer,
    correction and charge, with its reason and actor)."""
    who = await caller()
    entries = await current_accounts().ledger_page(who.username, int_arg("limit", MAX_CSV, 1, MAX_CSV),
                                                   int_arg("before", None, 1, 2**62))
    return csv_response(LEDGER_FIELDS, [describe_entry(e) for e in entries], "ledger.csv")


# -- money in ------------------------------------------------------------------------
async def redeem() -> Response:
    """``{"code"}``: its value credited once (distinct 400s for a wrong, used or expired code)."""
    who = await caller()
    code = (await json_body()).get("code")
    text = code.encode() if isinstance(code, str) else b""
    credited = await current_payments().code.confirm(text, {}, who.username, identity.the_client_ip())
    return json_response({"success": True, "paid_usd": format_usd(credited.paid),
                          "credited_usd": format_usd(credited.credit),
                          "balance_usd": format_usd(credited.account.balance)})
