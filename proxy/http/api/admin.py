"""The admin JSON API (403 for anyone but an admin account): every account with its
balance, credit with a reason (a ledger entry naming the admin), disable or enable,
and everyone's recent usage. Errors in the Anthropic shape (claimed with the
accounts API's paths)."""

from __future__ import annotations

from quart import Blueprint, Response

from ... import errors
from ...money import format_usd
from .. import identity
from .accounts import MAX_PAGE, describe_usage, page, usage_lines
from ..params import int_arg
from ..context import current_gateway
from ..identity import admin_caller, current_accounts, json_body
from ..responses import json_response
from .transfer import usd_amount


def blueprint() -> Blueprint:
    bp = Blueprint("admin_api", __name__)
    bp.record(lambda state: identity.install(state.app))
    bp.get("/api/admin/users")(users)
    bp.post("/api/admin/users/<name>/credit")(credit)
    bp.post("/api/admin/users/<name>/disable")(disable)
    bp.get("/api/admin/usage")(usage)
    return bp


async def users() -> Response:
    await admin_caller()
    listed = await current_gateway().store.list_profiles()
    return json_response({"data": [{
        "username": p.username, "email": p.email, "role": p.role, "disabled": p.disabled,
        "created_at": p.created_at, "balance_usd": format_usd(a.balance), "held_usd": format_usd(a.held),
        "available_usd": format_usd(a.available)} for p, a in listed]})


async def credit(name: str) -> Response:
    """``{"amount_usd", "paid_usd"?, "reason"}``."""
    who = await admin_caller()
    body = await json_body()
    amount = usd_amount(body.get("amount_usd"))
    if amount is None:
        raise errors.invalid_request("amount_usd must be a positive number of dollars, at most 6 decimals",
                                     param="amount_usd")
    paid = None
    if body.get("paid_usd") not in (None, 0, "0"):
        paid = usd_amount(body.get("paid_usd"))
        if paid is None:
            raise errors.invalid_request("paid_usd must be a positive number of dollars", param="paid_usd")
    reason = body.get("reason")
    if not isinstance(reason, str):
        raise errors.invalid_request("reason (string) is required", param="reason")
    account = await current_accounts().admin_credit(name, amount, paid, reason, who.username)
    return json_response({"success": True, "username": account.username, "amount_usd": format_usd(amount),
                          "balance_usd": format_usd(account.balance)})


async def disable(name: str) -> Response:
    """``{"disabled": true}`` (the default) or ``false`` to enable again. The account's
    sessions end and, on this gateway, its keys stop working at once."""
    await admin_caller()
    flag = (await json_body()).get("disabled", True)
    if not isinstance(flag, bool):
        raise errors.invalid_request("disabled must be true or false", param="disabled")
    profile, keys = await current_accounts().set_disabled(name, flag)
    for key in keys:
        current_gateway().keys.forget(key.prefix)
    return json_response({"username": profile.username, "disabled": profile.disabled})


async def usage() -> Response:
    await admin_caller()
    limit = int_arg("limit", 50, 1, MAX_PAGE)
    lines = await usage_lines(None, limit)
    return json_response(page([describe_usage(u, with_user=True) for u in lines], limit, "request_id"))

