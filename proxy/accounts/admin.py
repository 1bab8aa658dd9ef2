"""Admin operations (users, keys, top-ups, reports) as library calls; cli.py wraps them."""

from __future__ import annotations

import re
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import AsyncIterator, Mapping, Sequence

from ..auth import hash_key, key_prefix, new_key, parse_networks
from ..catalog import Catalog
from ..config import Config
from ..money import MAX_AMOUNT, format_usd, parse_usd, scale
from ..upstream.listing import channel_names, configured_rows, live_rows
from storage import open_store
from storage.base import (LIMIT_FIELDS, MAX_RATE, NO_LIMITS, Account, AlreadyExists, ChannelOverride, KeyLimits,
                          KeyRecord, LedgerMissing, Store, UsageRow)

# a key limit -> its CLI flag; the *_usd ones are USD amounts, the others whole numbers
LIMIT_FLAGS = {"rpm": "--rpm", "tpm": "--tpm", "concurrency": "--concurrency", "daily_usd": "--daily-usd",
               "monthly_usd": "--monthly-usd"}
CLEAR = ("none", "0")

_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


class AdminError(ValueError):
    """Bad input to an admin operation (one line, shown to the operator)."""


@asynccontextmanager
async def open_ledger(path: str, create: bool = False) -> AsyncIterator[Store]:
    """The store at ``path`` (a file path or a ledger URL: storage.open_store), closed on
    exit. Unless ``create``, a ledger that does not exist is refused rather than created
    empty (an admin command run in the wrong directory). A ledger that needs a schema
    migration is refused (MigrationNeeded: ``cheaplm db migrate``), never migrated under
    a gateway that may be running on it."""
    try:
        store = await open_store(path, create=create, upgrade=False)
    except LedgerMissing as missing:
        raise AdminError(f"{missing} (run `cheaplm serve` or `cheaplm user create` first, or pass --db)") from None
    try:
        yield store
    finally:
        await store.aclose()


def check_username(username: str) -> str:
    if not _USERNAME.match(username or ""):
        raise AdminError(f"invalid username {username!r}: 1-64 of letters, digits, _ . @ - "
                         "(starting with a letter or digit)")
    return username


async def create_user(store: Store, username: str) -> Account:
    return await store.create_user(check_username(username))


async def list_users(store: Store) -> Sequence[Account]:
    return await store.list_users()


async def balance(store: Store, username: str) -> Account:
    return await store.get_account(username)


async def list_keys(store: Store, username: str) -> Sequence[KeyRecord]:
    return await store.list_keys(username)


async def revoke_key(store: Store, key_or_prefix: str) -> KeyRecord:
    """Revoke by prefix. A full key is accepted and cut to its prefix, so that the secret
    part never reaches a message or a log."""
    return await store.revoke_key(key_prefix(key_or_prefix.strip()))


def parse_limits(given: Mapping[str, str | None]) -> dict[str, int | None]:
    """Key limits as the operator typed them (name -> text, None: not given) as values:
    a positive whole number (rpm, tpm, concurrency) or USD amount (caps, in micro-USD);
    ``none`` or ``0`` for no limit."""
    parsed: dict[str, int | None] = {}
    for name, text in given.items():
        if text is None:
            continue
        flag = LIMIT_FLAGS[name]
        if text.strip().lower() in CLEAR:
            parsed[name] = None
        elif name.endswith("_usd"):
            try:
                parsed[name] = parse_usd(text)
            except ValueError as exc:
                raise AdminError(f"{flag}: {exc}") from None
            if parsed[name] <= 0:
                raise AdminError(f"{flag} must be a positive USD amount (or none), got {text!r}")
        else:
            try:
                value = int(text.strip())
            except ValueError:
                value = 0
            if not 0 < value <= MAX_RATE:
                raise AdminError(f"{flag} must be a whole number from 1 to {MAX_RATE} (or none), got {text!r}")
            parsed[name] = value
    return parsed


async def set_key_limits(store: Store, key_or_prefix: str, changes: Mapping[str, int | None]) -> KeyRecord:
    """Change some of a key's limits (the others stay as they are); a running gateway
    sees them within its key_cache_seconds."""
    if not changes:
        raise AdminError(f"nothing to set: give at least one of {', '.join(LIMIT_FLAGS.values())}")
    return await store.set_key_limits(key_prefix(key_or_prefix.strip()), changes)


def describe_limits(limits: KeyLimits) -> dict[str, str]:
    """A key's limits for a listing: each value, or "-"."""
    return {name: "-" if value is None else format_usd(value) if name.endswith("_usd") else str(value)
            for name in LIMIT_FIELDS for value in [getattr(limits, name)]}


async def usage(store: Store, username: str, limit: int = 20) -> Sequence[UsageRow]:
    """The latest ``limit`` usage rows, newest first."""
    if limit < 1:
        raise AdminError("--limit must be at least 1")
    return await store.usage(username, limit)


async def create_key(store: Store, catalog: Catalog, username: str, name: str = "default",
                     models: Sequence[str] | None = None, allow_stream: bool = True,
                     ips: Sequence[str] = (), pass_thinking: bool | None = None,
                     limits: KeyLimits = NO_LIMITS) -> tuple[str, KeyRecord]:
    """Create a key; returns (the full key, shown once; its stored record)."""
    canonical = None
    if models is not None:
        if not models:  # an empty --models (an unset $VAR) must not mint an unrestricted key
            raise AdminError("--models is empty: name at least one model, or leave --models out for every model")
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
                                            allow_stream, tuple(str(n) for n in networks), pass_thinking,
                                            limits)
            return key, record
        except AlreadyExists:
            continue  # a prefix collision: draw again
    raise AdminError("could not draw an unused key prefix")


def paid_to_credit(paid: int, multiplier: Decimal) -> int:
    """Micro-USD of API value for ``paid`` micro-USD (money's one rounding rule)."""
    return scale(paid, multiplier)


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
    credit = paid_to_credit(amount, multiplier) if paid_usd is not None else amount
    for what, value in (("paid", amount), ("credit", credit)):
        if value > MAX_AMOUNT:
            raise AdminError(f"{what} of {format_usd(value)} USD is more than the largest single credit, "
                             f"{format_usd(MAX_AMOUNT)} USD")
    if paid_usd is not None:
        return await store.credit(username, credit, "topup", paid=amount)
    return await store.credit(username, credit, "credit")


@dataclass(frozen=True)
class UpstreamListing:
    rows: list[dict]   # listing.COLUMNS each
    instances: int     # the live gateway instances they come from (0: from the configuration)


async def upstream_list(store: Store, config: Config) -> UpstreamListing:
    """The channels as the running gateways report them (counters summed across them),
    or as the configuration and the operator's overrides start them when none runs."""
    snapshots = await store.channel_status()
    overrides = await store.channel_overrides()
    if snapshots:
        return UpstreamListing(live_rows(snapshots, overrides), len(snapshots))
    return UpstreamListing(configured_rows(config, overrides), 0)


async def set_upstream_enabled(store: Store, config: Config, name: str, enabled: bool,
                               reason: str = "") -> ChannelOverride:
    """The operator's override of a channel the configuration or a running gateway has;
    running gateways apply it within ``channel_sync_interval`` seconds."""
    names = channel_names(config, await store.channel_status())
    if name not in names:
        if not names:
            raise AdminError("there is no upstream channel to enable or disable: one [upstream] serves "
                             "(channels are [[upstreams]] tables)")
        raise AdminError(f"no upstream channel named {name!r} (channels: {', '.join(names)})")
    return await store.set_channel_enabled(name, enabled, " ".join(reason.split()))
