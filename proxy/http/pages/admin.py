"""The admin pages (403 for anyone but an admin's session): users with their balances,
credits and corrections (up and down, each with a reason, through the accounts library
the CLI uses), disable or enable; everyone's usage, paged and filtered by user, model
and day; the upstream channels."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import trio
from quart import Response, request

from ... import errors
from ...accounts.audit import Actor
from ...money import format_usd
from ..api.accounts import describe_usage, usage_lines
from ..api.admin import signed_amount
from ..context import current_gateway
from ..identity import current_accounts
from .views import RECENT, USAGE_PAGE, dollars, logged_in, page, posted
from storage.base import Session
from storage.records import iso_time

FILTERS = ("user", "model", "since", "until")


def actor(session: Session) -> Actor:
    return Actor(session.profile.username, "web")


async def admin_page(session: Session, status: int = 200, **values: Any) -> Response:
    gateway = current_gateway()
    listed = await current_accounts().users()
    users = [{"username": p.username, "email": p.email or "", "role": p.role, "disabled": p.disabled,
              "created_at": iso_time(p.created_at), "balance": format_usd(a.balance), "held": format_usd(a.held),
              "available": format_usd(a.available)} for p, a in listed]
    recent = [describe_usage(u, with_user=True) for u in await current_accounts().usage_page(None, RECENT)]
    channels = gateway.upstream.describe(trio.current_time())
    return await page("admin.html", session, status, users=users, recent=recent, channels=channels,
                      upstream=gateway.upstream.label, simulated=gateway.simulated, **values)


async def _credit(session: Session, fields: dict[str, str]) -> dict[str, Any]:
    """A credit, or with a negative amount a correction; the reason is required."""
    amount = signed_amount(fields.get("amount", "").strip())
    if amount is None:
        raise errors.invalid_request("The amount must be a non-zero number of dollars (negative: a correction), "
                                     "at most 6 decimals")
    paid = dollars(fields["paid"], "The paid amount") if fields.get("paid", "").strip() else None
    account = await current_accounts().credit(fields.get("username", ""), amount, fields.get("reason", ""),
                                              actor(session), paid)
    done = (f"Credited ${format_usd(amount)} to" if amount > 0 else
            f"Took back ${format_usd(-amount)} (a correction) from")
    return {"notice": f"{done} {account.username}: balance ${format_usd(account.balance)}."}


async def _disable(session: Session, fields: dict[str, str]) -> dict[str, Any]:
    disabled = fields.get("disabled", "1") != "0"
    profile = await current_accounts().set_disabled(fields.get("username", ""), disabled, actor(session))
    return {"notice": f"{profile.username} is {'disabled' if profile.disabled else 'enabled'}."}


async def admin() -> Response:
    return await admin_page(await logged_in(admin_only=True))


async def admin_credit() -> Response:
    return await posted(await logged_in(admin_only=True), _credit, admin_page)


async def admin_disable() -> Response:
    return await posted(await logged_in(admin_only=True), _disable, admin_page)


async def admin_usage() -> Response:
    """Everyone's requests, newest first, USAGE_PAGE at a time, filtered by user, model
    and UTC day range."""
    session = await logged_in(admin_only=True)
    filters = {k: request.args.get(k, "")[:128] for k in FILTERS}
    try:
        lines = await usage_lines(None, USAGE_PAGE)
    except errors.GatewayError as exc:
        lines, error = [], exc.message
    else:
        error = None
    rows = [describe_usage(u, with_user=True) for u in lines]
    query = {k: v for k, v in filters.items() if v}
    older = urlencode({**query, "before": rows[-1]["request_id"]}) if len(rows) == USAGE_PAGE else None
    return await page("admin_usage.html", session, status=400 if error else 200, rows=rows, filters=filters,
                      error=error, older=older, usernames=[p.username for p, _ in await current_accounts().users()],
                      models=[m.id for m in current_gateway().catalog.models])
