"""Balances to the micro-dollar: sequential, concurrent, and on disconnect. The
disconnect and restart tests run the whole gateway on a socket (a client that goes away
mid-stream, a serve that recovers holds); the rest the app in-process."""

import json

import time

import anthropic

import pytest
import trio

from proxy.billing import estimate_input_tokens, hold_amount, usage_cost
from proxy.protocol.usage import Usage

from tests.conftest import make_account

pytestmark = pytest.mark.both_stores  # the ledger fixture: SQLite and PostgreSQL


async def ledger_balances(gateway, username: str) -> None:
    """Every balance change is a ledger entry: the entries add up to the balance."""
    entries = await gateway.gateway.store.ledger(username)
    account = await gateway.gateway.store.get_account(username)
    assert sum(e.delta for e in entries) == account.balance
    running = 0
    for entry in entries:
        running += entry.delta
        assert entry.balance_after == running


async def test_balance_after_many_requests_is_exact(app_alice):
    app_gateway = app_alice.running
    client = app_alice.anthropic()
    models = ["claude-sonnet-4.5", "claude-haiku-4.5", "claude-opus-4.6", "claude-opus-4", "claude-haiku-3.5"]
    expected = 0
    for i in range(10):
        model = models[i % len(models)]
        directive = f"[sim deltas={3 + i} cache_read={100 * i} cache_write={7 * i} cache_write_1h={3 * i}]"
        prompt = [{"role": "user", "content": f"request {i} {directive}"}]
        if i % 2:
            message = await client.messages.create(model=model, max_tokens=400, messages=prompt)
            usage = message.usage
        else:
            async with client.messages.stream(model=model, max_tokens=400, messages=prompt) as s:
                usage = (await s.get_final_message()).usage
        merged = Usage().merged(usage.model_dump())
        assert merged.cache_read == 100 * i and merged.cache_write_1h == 3 * i
        expected += usage_cost(merged, app_gateway.gateway.catalog.resolve(model).prices)
    account = await app_alice.settled(10)
    assert account.balance == 10_000_000 - expected
    rows = await app_gateway.gateway.store.usage("alice", 100)
    assert sum(r.cost for r in rows) == expected
    await ledger_balances(app_gateway, "alice")


