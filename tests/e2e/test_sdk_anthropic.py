"""The official anthropic SDK against the gateway on loopback, backed by the simulator over HTTP."""

import json

import pytest

from proxy.billing import usage_cost
from proxy.money import format_usd
from proxy.protocol.usage import Usage

from tests.conftest import MESSAGE, UPSTREAM_KEY, make_account

WEATHER_TOOL = {"name": "get_weather", "description": "Weather for a place",
                "input_schema": {"type": "object", "properties": {"location": {"type": "string"},
                                                                  "days": {"type": "integer"}},
                                 "required": ["location"]}}


def expected_cost(gateway, model_id, usage) -> int:
    u = Usage().merged(usage.model_dump() if hasattr(usage, "model_dump") else usage)
    return usage_cost(u, gateway.gateway.catalog.resolve(model_id).prices)


@pytest.mark.parametrize("v1", [False, True])
async def test_create_text_charges_exactly(alice, gateway, simulator, v1):
    client = alice.anthropic(v1=v1)
    before = await alice.balance()
    raw = await client.messages.with_raw_response.create(model="claude-sonnet-4.5", max_tokens=200, messages=MESSAGE)
    message = await raw.parse()
    assert message.content[0].type == "text" and message.content[0].text.startswith("The quick brown fox")
    assert message.stop_reason == "end_turn"
    cost = expected_cost(gateway, "claude-sonnet-4.5", message.usage)
    assert cost > 0
    assert await alice.balance() == before - cost
    assert raw.headers["x-cheaplm-cost-usd"] == format_usd(cost)
    assert raw.headers["x-cheaplm-balance-usd"] == format_usd(before - cost)
    assert raw.headers["request-id"].startswith("req_")
    seen = simulator.seen()[-1]
    assert seen.api_key == UPSTREAM_KEY and seen.api_key != alice.key
    assert seen.model == "claude-sonnet-4-5-20250929"  # mapped to the upstream id
    account = await alice.account()
    assert account.held == 0


async def test_create_with_tools_returns_tool_use(alice):
    message = await alice.anthropic().messages.create(
        model="claude-haiku-4-5-20251001", max_tokens=300, messages=MESSAGE, tools=[WEATHER_TOOL],
        tool_choice={"type": "auto"})
    tool_uses = [b for b in message.content if b.type == "tool_use"]
    assert message.stop_reason == "tool_use"
    assert tool_uses[0].name == "get_weather" and tool_uses[0].input == {"location": "sim", "days": 1}


async def test_create_with_thinking_keeps_thinking_when_not_streaming(alice):
    message = await alice.anthropic().messages.create(
        model="claude-opus-4.6", max_tokens=4000, messages=MESSAGE,
        thinking={"type": "enabled", "budget_tokens": 1024})
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert message.content[0].signature


async def test_stream_text_stream_and_final_usage(alice, gateway):
    before = await alice.balance()
    async with alice.anthropic().messages.stream(model="claude-sonnet-4", max_tokens=500,
                                                 messages=[{"role": "user", "content": "hi [sim deltas=12]"}]) as s:
        pieces = [t async for t in s.text_stream]
        final = await s.get_final_message()
    assert len(pieces) == 12 and "".join(pieces) == final.content[0].text
    cost = expected_cost(gateway, "claude-sonnet-4", final.usage)
    assert (await alice.settled(1)).balance == before - cost
    rows = await gateway.gateway.store.usage("alice")
    assert rows[0].stream and rows[0].status == 200 and not rows[0].partial and rows[0].cost == cost
    assert rows[0].output_tokens == final.usage.output_tokens and rows[0].ttft_ms is not None


async def test_stream_raw_events_thinking_filtered_and_indices_contiguous(alice):
    stream = await alice.anthropic().messages.create(
        model="claude-sonnet-4.5", max_tokens=2000, stream=True, messages=MESSAGE, tools=[WEATHER_TOOL],
        thinking={"type": "enabled", "budget_tokens": 1024})
    events = [e async for e in stream]
    types = [e.type for e in events]
    assert types[0] == "message_start" and types[-1] == "message_stop"
    starts = [e for e in events if e.type == "content_block_start"]
    assert [e.index for e in starts] == list(range(len(starts)))
    assert [e.content_block.type for e in starts] == ["text", "tool_use"]
    assert not any(e.type == "content_block_delta" and e.delta.type in ("thinking_delta", "signature_delta")
                   for e in events)
    tool_json = "".join(e.delta.partial_json for e in events
                        if e.type == "content_block_delta" and e.delta.type == "input_json_delta")
    assert json.loads(tool_json) == {"location": "sim", "days": 1}


