"""The rates a request meets beyond its key's own limits (limits/keys.py): count_tokens'
buckets, per key and per account, and the free tier's request rate per account.

count_tokens is free upstream, so it is kept out of the keys' rpm and concurrency (Claude
Code's /context sends 14 at once, which a key with --rpm 5 or the free tier's rate would
refuse nine of) and given a bucket of its own instead, per key and per account, so that no
key and no account floods the operator's credential with counts. The free tier's rate
(``[accounts] free_tier_rpm``) is per account: keys are unlimited in number, so a rate per
key would let five keys make five times the rate."""

from __future__ import annotations

from .. import errors
from ..runtime import Gateway
from storage.base import KeyRecord

WINDOW = 60.0


def _limited(what: str, wait: float) -> errors.GatewayError:
    seconds = max(1, int(wait + 0.999))
    return errors.GatewayError(429, f"Rate limit reached: {what}. Retry in {seconds} s.", "rate_limit_error",
                               headers=(("retry-after", str(seconds)),))


class AccountRates:
    def __init__(self, gateway: Gateway) -> None:
        config = gateway.config
        self.per_key = config.count_tokens_per_minute
        self.per_account = config.count_tokens_account_per_minute
        self.count_key = gateway.limits.bucket("count_tokens_key", self.per_key)
        self.count_account = gateway.limits.bucket("count_tokens_account", self.per_account)
        self.free_rpm = config.accounts.free_tier_rpm
        self.free_tier = gateway.limits.throttle("free_tier_account", self.free_rpm, WINDOW) if self.free_rpm \
            else None

    async def admit_count(self, key: KeyRecord) -> None:
        """A count_tokens request of ``key``, or the 429 saying when to retry."""
        wait = await self.count_account.take(key.account_id)
        if wait:
            raise _limited(f"{self.per_account} token counts a minute for this account", wait)
        wait = await self.count_key.take(key.id)
        if wait:
            await self.count_account.give_back(key.account_id)
            raise _limited(f"{self.per_key} token counts a minute for this API key", wait)

    async def admit_free_tier(self, key: KeyRecord) -> bool:
        """A free-tier account's request counted against its rate (True: taken, to give
        back if the request is refused before the upstream), or the 429; False when the
        key is not on the free tier or there is no free-tier rate."""
        if self.free_tier is None or not key.free_tier:
            return False
        wait = await self.free_tier.take(str(key.account_id))
        if wait:
            raise _limited(f"{self.free_rpm} requests a minute on the free tier (per account)", wait)
        return True

    async def give_back_free_tier(self, key: KeyRecord) -> None:
        if self.free_tier is not None:
            await self.free_tier.give_back(str(key.account_id))
