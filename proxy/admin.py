"""Admin operations (users, keys, top-ups, reports) as library calls; cli.py wraps them."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Sequence

from .auth import hash_key, key_prefix, new_key, parse_networks
from .catalog import Catalog
from .money import parse_usd
from storage.base import Account, AlreadyExists, KeyRecord, Store

_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


class AdminError(ValueError):
    """Bad input to an admin operation (one line, shown to the operator)."""


def check_username(username: str) -> str:
    if not _USERNAME.match(username or ""):
        raise AdminError(f"invalid username {username!r}: 1-64 of letters, digits, _ . @ - "
                         "(starting with a letter or digit)")
    return username


async def create_user(store: Store, username: str) -> Account:
    return await store.create_user(check_username(username))


async def create_key(store: Store, catalog: Catalog, username: str, name: str = "default",
                     models: Sequence[str] | None = None, allow_stream: bool = True,
                     ips: Sequence[str] = (), pass_thinking: bool | None = None) -> tuple[str, KeyRecord]:
    """Create a key; returns (the full key, shown once; its stored record)."""
    canonical = None
    if models is not None:
        canonical = []
        for model_id in models:
            model = catalog.resolve(model_id)
            if model is None:
                raise AdminError(f"unknown model {model_id!r}")
            canonical.append(model.id)
        canonical = tuple(dict.fromkeys(canonical))
    try:
        networks = parse_networks(ips)
    except ValueError as exc:
        raise AdminError(f"invalid --ip: {exc}") from None
    for _ in range(5):
        key = new_key()
        try:
            record = await store.create_key(username, key_prefix(key), hash_key(key), name, canonical,
                                            allow_stream, tuple(str(n) for n in networks), pass_thinking)
            return key, record
        except AlreadyExists:
            continue  # a prefix collision: draw again
    raise AdminError("could not draw an unused key prefix")


def paid_to_credit(paid: int, multiplier: Decimal) -> int:
    """Micro-USD of API value for ``paid`` micro-USD, rounded half up once."""
    return int((Decimal(paid) * multiplier).to_integral_value(rounding=ROUND_HALF_UP))


async def topup(store: Store, username: str, multiplier: Decimal, paid_usd: str | None = None,
                credit_usd: str | None = None) -> Account:
    if (paid_usd is None) == (credit_usd is None):
        raise AdminError("give exactly one of --paid USD or --credit USD")
    try:
        amount = parse_usd(paid_usd if paid_usd is not None else credit_usd)
    except ValueError as exc:
        raise AdminError(str(exc)) from None
    if amount <= 0:
        raise AdminError("the amount must be positive")
    if paid_usd is not None:
        return await store.credit(username, paid_to_credit(amount, multiplier), "topup", paid=amount)
    return await store.credit(username, amount, "credit")