async def test_concurrent_requests_never_overdraw(app_gateway):
    model = app_gateway.gateway.catalog.resolve("claude-haiku-4.5")
    body = {"model": "claude-haiku-4.5", "max_tokens": 1000, "stream": False,
            "messages": [{"role": "user", "content": "slow"}]}
    hold = hold_amount(model, estimate_input_tokens(body), 1000)
    account = await make_account(app_gateway, "small", credit_micro=3 * hold + hold // 2)
    results = await account.post_at_once(body, 20, held=True)  # (no answer before all twenty are judged)
    ok = [r for r in results if r.status_code == 200]
    refused = [r for r in results if r.status_code == 402]
    assert len(ok) == 3 and len(refused) == 17
    assert all(r.json()["error"]["type"] == "billing_error" for r in refused)
    spent = sum(int(round(float(r.headers["x-cheaplm-cost-usd"]) * 1_000_000)) for r in ok)
    final = await account.settled(3)
    assert final.balance == 3 * hold + hold // 2 - spent >= 0
    await ledger_balances(app_gateway, "small")


async def test_disconnect_mid_stream_cancels_upstream_and_charges_partial(alice, gateway, simulator):
    before = await alice.balance()
    body = {"model": "claude-sonnet-4.5", "max_tokens": 2000, "stream": True,
            "messages": [{"role": "user", "content": "long [sim deltas=64 gap_ms=40]"}]}
    deltas = 0
    async with alice.http() as http:
        async with http.stream("POST", "/v1/messages", json=body) as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                if line == "event: content_block_delta":
                    deltas += 1
                    if deltas == 5:
                        break
        closed_at = time.monotonic()
    await simulator.last_outcome()
    seen = simulator.seen()[-1]
    assert seen.outcome == "cancelled"
    assert seen.ended - closed_at < 0.100, f"upstream saw the cancel {1000 * (seen.ended - closed_at):.1f} ms late"
    account = await alice.settled(1)
    row = (await gateway.gateway.store.usage("alice"))[0]
    assert row.partial and row.status == 499 and row.error_type == "client_disconnected"
    # 5 text deltas of 16 bytes were delivered: 4 tokens each by the estimate
    assert row.output_tokens >= 20 and row.input_tokens > 0
    prices = gateway.gateway.catalog.resolve("claude-sonnet-4.5").prices
    assert row.cost == usage_cost(Usage(row.input_tokens, row.cache_write_5m, row.cache_write_1h, row.cache_read,
                                        row.output_tokens), prices) > 0
    assert account.balance == before - row.cost and account.held == 0
    await ledger_balances(gateway, "alice")


async def test_disconnect_before_first_token_charges_nothing(alice, gateway, simulator):
    body = {"model": "claude-sonnet-4.5", "max_tokens": 100, "stream": True,
            "messages": [{"role": "user", "content": "[sim ttft_ms=5000]"}]}
    async with alice.http() as http:
        with trio.move_on_after(0.3):
            await http.post("/v1/messages", json=body)
    account = await alice.settled(1)
    row = (await gateway.gateway.store.usage("alice"))[0]
    assert row.status == 499 and row.cost == 0 and account.balance == 10_000_000
    await simulator.last_outcome()
    assert simulator.seen()[-1].outcome == "cancelled"


@pytest.mark.parametrize("fault,error_type", [("error_mid", "overloaded_error"), ("drop_mid", "api_error")])
async def test_mid_stream_failure_reaches_client_and_charges_delivered(app_alice, fault, error_type):
    app_gateway = app_alice.running
    body = {"model": "claude-haiku-4.5", "max_tokens": 500, "stream": True,
            "messages": [{"role": "user", "content": f"[sim deltas=10 fault={fault} fault_after=4]"}]}
    async with app_alice.http() as http:
        response = await http.post("/v1/messages", json=body)
    assert response.status_code == 200
    assert response.text.count("event: content_block_delta") == 4
    error_event = response.text.split("event: error\ndata: ")[1]
    assert json.loads(error_event)["error"]["type"] == error_type
    assert "message_stop" not in response.text
    account = await app_alice.settled(1)
    row = (await app_gateway.gateway.store.usage("alice"))[0]
    assert row.partial and row.error_type == error_type and row.output_tokens >= 16
    assert account.balance == 10_000_000 - row.cost and row.cost > 0


async def test_restart_releases_holds_left_open(tmp_path, config, nursery):
    from dataclasses import replace

    from proxy.serve import serve
    from storage import open_store

    store = await open_store(config.database_url, instance_id="a-process-that-died")  # never registered
    await store.create_user("bob")
    await store.credit("bob", 1_000_000, "credit")
    account = await store.get_account("bob")
    await store.place_hold(account.id, 400_000, "req_crashed")
    assert (await store.get_account("bob")).available == 600_000
    await store.aclose()  # the process "dies" with the hold open
    running = await nursery.start(serve, replace(config, port=0))
    account = await running.gateway.store.get_account("bob")
    assert account.held == 0 and account.balance == 1_000_000


async def test_a_stream_whose_charge_cannot_be_recorded_is_not_completed_and_charged_later(app_alice, caplog):
    """A complete stream settles before its final event: when the ledger is unavailable
    the client gets an error event instead of message_stop, the failure is logged with
    the request id, the charge is retried in the background once the ledger is back, and
    the server goes on."""
    from storage.base import StoreUnavailable

    store = app_alice.running.gateway.store
    real = store.settle
    calls = []

    async def failing(hold_id, row):
        calls.append(row.request_id)
        if len(calls) == 1:
            raise StoreUnavailable("the ledger is busy: locked", 1)
        return await real(hold_id, row)

    store.settle = failing
    client = app_alice.anthropic()
    try:
        with pytest.raises(anthropic.APIStatusError, match="could not be recorded"):
            async with client.messages.stream(model="claude-sonnet-4.5", max_tokens=50, messages=[
                    {"role": "user", "content": "one"}]) as s:
                await s.get_final_text()
        assert any("settling request" in r.getMessage() and calls[0] in r.getMessage() for r in caplog.records)
        account = await app_alice.settled(1)  # the background retry recorded it
    finally:
        store.settle = real
    row = (await store.usage("alice", 1))[0]
    assert row.request_id == calls[0] and row.partial and row.error_type == "ledger_unavailable"
    assert account.balance == 10_000_000 - row.cost and row.cost > 0
    async with client.messages.stream(model="claude-sonnet-4.5", max_tokens=50, messages=[
            {"role": "user", "content": "two"}]) as s:
        assert await s.get_final_text()
    await app_alice.settled(2)


async def test_streams_whose_prompt_beats_the_estimate_never_overdraw(gateway):
    """The issue's probe: a $0.01 account, 4 concurrent streams whose real prompt costs far
    more than the estimate. The balance cannot cover their worst case, so each one's hold
    is sized on the upstream's count of its prompt first: those the balance cannot cover
    are refused with 402 before anything is sent, and the balance never goes below zero."""
    account = await make_account(gateway, "thin", credit_micro=10_000)
    body = {"model": "claude-haiku-4.5", "max_tokens": 100, "stream": True,
            "messages": [{"role": "user", "content": "big [sim input_tokens=3000 ttft_ms=200 deltas=4]"}]}
    results = await account.post_at_once(body, 4)
    final = await account.settled(2)
    served = [r for r in results if "event: message_stop" in r.text]
    refused = [r for r in results if r.status_code == 402 and '"billing_error"' in r.text]
    # each needs 3000 input tokens (+2% and 64 of margin) at $1/M plus 100 output at $5/M ($0.0036): two fit
    assert len(served) == len(refused) == 2
    rows = await gateway.gateway.store.usage("thin", 10)
    assert final.balance == 10_000 - sum(r.cost for r in rows) >= 0
    assert len(rows) == 2 and all(r.input_tokens == 3000 for r in rows)
    assert gateway.gateway.meter.counted_holds == 4
    await ledger_balances(gateway, "thin")


async def test_a_url_document_does_not_take_a_non_streaming_charge_past_the_balance(gateway, simulator):
    """The balance cannot cover the worst case: the hold is sized on the upstream's count,
    which sees the fetched document, and the request is refused before it is sent."""
    account = await make_account(gateway, credit_micro=20_000)  # $0.02
    body = {"model": "claude-haiku-4.5", "max_tokens": 10, "messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "url", "url": "https://example.com/a-300-page.pdf"}},
        # (the simulator's stand-in for what the upstream counts for the fetched PDF)
        {"type": "text", "text": "summarise [sim input_tokens=200000]"}]}]}
    async with account.http() as http:
        answer = await http.post("/v1/messages", json=body)
    assert answer.status_code == 402 and answer.json()["error"]["type"] == "billing_error"
    assert await account.balance() == 20_000 and simulator.seen() == []
