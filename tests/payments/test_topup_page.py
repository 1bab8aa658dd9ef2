"""The top-up page over real HTTP: "you get" is the server's figure by the ledger's rule
(money.credit_for, with the bonus table), the bonus table shown, the pay button only when
card payments are on, the code field always, and Stripe's return in words."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from proxy.config import AccountsConfig, PaymentsConfig
from proxy.serve import serve

from tests.conftest import FAST_HASH, code_worth
from tests.http.pages import member, post
from tests.payments.fake_stripe import event
from tests.payments.card_site import BONUS, fake, post_event, start_card_site  # noqa: F401 (the fixture)

pytestmark = pytest.mark.both_stores  # the ledger fixture: SQLite and PostgreSQL


def you_get(html: str) -> str:
    return re.search(r'data-testid="you-get">([^<]+)<', html).group(1)


async def test_the_page_with_card_payments_and_a_bonus(nursery, config, fake):
    running = await start_card_site(nursery, config, fake, BONUS)
    async with member(running, "nia") as browser:
        page = (await browser.get("/dashboard/topup")).text
        assert you_get(page) == "605.000000"                      # $20 by default: $600 + $5
        assert 'data-testid="pay"' in page and 'name="code"' in page
        assert "$5 more at $10 or above; $100 more at $100 or above" in page
        assert '"multiplier":"30"' in page.replace("&#34;", '"')  # the rule app.js repeats
        for amount, value in (("10", "305.000000"), ("9.99", "299.700000"), ("100", "3100.000000"),
                              ("500", "15100.000000"), ("1", "30.000000"), ("12.34", "375.200000")):
            assert you_get((await browser.get(f"/dashboard/topup?amount={amount}")).text) == value, amount
        for wrong in ("0.5", "501", "ten", "10.001"):           # out of range: the default again
            assert you_get((await browser.get(f"/dashboard/topup?amount={wrong}")).text) == "605.000000"
        returned = (await browser.get("/dashboard/topup?checkout=success")).text
        assert "Payment received" in returned
        assert "nothing was charged" in (await browser.get("/dashboard/topup?checkout=cancelled")).text
        redeemed = await post(browser, "/dashboard/topup", {"code": await code_worth(running, "10")},
                              "/dashboard/topup")
        assert "credited $305.000000" in redeemed.text


async def test_the_page_without_card_payments_still_takes_codes(nursery, config):
    running = await nursery.start(serve, replace(config, accounts=AccountsConfig(**FAST_HASH),
                                                 payments=PaymentsConfig()))
    async with member(running, "oli") as browser:
        page = (await browser.get("/dashboard/topup?amount=10")).text
    assert you_get(page) == "300.000000" and 'data-testid="pay"' not in page
    assert 'data-testid="card-off"' in page and 'name="code"' in page and "plus a bonus" not in page


async def test_a_paid_session_shows_on_the_page(nursery, config, fake):
    running = await start_card_site(nursery, config, fake)
    async with member(running, "pia") as browser:
        assert (await browser.post("/api/topup/checkout", json={"amount_usd": 10})).status_code == 200
        await post_event(running, event("checkout.session.completed", fake.paid("cs_test_0001")))
        page = (await browser.get("/dashboard/topup?checkout=success")).text
    assert re.search(r'data-testid="balance">300.000000<', page)
