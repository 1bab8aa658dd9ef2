"""Redemption codes: an operator makes them (only their hashes stored), a user redeems
one, once. Part of ``Accounts``."""

from __future__ import annotations

import secrets
from types import MappingProxyType
from typing import Sequence

from ..auth import address_key
from ..limits.base import give_back_all, take_all
from ..money import credit_for, format_usd
from . import audit
from .audit import Actor
from .checks import iso
from .errors import AccountError
from .sessions import secret_hash
from storage.base import Account, CodeRecord, CodeRefused


CODE_BYTES = 18            # 24 url-safe characters
CODE_HINT = 4              # characters of a code shown in listings
MAX_CODES = 1000           # at once
MAX_CODE = 128
CODE_REFUSALS = MappingProxyType({"unknown": "This code is not valid: check it for typos",
                                  "used": "This code has already been redeemed",
                                  "expired": "This code has expired"})


def describe_code(code: CodeRecord, now: float) -> dict[str, str]:
    return {"code": code.hint + "...", "paid_usd": format_usd(code.paid), "credit_usd": format_usd(code.credit),
            "status": code.status(now), "created": code.created_at, "expires": iso(code.expires_at) or "-",
            "redeemed": code.redeemed_at or "-", "by": code.redeemed_by or "-"}


class Codes:
    async def create_codes(self, paid: int, count: int = 1, expires_at: float | None = None,
                           actor: Actor | None = None) -> list[str]:
        """``count`` single-use codes, each buying what paying ``paid`` buys (credit_for): the codes
        (shown once; only their hashes are stored)."""
        if not 1 <= count <= MAX_CODES:
            raise AccountError(f"the count must be 1 to {MAX_CODES}", param="count")
        if paid <= 0:
            raise AccountError("the paid amount must be positive", param="paid")
        codes = [secrets.token_urlsafe(CODE_BYTES) for _ in range(count)]
        await self.store.create_codes([(secret_hash(c), c[:CODE_HINT]) for c in codes], paid,
                                      credit_for(paid, self.multiplier, self.bonus), expires_at)
        audit.record("code create", actor, count=count, paid_usd=format_usd(paid))
        return codes

    async def codes(self) -> Sequence[CodeRecord]:
        """Every code, newest first."""
        return await self.store.list_codes()

    async def redeem(self, username: str, code: object, ip: str | None) -> tuple[CodeRecord, Account]:
        """Credit a code's value once. Failures (wrong, used, expired) count against the
        user and the address: past the limit, 429 before the code is even looked at."""
        slots = [(self.redeem_users, username), (self.redeem_ips, address_key(ip))]
        wait = await take_all(slots)
        if wait:
            raise AccountError("Too many failed redeem attempts; try again later", 429, wait)
        text = code.strip() if isinstance(code, str) else ""
        try:
            if not text or len(text) > MAX_CODE:
                raise CodeRefused("unknown")
            redeemed = await self.store.redeem_code(secret_hash(text), username)
        except CodeRefused as refused:
            raise AccountError(CODE_REFUSALS[refused.reason], param="code") from None  # the failure keeps its slots
        await give_back_all(slots)
        return redeemed
