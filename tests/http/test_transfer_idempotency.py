"""The transfer API takes an Idempotency-Key (as Stripe's API does): a retry moves nothing."""

import pytest
import trio

from tests.conftest import make_account

pytestmark = pytest.mark.both_stores  # the ledger fixture: SQLite and PostgreSQL

PATH = "/api/user/transfer"


@pytest.fixture
async def reseller(gateway):
    seller = await make_account(gateway, "reseller", credit_micro=100_000_000)
    await make_account(gateway, "client", credit_micro=0)
    return seller


async def test_a_retry_with_the_same_key_and_body_returns_the_first_answer(reseller, gateway):
    body = {"toUsername": "client", "amount": 12.5}
    async with reseller.http() as http:
        first = await http.post(PATH, json=body, headers={"Idempotency-Key": "order-42"})
        again = await http.post(PATH, json=body, headers={"Idempotency-Key": "order-42"})
        spaced = await http.post(PATH, content=b'{ "amount" : "12.50", "toUsername" : "client" }',
                                 headers={"Idempotency-Key": "order-42", "content-type": "application/json"})
    assert first.status_code == again.status_code == spaced.status_code == 200
    assert first.json() == again.json() == spaced.json() == {
        "success": True, "amount": 12.5, "from": "reseller", "to": "client", "senderNewBalance": 87.5,
        "receiverNewBalance": 12.5}
    assert "idempotent-replayed" not in first.headers and again.headers["idempotent-replayed"] == "true"
    assert (await gateway.gateway.store.get_account("client")).balance == 12_500_000


async def test_the_same_key_with_another_body_is_refused(reseller, gateway):
    async with reseller.http() as http:
        await http.post(PATH, json={"toUsername": "client", "amount": 1}, headers={"Idempotency-Key": "k"})
        other = await http.post(PATH, json={"toUsername": "client", "amount": 2}, headers={"Idempotency-Key": "k"})
        bad = await http.post(PATH, json={"toUsername": "client", "amount": 2}, headers={"Idempotency-Key": "a b"})
    assert other.status_code == 422 and other.json()["error"] == "Idempotency key reused"
    assert bad.status_code == 400 and bad.json()["success"] is False
    assert (await gateway.gateway.store.get_account("client")).balance == 1_000_000


async def test_concurrent_retries_move_the_money_once(reseller, gateway):
    answers = []
    async with reseller.http() as http:
        async def one():
            answers.append(await http.post(PATH, json={"toUsername": "client", "amount": 3},
                                           headers={"Idempotency-Key": "burst"}))
        async with trio.open_nursery() as nursery:
            for _ in range(8):
                nursery.start_soon(one)
    assert [a.status_code for a in answers] == [200] * 8
    assert {a.json()["senderNewBalance"] for a in answers} == {97}
    assert (await gateway.gateway.store.get_account("client")).balance == 3_000_000


async def test_without_the_header_each_post_moves_money(reseller, gateway):
    async with reseller.http() as http:
        for _ in range(2):
            assert (await http.post(PATH, json={"toUsername": "client", "amount": 1})).status_code == 200
    assert (await gateway.gateway.store.get_account("client")).balance == 2_000_000
