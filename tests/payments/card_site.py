"""A card-payment site against the fake Stripe: the gateway with [payments.stripe] pointed
at ``FakeStripe``, which posts its signed events to the gateway's webhook."""

from __future__ import annotations

from dataclasses import replace

import httpx
import pytest

from proxy.config import AccountsConfig, PaymentsConfig, StripeConfig
from proxy.serve import serve

from tests.conftest import FAST_HASH
from tests.payments.fake_stripe import SECRET_KEY, WEBHOOK_SECRET, FakeStripe, serve_fake, sign

HOOK = "/api/payments/stripe/webhook"
BONUS = ((10_000_000, 5_000_000), (100_000_000, 100_000_000))   # [payments] bonus = { "10" = 5, "100" = 100 }


async def start_card_site(nursery, config, fake: FakeStripe, bonus=()):
    card = StripeConfig(secret_key=SECRET_KEY, webhook_secret=WEBHOOK_SECRET, api_base=fake.url)
    running = await nursery.start(serve, replace(config, accounts=AccountsConfig(**FAST_HASH),
                                                 payments=PaymentsConfig(bonus, card)))
    fake.webhook_url = running.url + HOOK
    return running


@pytest.fixture
async def fake(nursery):
    return await nursery.start(serve_fake, FakeStripe())


async def post_event(running, body: bytes, signature: str | None = "sign") -> httpx.Response:
    headers = {"content-type": "application/json"}
    if signature is not None:
        headers["stripe-signature"] = sign(body) if signature == "sign" else signature
    async with httpx.AsyncClient(base_url=running.url, timeout=30) as stripe_side:
        return await stripe_side.post(HOOK, content=body, headers=headers)
