"""API keys: format, hashing, extraction from headers, cached lookup, restriction checks.

A key is ``sk-cl-`` + 40 url-safe random characters. Its first 14 characters
(``sk-cl-`` + 8) are the prefix: stored in clear, shown in listings, used to find
the record. Only the SHA-256 of the whole key is stored, compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from dataclasses import dataclass, replace
from typing import Callable, Mapping, Sequence

from . import errors
from .catalog import Model
from storage.base import KeyRecord

KEY_PREFIX = "sk-cl-"
PREFIX_LENGTH = len(KEY_PREFIX) + 8
SECRET_LENGTH = 40

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def new_key() -> str:
    while True:
        body = secrets.token_urlsafe(30)  # 40 characters
        if not body.startswith("-"):
            return KEY_PREFIX + body


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_prefix(key: str) -> str:
    return key[:PREFIX_LENGTH]


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key from ``x-api-key`` or ``Authorization: Bearer`` (headers lower-cased)."""
    key = headers.get("x-api-key")
    if key:
        return key.strip()
    auth = headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def client_ip(peer: str | None, forwarded_for: str | None, trusted: Sequence[Network]) -> str | None:
    """The client address: the socket peer, or, when the peer is a trusted proxy, the
    right-most X-Forwarded-For entry that is not itself a trusted proxy."""
    if peer is None:
        return None
    if not forwarded_for or not _in_any(peer, trusted):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _in_any(hop, trusted):
            return hop
    return hops[0] if hops else peer


def from_trusted_proxy(peer: str | None, trusted: Sequence[Network]) -> bool:
    """Whether the socket peer is one of the trusted proxies (whose X-Forwarded-* headers count)."""
    return peer is not None and _in_any(peer, trusted)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:
        text = text[1:text.index("]")]
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def address_key(ip: str | None) -> str:
    """What the per-address throttles count ``ip`` under: one key per IPv4 address and per
    IPv6 /64 (what one client is given: rotating within it gets no fresh allowance),
    whatever the spelling (case, zeros, brackets, IPv4-mapped); text that is no address
    as it is, none as '?'. The same for the in-process and the shared limiters."""
    address = _address(ip) if ip else None
    if address is None:
        return ip or "?"
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def _in_any(ip: str, networks: Sequence[Network]) -> bool:
    address = _address(ip)
    return address is not None and any(address.version == n.version and address in n for n in networks)


def parse_networks(cidrs: Sequence[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(c.strip(), strict=False) for c in cidrs)


@dataclass
class _Cached:
    record: KeyRecord | None
    expires: float


class KeyCache:
    """Prefix -> key record, for ``ttl`` seconds. A change made by another process (the
    CLI, another node) is forgotten sooner by the change feed's follower
    (proxy/shared/changes.py: ``forget``, ``forget_account``, ``clear``); the ttl bounds
    it when the feed cannot be read. A key past its expiry is refused at once, cached or not."""

    def __init__(self, lookup: Callable, ttl: float, clock: Callable[[], float],
                 wall: Callable[[], float] = time.time,
                 adjust: Callable[[KeyRecord], KeyRecord] | None = None) -> None:
        self._lookup = lookup
        self._adjust = adjust  # applied to each record looked up, once per cache fill (free_tier_limits)
        self._ttl = ttl
        self._clock = clock
        self._wall = wall  # unix time, for keys that expire
        self._entries: dict[str, _Cached] = {}
        self._forgets = 0  # forget/clear calls so far: a lookup they overlapped is not cached

    def forget(self, prefix: str) -> None:
        self._forgets += 1
        self._entries.pop(prefix, None)

    def forget_account(self, account_id: int) -> None:
        """Every cached key of the account (an account disabled, enabled, paid)."""
        self._forgets += 1
        for prefix, entry in list(self._entries.items()):
            if entry.record is not None and entry.record.account_id == account_id:
                del self._entries[prefix]

    def clear(self) -> None:
        self._forgets += 1
        self._entries.clear()

    async def authenticate(self, key: str | None) -> KeyRecord:
        if not key:
            raise errors.authentication("Missing API key: send it as x-api-key or Authorization: Bearer")
        if not key.startswith(KEY_PREFIX) or len(key) < PREFIX_LENGTH + 8:
            raise errors.authentication("Invalid API key")
        prefix = key_prefix(key)
        now = self._clock()
        entry = self._entries.get(prefix)
        if entry is None or entry.expires <= now:
            if len(self._entries) > 100_000:
                self._entries.clear()
            forgets = self._forgets
            record = await self._lookup(prefix)
            if record is not None and self._adjust is not None:
                record = self._adjust(record)
            entry = _Cached(record, now + self._ttl)
            if forgets == self._forgets:  # (else a change noticed meanwhile may postdate what was read)
                self._entries[prefix] = entry
        record = entry.record
        if record is None or not hmac.compare_digest(record.key_hash, hash_key(key)):
            raise errors.authentication("Invalid API key")
        if record.revoked_at:
            raise errors.authentication("This API key has been revoked")
        if record.expires_at is not None and record.expires_at <= self._wall():
            raise errors.authentication("This API key has expired")
        if record.account_disabled:
            raise errors.permission("This account is disabled")
        return record


def free_tier_limits(rpm: int | None) -> Callable[[KeyRecord], KeyRecord] | None:
    """The adjustment that gives the keys of users who never paid at most ``rpm`` requests
    a minute (their own rpm, if lower, stays); None when there is no free-tier rate."""
    if not rpm:
        return None

    def adjust(record: KeyRecord) -> KeyRecord:
        own = record.limits.rpm
        if not record.free_tier or (own is not None and own <= rpm):
            return record
        return replace(record, limits=replace(record.limits, rpm=rpm))
    return adjust


def check_address(record: KeyRecord, ip: str | None) -> None:
    """The restrictions that need only the request's headers and peer (every route that
    takes a key applies them, before reading a body): the key's networks."""
    if record.ips:
        networks = parse_networks(record.ips)
        if ip is None or not _in_any(ip, networks):
            raise errors.permission(f"Requests from {ip or 'an unknown address'} are not allowed for this API key")


def check_request(record: KeyRecord, model: Model, stream: bool) -> None:
    """The restrictions on what a metered request asks for: the model allowlist, streaming."""
    if record.models is not None and model.id not in record.models:
        raise errors.permission(f"This API key may not use model {model.id}; allowed: {', '.join(record.models)}")
    if stream and not record.allow_stream:
        raise errors.permission("This API key may not stream; send stream: false")
