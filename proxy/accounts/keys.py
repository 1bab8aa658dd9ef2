"""API keys: create (with restrictions, limits and an expiry), list, change limits,
revoke; and whether a key is restricted (such a key cannot manage its account). Part of
``Accounts``. Every change tells the running gateway's key cache at once (the
``key_changed`` hook); other gateways see it through the change feed within their
change_poll_interval."""

from __future__ import annotations

from typing import Mapping, Sequence

import trio

from . import audit
from .audit import Actor
from .checks import check_key_name
from .errors import AccountError
from ..auth import hash_key, key_prefix, new_key, parse_networks
from ..catalog import Catalog
from ..money import format_usd, parse_usd
from storage.base import LIMIT_FIELDS, MAX_RATE, NO_LIMITS, AlreadyExists, KeyLimits, KeyRecord


CLEAR = ("none", "0")
MAX_NETWORKS = 64
RESTRICTED = "A key with restrictions cannot manage the account: log in, or use a key without restrictions"


def restricted(key: KeyRecord) -> bool:
    """A key with any restriction, limit or expiry."""
    return (key.models is not None or bool(key.ips) or not key.allow_stream or key.expires_at is not None
            or key.limits.limited or key.limits.capped)


def parse_limits(given: Mapping[str, str | None]) -> dict[str, int | None]:
    """Key limits as typed (name -> text; None: not given) as values: a positive whole
    number (rpm, tpm, concurrency) or USD amount (the caps, in micro-USD); ``none`` or
    ``0`` for no limit."""
    parsed: dict[str, int | None] = {}
    for name, text in given.items():
        if text is None:
            continue
        if text.strip().lower() in CLEAR:
            parsed[name] = None
        elif name.endswith("_usd"):
            try:
                parsed[name] = parse_usd(text)
            except ValueError as exc:
                raise AccountError(f"{name}: {exc}", param=name) from None
            if parsed[name] <= 0:
                raise AccountError(f"{name} must be a positive USD amount (or none), got {text!r}", param=name)
        else:
            try:
                value = int(text.strip())
            except ValueError:
                value = 0
            if not 0 < value <= MAX_RATE:
                raise AccountError(f"{name} must be a whole number from 1 to {MAX_RATE} (or none), got {text!r}",
                                   param=name)
            parsed[name] = value
    return parsed


def describe_limits(limits: KeyLimits) -> dict[str, str]:
    """A key's limits for a listing: each value, or "-"."""
    return {name: "-" if value is None else format_usd(value) if name.endswith("_usd") else str(value)
            for name in LIMIT_FIELDS for value in [getattr(limits, name)]}


class Keys:
    async def create_key(self, catalog: Catalog, username: str, name: str = "default",
                         models: Sequence[str] | None = None, allow_stream: bool = True, ips: Sequence[str] = (),
                         pass_thinking: bool | None = None, limits: KeyLimits = NO_LIMITS,
                         expires_at: float | None = None, actor: Actor | None = None) -> tuple[str, KeyRecord]:
        """A new key: (the full key, shown once; its stored record). An expiry is set
        before the key is returned (a key whose expiry could not be set is revoked,
        never shown)."""
        check_key_name(name)
        canonical = None
        if models is not None:
            if not models:  # an empty list (an unset $VAR) must not mint an unrestricted key
                raise AccountError("the model list is empty: name at least one model, or leave it out for every "
                                   "model", param="models")
            canonical = []
            for model_id in models:
                model = catalog.resolve(model_id)
                if model is None:
                    raise AccountError(f"unknown model {model_id!r}", param="models")
                canonical.append(model.id)
            canonical = tuple(dict.fromkeys(canonical))
        if len(ips) > MAX_NETWORKS:
            raise AccountError(f"at most {MAX_NETWORKS} networks", param="ips")
        try:
            networks = parse_networks(ips)
        except ValueError as exc:
            raise AccountError(f"invalid network: {exc}", param="ips") from None
        record = None
        for _ in range(5):
            key = new_key()
            try:
                record = await self.store.create_key(username, key_prefix(key), hash_key(key), name, canonical,
                                                     allow_stream, tuple(str(n) for n in networks), pass_thinking,
                                                     limits)
                break
            except AlreadyExists:
                continue  # a prefix collision: draw again
        if record is None:
            raise AccountError("could not draw an unused key prefix", 503)
        if expires_at is not None:
            try:
                record = await self.store.set_key_expiry(record.prefix, expires_at)
            except BaseException:
                with trio.CancelScope(shield=True):
                    await self.store.revoke_key(record.prefix)
                raise
        if actor is not None:
            audit.record("key create", actor, user=username, prefix=record.prefix)
        return key, record

    async def keys(self, username: str) -> Sequence[KeyRecord]:
        return await self.store.list_keys(username)

    async def revoke_key(self, key_or_prefix: str, owner: str | None = None,
                         actor: Actor | None = None) -> KeyRecord:
        """Revoke by prefix (a full key is cut to its prefix, so the secret part never
        reaches a message or a log). With ``owner``, only that user's keys: anyone
        else's prefix is "not found"."""
        prefix = key_prefix(key_or_prefix.strip())
        if owner is not None and not any(k.prefix == prefix for k in await self.store.list_keys(owner)):
            raise AccountError(f"no key with prefix {prefix}", 404, param="prefix")
        record = await self.store.revoke_key(prefix)
        self.key_changed(record.prefix)
        if actor is not None:
            audit.record("key revoke", actor, user=record.username, prefix=record.prefix)
        return record

    async def set_key_limits(self, key_or_prefix: str, changes: Mapping[str, int | None],
                             actor: Actor | None = None) -> KeyRecord:
        """Change some of a key's limits (the others stay as they are)."""
        if not changes:
            raise AccountError(f"nothing to set: give at least one of {', '.join(LIMIT_FIELDS)}", param="limits")
        record = await self.store.set_key_limits(key_prefix(key_or_prefix.strip()), changes)
        self.key_changed(record.prefix)
        audit.record("key set", actor, user=record.username, prefix=record.prefix,
                     **{k: "none" if v is None else v for k, v in changes.items()})
        return record

    async def check_may_manage(self, key: KeyRecord | None) -> None:
        """403 for a key with any restriction (as stored: the free tier's rate is not the
        key's own): such a key cannot create or revoke keys, change the password, or act
        as an admin. None (a logged-in session) may."""
        if key is None:
            return
        stored = await self.store.find_key(key.prefix)
        if stored is None or restricted(stored):
            raise AccountError(RESTRICTED, 403)
