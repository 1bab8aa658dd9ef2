"""The reseller transfer API, as documented."""

import time

import pytest
import trio

from proxy.http.api.transfer import usd_amount as _amount
from tests.conftest import http_client, make_account

pytestmark = pytest.mark.both_stores  # the ledger fixture: SQLite and PostgreSQL


@pytest.fixture
async def reseller(gateway):
    seller = await make_account(gateway, "reseller", credit_micro=551_000_000)
    await make_account(gateway, "client-username", credit_micro=0)
    return seller


async def test_transfer_moves_balance_atomically(reseller, gateway):
    async with reseller.http() as http:
        response = await http.post("/api/user/transfer", json={"toUsername": "client-username", "amount": 100.5})
    assert response.status_code == 200
    assert response.json() == {"success": True, "amount": 100.5, "from": "reseller", "to": "client-username",
                               "senderNewBalance": 450.5, "receiverNewBalance": 100.5}
    store = gateway.gateway.store
    assert (await store.get_account("reseller")).balance == 450_500_000
    assert [e.kind for e in await store.ledger("client-username")] == ["transfer_in"]


@pytest.mark.parametrize("payload,status,error", [
    ({"toUsername": "client-username", "amount": 10_000}, 400, "Insufficient balance"),
    ({"toUsername": "nobody", "amount": 1}, 404, "User not found"),
    ({"toUsername": "reseller", "amount": 1}, 400, "Cannot transfer to yourself"),
    ({"toUsername": "client-username", "amount": -1}, 400, "Invalid amount"),
    ({"toUsername": "client-username", "amount": 0.0000001}, 400, "Invalid amount"),
    ({"toUsername": "client-username", "amount": True}, 400, "Invalid amount"),
    ({"amount": 1}, 400, "Invalid request"),
])
async def test_transfer_errors(reseller, gateway, payload, status, error):
    async with reseller.http() as http:
        response = await http.post("/api/user/transfer", json=payload)
    assert response.status_code == status and response.json()["error"] == error
    assert response.json()["success"] is False
    assert (await gateway.gateway.store.get_account("reseller")).balance == 551_000_000


async def test_transfer_needs_a_valid_key(gateway):
    async with http_client(gateway) as http:
        response = await http.post("/api/user/transfer", json={"toUsername": "x", "amount": 1},
                                   headers={"x-api-key": "sk-cl-notreallyakeyatallnotreallyakey"})
    assert response.status_code == 401 and response.json()["error"] == "Unauthorized"


async def test_concurrent_transfers_never_overdraw(reseller, gateway):
    statuses = []

    async def send(http):
        r = await http.post("/api/user/transfer", json={"toUsername": "client-username", "amount": 100})
        statuses.append(r.status_code)

    async with reseller.http() as http:
        async with trio.open_nursery() as nursery:
            for _ in range(8):
                nursery.start_soon(send, http)
    assert sorted(statuses) == [200] * 5 + [400] * 3
    store = gateway.gateway.store
    assert (await store.get_account("reseller")).balance == 51_000_000
    assert (await store.get_account("client-username")).balance == 500_000_000


async def test_transfers_are_rate_limited_per_key(nursery, config):
    from dataclasses import replace

    from proxy.serve import serve

    from tests.conftest import make_account

    running = await nursery.start(serve, replace(config, transfers_per_minute=3))
    seller = await make_account(running, "busy-seller", credit_micro=100_000_000)
    other_key = await make_account(running, "second-seller", credit_micro=100_000_000)
    await make_account(running, "buyer", credit_micro=0)
    payload = {"toUsername": "buyer", "amount": 1}
    async with seller.http() as http:
        statuses = [(await http.post("/api/user/transfer", json=payload)).status_code for _ in range(3)]
        limited = await http.post("/api/user/transfer", json=payload)
    assert statuses == [200, 200, 200]
    assert limited.status_code == 429 and limited.json()["error"] == "Rate limited"
    assert int(limited.headers["retry-after"]) >= 1
    async with other_key.http() as http:  # another key has its own allowance
        assert (await http.post("/api/user/transfer", json=payload)).status_code == 200
    assert (await running.gateway.store.get_account("buyer")).balance == 4_000_000


async def test_rate_limiter_refills():
    from proxy.limits.bucket import LocalBucket

    now = [0.0]
    limiter = LocalBucket(2, lambda: now[0])
    assert await limiter.take(1) == 0 and await limiter.take(1) == 0
    assert await limiter.take(1) == pytest.approx(30.0)
    now[0] = 30.0
    assert await limiter.take(1) == 0 and await limiter.take(1) > 0


async def test_oversized_transfer_body_is_a_413_in_the_documented_shape(gateway):
    from tests.conftest import make_account

    seller = await make_account(gateway, "verbose-seller")
    async with seller.http() as http:
        response = await http.post("/api/user/transfer", content=b"{" + b" " * 70_000 + b"}",
                                   headers={"content-type": "application/json"})
        wrong_method = await http.get("/api/user/transfer")
    assert response.status_code == 413
    assert response.json() == {"success": False, "error": "Request too large", "message": response.json()["message"]}
    assert wrong_method.status_code == 405 and wrong_method.json()["success"] is False


# -- amounts -----------------------------------------------------------------------------------

def test_transfer_amount_overflowing_exponent_is_invalid_not_500():
    assert _amount("1e999999") is None


def test_transfer_amount_huge_exponent_is_refused_quickly():
    started = time.perf_counter()
    result = _amount("1e300000")
    assert time.perf_counter() - started < 0.5
    assert result is None


def test_transfer_amount_with_underscores_is_invalid():
    assert _amount("1_0") is None


# -- found by probing, fixed: a capped key's transfers ----------------------------------------

async def test_a_key_capped_at_a_dollar_a_day_cannot_move_the_whole_balance(app_gateway):
    gateway = app_gateway
    from storage.base import KeyLimits
    account = await make_account(gateway, credit_micro=500_000_000, limits=KeyLimits(daily_usd=1_000_000))
    from proxy.accounts.service import Accounts
    await Accounts(gateway.gateway.store).create_user("mallory")
    async with account.http() as http:
        answer = await http.post("/api/user/transfer", json={"toUsername": "mallory", "amount": 500})
        assert answer.status_code == 429 and answer.json()["error"] == "Spend cap reached", answer.text
        assert int(answer.headers["retry-after"]) > 0
        assert (await http.post("/api/user/transfer", json={"toUsername": "mallory", "amount": 1})).status_code == 200
        assert (await http.post("/api/user/transfer", json={"toUsername": "mallory", "amount": 0.01})).status_code \
            == 429
    assert await account.balance() == 499_000_000