async def test_stream_thinking_passed_through_for_a_key_that_asks(gateway):
    account = await make_account(gateway, "thinker", pass_thinking=True)
    async with account.anthropic().messages.stream(
            model="claude-sonnet-4.5", max_tokens=2000, messages=MESSAGE,
            thinking={"type": "enabled", "budget_tokens": 1024}) as s:
        final = await s.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].signature.startswith("EqSig")


async def test_count_tokens_is_forwarded(alice, simulator):
    result = await alice.anthropic().messages.count_tokens(model="claude-sonnet-4.5", messages=MESSAGE)
    assert result.input_tokens > 0
    seen = simulator.seen("/v1/messages/count_tokens")
    assert seen and seen[-1].model == "claude-sonnet-4-5-20250929" and seen[-1].api_key == UPSTREAM_KEY
    v1 = await alice.anthropic(v1=True).messages.count_tokens(model="claude-sonnet-4.5", messages=MESSAGE)
    assert v1.input_tokens == result.input_tokens


async def test_models_list_and_retrieve(alice):
    client = alice.anthropic()
    ids = [m.id async for m in client.models.list()]
    assert "claude-sonnet-4.5" in ids and "claude-haiku-4.5" in ids and len(ids) == 8
    model = await client.models.retrieve("claude-sonnet-4-5-20250929")
    assert model.id == "claude-sonnet-4.5" and model.display_name == "Claude Sonnet 4.5"
    openai_ids = [m.id for m in (await alice.openai().models.list()).data]
    assert set(openai_ids) == set(ids)


async def test_headers_forwarded_and_query_ignored(alice, simulator):
    async with alice.http() as http:
        response = await http.post("/v1/messages?beta=true", headers={
            "anthropic-version": "2023-06-01", "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14",
            "accept": "application/json", "x-app": "cli"},
            json={"model": "claude-haiku-4-5-20251001", "max_tokens": 64, "stream": True, "messages": MESSAGE})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache" and response.headers["x-accel-buffering"] == "no"
    assert response.headers["request-id"].startswith("req_")
    assert "event: message_stop" in response.text and "[DONE]" not in response.text
    seen = simulator.seen()[-1]
    assert seen.anthropic_beta == "claude-code-20250219,interleaved-thinking-2025-05-14"
    assert seen.anthropic_version == "2023-06-01"


async def test_models_info_and_health(alice, gateway):
    async with alice.http() as http:
        info = (await http.get("/v1/models/info")).json()["data"]
        health = (await http.get("/health")).json()
    sonnet = next(m for m in info if m["id"] == "claude-sonnet-4.5")
    assert sonnet["pricing"]["input"] == 3.0 and sonnet["pricing"]["cache_read"] == 0.3
    assert sonnet["pricing"]["output"] == 15.0 and set(sonnet["pricing"]) >= {
        "input", "cache_write_5m", "cache_write_1h", "cache_read", "output"}
    assert sonnet["max_output_tokens"] == 8192 and sonnet["thinking"] and sonnet["vision"]
    assert "claude-sonnet-4-5" in sonnet["aliases"]
    assert health["status"] == "ok" and health["upstream"]["simulated"] is False


async def test_global_pass_thinking_switch_and_per_key_override(nursery, config):
    from dataclasses import replace

    from proxy.serve import serve

    running = await nursery.start(serve, replace(config, pass_thinking=True))
    default = await make_account(running, "default-key")
    filtered = await make_account(running, "filtered-key", pass_thinking=False)
    kinds = {}
    for account in (default, filtered):
        async with account.anthropic().messages.stream(
                model="claude-sonnet-4.5", max_tokens=2000, messages=MESSAGE,
                thinking={"type": "enabled", "budget_tokens": 1024}) as s:
            kinds[account.username] = [b.type for b in (await s.get_final_message()).content]
    assert kinds == {"default-key": ["thinking", "text"], "filtered-key": ["text"]}
