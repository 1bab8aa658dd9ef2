"""Card payments by Stripe Checkout over real HTTP: the gateway's official ``stripe`` library
talks to a local fake of Stripe's API (fake_stripe.py) on the same trio loop, so a call
that blocked the event loop would never be answered; webhooks are signed as Stripe signs
them (fake_stripe.sign: HMAC-SHA256 of ``timestamp.payload`` with the endpoint secret).

The checkout (its amount, the user it names, its URLs, its idempotency key and the bounds
and refusals of ``POST /api/topup/checkout``), the webhook (forged, stale, unsigned,
replayed and duplicated events, concurrent duplicates, unpaid and unknown events), the
refunds, the bonus table, and /health's payments flag."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import httpx
import pytest
import trio

from proxy.config import AccountsConfig, PaymentsConfig, StripeConfig
from proxy.serve import serve

from tests.conftest import FAST_HASH, code_worth, signed_up
from tests.payments.card_site import BONUS, HOOK, fake, post_event, start_card_site  # noqa: F401 (the fixture)
from tests.payments.fake_stripe import SECRET_KEY, WEBHOOK_SECRET, FakeStripe, event, serve_fake, sign

pytestmark = pytest.mark.both_stores  # the ledger fixture: SQLite and PostgreSQL


@pytest.fixture
async def card_site(nursery, config, fake):
    return await start_card_site(nursery, config, fake)


async def balance(running, username: str) -> int:
    return (await running.gateway.store.get_account(username)).balance


async def checkout(web: httpx.AsyncClient, amount) -> httpx.Response:
    return await web.post("/api/topup/checkout", json={"amount_usd": amount})


def anthropic_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error" and set(body["error"]) >= {"type", "message"}
    return body["error"]["message"]


async def test_checkout_makes_one_session_for_exactly_the_amount_naming_the_user(card_site, fake):
    async with signed_up(card_site, "carol") as web:
        first = await checkout(web, 10)
        again = await checkout(web, 10)                   # a double click
        assert first.status_code == 200 and first.json() == again.json()
        assert first.json()["url"] == f"{fake.url}/pay/cs_test_0001"
        other = await checkout(web, 12.34)
    assert other.json()["url"] == f"{fake.url}/pay/cs_test_0002"
    assert len(fake.created) == 2 and len(fake.idempotency_keys) == 3
    assert fake.idempotency_keys[0] == fake.idempotency_keys[1] != fake.idempotency_keys[2]
    assert all(k and k.startswith("cheaplm-") for k in fake.idempotency_keys)
    form = fake.created[0]
    account = await card_site.gateway.store.get_account("carol")
    assert form["mode"] == "payment" and form["line_items[0][quantity]"] == "1"
    assert (form["line_items[0][price_data][unit_amount]"], form["line_items[0][price_data][currency]"]) == (
        "1000", "usd")
    assert fake.created[1]["line_items[0][price_data][unit_amount]"] == "1234"
    assert form["client_reference_id"] == f"cheaplm-{account.id}"
    assert (form["metadata[cheaplm_username]"], form["metadata[cheaplm_account_id]"]) == ("carol", str(account.id))
    assert form["payment_intent_data[metadata][cheaplm_username]"] == "carol"
    assert form["success_url"] == card_site.url + "/dashboard/topup?checkout=success"
    assert form["cancel_url"] == card_site.url + "/dashboard/topup?checkout=cancelled"
    assert await balance(card_site, "carol") == 0  # nothing until Stripe says it was paid


async def test_checkout_bounds_and_refusals(card_site, fake):
    async with signed_up(card_site, "dave") as web:
        for amount in (0.99, 500.01, 0, -5, 1e9, 10.001, "10", None, True, [10], {"usd": 10}):
            message = anthropic_error(await checkout(web, amount), 400)
            assert "amount_usd" in message, (amount, message)
        missing = await web.post("/api/topup/checkout", json={})
        anthropic_error(missing, 400)
        anthropic_error(await web.post("/api/topup/checkout", content=b"{nope", headers={
            "content-type": "application/json"}), 400)
        assert fake.created == []
        for amount in (1, 500, 499.99):
            assert (await checkout(web, amount)).status_code == 200
        # the cross-site refusal of every cookie-authenticated change
        refused = await web.post("/api/topup/checkout", json={"amount_usd": 10},
                                 headers={"origin": "https://evil.example"})
        anthropic_error(refused, 403)
        refused = await web.post("/api/topup/checkout", json={"amount_usd": 10},
                                 headers={"sec-fetch-site": "cross-site"})
        anthropic_error(refused, 403)
        form_post = await web.post("/api/topup/checkout", content=b"amount_usd=10",
                                   headers={"content-type": "application/x-www-form-urlencoded"})
        anthropic_error(form_post, 403)
    assert len(fake.created) == 3
    async with httpx.AsyncClient(base_url=card_site.url) as anonymous:
        anthropic_error(await anonymous.post("/api/topup/checkout", json={"amount_usd": 10}), 401)


async def test_card_payments_are_off_unless_configured(nursery, config, fake):
    running = await nursery.start(serve, replace(config, accounts=AccountsConfig(**FAST_HASH)))
    async with signed_up(running, "erin") as web:
        anthropic_error(await checkout(web, 10), 404)
    anthropic_error(await post_event(running, event("checkout.session.completed", {})), 404)
    async with httpx.AsyncClient(base_url=running.url) as http:
        off = (await http.get("/health")).json()["payments"]
    assert off == {"codes": True, "card": False, "webhooks": [], "bonus": []}


async def test_health_says_card_payments_are_on(card_site):
    async with httpx.AsyncClient(base_url=card_site.url) as http:
        health = (await http.get("/health")).json()
    assert health["payments"] == {"codes": True, "card": True, "webhooks": ["stripe"], "bonus": []}
    assert SECRET_KEY not in json.dumps(health) and WEBHOOK_SECRET not in json.dumps(health)


async def paid_session(running, web, fake, amount) -> dict:
    assert (await checkout(web, amount)).status_code == 200
    return fake.paid(list(fake.sessions)[-1])


async def test_a_paid_session_is_credited_once_however_often_it_is_told(card_site, fake):
    async with signed_up(card_site, "fay") as web:
        session = await paid_session(card_site, web, fake, 10)
    body = event("checkout.session.completed", session, "evt_1")
    first = await post_event(card_site, body)
    assert first.status_code == 200 and first.json()["credited"] is True
    assert first.json()["paid_usd"] == "10.000000" and first.json()["credited_usd"] == "300.000000"
    assert await balance(card_site, "fay") == 300_000_000
    replayed = await post_event(card_site, body)                                          # Stripe retries
    another = await post_event(card_site, event("checkout.session.async_payment_succeeded", session, "evt_2"))
    assert replayed.json()["credited"] is False and another.json()["credited"] is False
    assert await balance(card_site, "fay") == 300_000_000
    entries = [e for e in await card_site.gateway.store.ledger("fay") if e.kind == "payment"]
    assert [(e.delta, e.paid, e.ref) for e in entries] == [(300_000_000, 10_000_000, f"stripe:{session['id']}")]


async def test_forged_stale_and_unsigned_events_are_refused_and_credit_nothing(card_site, fake):
    async with signed_up(card_site, "gus") as web:
        session = await paid_session(card_site, web, fake, 25)
    body = event("checkout.session.completed", session)
    refusals = [
        await post_event(card_site, body, None),                                            # unsigned
        await post_event(card_site, body, sign(body, "whsec_someone_else_entirely")),       # forged
        await post_event(card_site, body, sign(body, at=time.time() - 301)),               # stale (> 300 s)
        await post_event(card_site, body, sign(body + b" ")),                              # another payload
        await post_event(card_site, body, "t=1,v1=deadbeef"),
        await post_event(card_site, b"not json", sign(b"not json")),
    ]
    for response in refusals:
        anthropic_error(response, 400)
    assert await balance(card_site, "gus") == 0
    assert (await post_event(card_site, body, sign(body, at=time.time() - 200))).json()["credited"] is True


async def test_unpaid_foreign_and_unknown_events_are_acknowledged_and_ignored(card_site, fake):
    async with signed_up(card_site, "hal") as web:
        assert (await checkout(web, 10)).status_code == 200
    unpaid = dict(fake.sessions["cs_test_0001"])
    foreign = {**fake.paid("cs_test_0001"), "id": "cs_other", "metadata": {}}
    for body in (event("checkout.session.completed", unpaid), event("checkout.session.completed", foreign),
                 event("customer.created", {"id": "cus_1", "object": "customer"}),
                 event("checkout.session.completed", {**fake.sessions["cs_test_0001"], "currency": "eur"})):
        answer = await post_event(card_site, body)
        assert answer.status_code == 200 and "ignored" in answer.json(), answer.text
    assert await balance(card_site, "hal") == 0


async def test_concurrent_duplicate_webhooks_credit_once(card_site, fake):
    async with signed_up(card_site, "ida") as web:
        session = await paid_session(card_site, web, fake, 40)
    answers = []

    async def deliver(n: int) -> None:
        kind = "checkout.session.completed" if n % 2 else "checkout.session.async_payment_succeeded"
        answers.append((await post_event(card_site, event(kind, session, f"evt_{n % 3}"))).json())

    async with trio.open_nursery() as nursery:
        for n in range(12):
            nursery.start_soon(deliver, n)
    assert sorted(a["credited"] for a in answers) == [False] * 11 + [True]
    assert await balance(card_site, "ida") == 1_200_000_000


async def test_a_refund_takes_back_what_is_unspent_and_records_the_rest_as_owed(card_site, fake, caplog):
    store = card_site.gateway.store
    async with signed_up(card_site, "jo") as web:
        session = await paid_session(card_site, web, fake, 10)
    await post_event(card_site, event("checkout.session.completed", session))
    await store.create_user("elsewhere")
    await store.transfer((await store.get_account("jo")).id, "elsewhere", 200_000_000, "spent")  # $200 of $300 gone
    charge = {"id": "ch_1", "object": "charge", "payment_intent": session["payment_intent"], "amount": 1000,
              "amount_refunded": 400, "refunded": False, "currency": "usd"}
    partial = await post_event(card_site, event("charge.refunded", charge, "evt_r1"))
    assert partial.json()["taken_back_usd"] == "100.000000" and partial.json()["owed_usd"] == "20.000000"
    assert await balance(card_site, "jo") == 0                                    # never below zero
    assert (await post_event(card_site, event("charge.refunded", charge, "evt_r1"))).json()["taken_back_usd"] == \
        "0.000000"
    full = await post_event(card_site, event("charge.refunded", {**charge, "amount_refunded": 1000}, "evt_r2"))
    assert full.json()["owed_usd"] == "180.000000" and full.json()["refunded_usd"] == "10.000000"
    record = await store.find_payment("stripe", session["payment_intent"])
    assert (record.refunded, record.taken_back, record.owed) == (10_000_000, 100_000_000, 200_000_000)
    assert any("OWED" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    assert any("owes" in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)
    unknown = await post_event(card_site, event("charge.refunded", {**charge, "payment_intent": "pi_other"}))
    assert unknown.status_code == 200 and "ignored" in unknown.json()


async def test_the_bonus_table_applies_to_cards_and_codes(nursery, config, fake):
    running = await start_card_site(nursery, config, fake, BONUS)
    async with signed_up(running, "kim") as web:
        session = await paid_session(running, web, fake, 10)
        answer = await post_event(running, event("checkout.session.completed", session))
        assert answer.json()["credited_usd"] == "305.000000"                  # $10 -> $300 + $5
        redeemed = await web.post("/api/topup/redeem", json={"code": await code_worth(running, "100")})
        assert redeemed.json()["credited_usd"] == "3100.000000"               # $100 -> $3000 + $100 (not + $5)
        small = await web.post("/api/topup/redeem", json={"code": await code_worth(running, "9.99")})
        assert small.json()["credited_usd"] == "299.700000"
    async with httpx.AsyncClient(base_url=running.url) as http:
        assert (await http.get("/health")).json()["payments"]["bonus"] == [
            {"paid_usd": "10.000000", "bonus_usd": "5.000000"}, {"paid_usd": "100.000000", "bonus_usd": "100.000000"}]


async def test_the_gateway_keeps_serving_while_the_library_waits_on_stripe(card_site, fake):
    """The library's HTTP call runs in a worker thread: with Stripe's answer held back, the
    gateway (and the fake, on the same loop) still answer everything else."""
    fake.hold = trio.Event()
    async with signed_up(card_site, "lee") as web:
        answers = []

        async def pay() -> None:
            answers.append(await checkout(web, 10))

        with trio.fail_after(20):  # (a call on the loop would leave the fake unable to answer: no progress)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(pay)
                await fake.in_flight.wait()
                assert (await web.get("/health")).status_code == 200 and answers == []
                fake.hold.set()
    assert answers[0].status_code == 200


async def test_stripe_refusing_the_key_is_a_502_and_no_session(nursery, config, fake):
    card = StripeConfig(secret_key="sk_test_wrong", webhook_secret=WEBHOOK_SECRET, api_base=fake.url)
    running = await nursery.start(serve, replace(config, accounts=AccountsConfig(**FAST_HASH),
                                                 payments=PaymentsConfig((), card)))
    async with signed_up(running, "max") as web:
        message = anthropic_error(await checkout(web, 10), 502)
    assert "nothing was charged" in message and "sk_test_wrong" not in message and fake.created == []


