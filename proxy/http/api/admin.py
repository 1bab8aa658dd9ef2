"""The admin JSON API (403 for anyone but an admin account, and for an admin's key with
restrictions): every account with its balance, credits and corrections with a reason
(ledger entries naming the admin), disable or enable, and everyone's usage (paged,
filtered by user, key, model and day). Errors in the Anthropic shape (claimed with the
accounts API's paths). Every operation is a call into the accounts library."""

from __future__ import annotations

from quart import Blueprint, Response

from storage.records import iso_time

from ... import errors
from ...money import format_usd
from .. import identity
from .accounts import MAX_PAGE, describe_usage, page, usage_lines
from ..params import int_arg
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
    listed = await current_accounts().users()
    return json_response({"data": [{
        "username": p.username, "email": p.email, "role": p.role, "disabled": p.disabled,
        "created_at": iso_time(p.created_at), "balance_usd": format_usd(a.balance), "held_usd": format_usd(a.held),
        "available_usd": format_usd(a.available)} for p, a in listed]})


def signed_amount(value: object) -> int | None:
    """Dollars, either way: a positive amount (usd_amount) or its negative."""
    if isinstance(value, str) and value.startswith("-"):
        amount = usd_amount(value[1:])
        return None if amount is None else -amount
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
        amount = usd_amount(-value)
        return None if amount is None else -amount
    return usd_amount(value)


async def credit(name: str) -> Response:
    """``{"amount_usd", "paid_usd"?, "reason"}``: a credit, or with a negative amount a
    correction (refused when it would take the balance below zero)."""
    who = await admin_caller()
    body = await json_body()
    amount = signed_amount(body.get("amount_usd"))
    if amount is None:
        raise errors.invalid_request("amount_usd must be a non-zero number of dollars (negative: a correction), "
                                     "at most 6 decimals", param="amount_usd")
    paid = None
    if body.get("paid_usd") not in (None, 0, "0"):
        paid = usd_amount(body.get("paid_usd"))
        if paid is None:
            raise errors.invalid_request("paid_usd must be a positive number of dollars", param="paid_usd")
    account = await current_accounts().credit(name, amount, body.get("reason"), who.actor, paid)
    return json_response({"success": True, "username": account.username, "amount_usd": format_usd(amount),
                          "balance_usd": format_usd(account.balance)})


async def disable(name: str) -> Response:
    """``{"disabled": true}`` (the default) or ``false`` to enable again. The account's
    sessions end and, on this gateway, its keys stop working at once."""
    who = await admin_caller()
    flag = (await json_body()).get("disabled", True)
    if not isinstance(flag, bool):
        raise errors.invalid_request("disabled must be true or false", param="disabled")
    profile = await current_accounts().set_disabled(name, flag, who.actor)
    return json_response({"username": profile.username, "disabled": profile.disabled})


async def usage() -> Response:
    await admin_caller()
    limit = int_arg("limit", 50, 1, MAX_PAGE)
    lines = await usage_lines(None, limit)
    return json_response(page([describe_usage(u, with_user=True) for u in lines], limit, "request_id"))
