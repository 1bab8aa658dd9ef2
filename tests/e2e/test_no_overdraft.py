"""No balance below zero, whatever the prompt holds: a request whose worst case the balance
cannot cover has its hold sized on the upstream's count of the prompt first (count_tokens
sees documents by URL, images), or is refused with its endpoint's 402 before it is sent.
An account that covers the worst case is never counted."""

from __future__ import annotations

import pytest

from tests.conftest import make_account

pytestmark = pytest.mark.both_stores  # the ledger fixture: SQLite and PostgreSQL

DOC = {"type": "document", "source": {"type": "url", "url": "https://example.com/big.pdf"}}


def _body(stream: bool, tokens: int = 150_000, model: str = "claude-haiku-4.5") -> dict:
    # (the directive is the simulator's stand-in for the fetched document's tokens)
    return {"model": model, "max_tokens": 100, "stream": stream, "messages": [{"role": "user", "content": [
        DOC, {"type": "text", "text": f"summarise [sim input_tokens={tokens} deltas=4]"}]}]}


@pytest.mark.parametrize("stream", [False, True])
async def test_the_issue_probe_five_cents_and_a_150k_token_document(gateway, simulator, stream):
    account = await make_account(gateway, "poor", credit_micro=50_000)
    async with account.http() as http:
        answer = await http.post("/v1/messages", json=_body(stream))
    assert answer.status_code == 402 and answer.json()["error"]["type"] == "billing_error", answer.text
    assert await account.balance() == 50_000
    assert simulator.seen() == [] and len(simulator.seen("/v1/messages/count_tokens")) == 1


@pytest.mark.parametrize("stream", [False, True])
async def test_a_balance_that_covers_the_counted_prompt_is_served_and_charged_it(gateway, simulator, stream):
    account = await make_account(gateway, "enough", credit_micro=200_000)  # $0.20: 150k at $1/M fits
    async with account.http() as http:
        answer = await http.post("/v1/messages", json=_body(stream))
    assert answer.status_code == 200, answer.text
    final = await account.settled(1)
    [row] = await gateway.gateway.store.usage("enough", 10)
    assert row.input_tokens == 150_000 and final.balance == 200_000 - row.cost >= 0 and row.uncharged == 0


async def test_the_openai_endpoint_refuses_in_its_own_shape(gateway, simulator):
    account = await make_account(gateway, "poor", credit_micro=50_000)
    body = {"model": "claude-haiku-4.5", "max_tokens": 100, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/huge.png"}},
        {"type": "text", "text": "describe [sim input_tokens=150000]"}]}]}
    async with account.http() as http:
        answer = await http.post("/v1/chat/completions", json=body)
    assert answer.status_code == 402, answer.text
    assert answer.json()["error"]["type"] == "insufficient_quota" or "billing" in answer.text
    assert await account.balance() == 50_000 and simulator.seen() == []


async def test_claude_codes_retry_without_stream_does_not_overdraw(gateway, simulator):
    """Claude Code retries a stream cut by a billing error without stream: neither overdraws."""
    account = await make_account(gateway, "cc", credit_micro=50_000)
    async with account.http() as http:
        streamed = await http.post("/v1/messages", json=_body(True))
        retried = await http.post("/v1/messages", json=_body(False))
    assert (streamed.status_code, retried.status_code) == (402, 402)
    assert await account.balance() == 50_000


async def test_an_account_that_covers_the_worst_case_is_never_counted(alice, gateway, simulator):
    async with alice.http() as http:
        for stream in (False, True):
            assert (await http.post("/v1/messages", json=_body(stream, tokens=1000))).status_code == 200
    assert simulator.seen("/v1/messages/count_tokens") == [] and gateway.gateway.meter.counted_holds == 0


async def test_concurrent_requests_near_an_empty_balance_never_overdraw(gateway, simulator):
    account = await make_account(gateway, "edge", credit_micro=400_000)
    results = await account.post_at_once(_body(False, tokens=150_000), 6)
    assert sorted(r.status_code for r in results) == [200, 200, 402, 402, 402, 402]
    final = await account.settled(2)
    rows = await gateway.gateway.store.usage("edge", 10)
    assert final.balance == 400_000 - sum(r.cost for r in rows) >= 0
    assert await gateway.gateway.store.check() == []
