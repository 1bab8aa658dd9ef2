"""The official openai SDK against /v1/chat/completions, backed by the simulator over HTTP."""

import json
import time

import openai
import pytest

from proxy.billing import usage_cost
from proxy.protocol.usage import Usage

from tests.conftest import UPSTREAM_KEY, make_account

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                           "parameters": {"type": "object",
                                                          "properties": {"city": {"type": "string"}}}}},
         {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}]


def user(text):
    return [{"role": "user", "content": text}]


async def test_plain_chat_with_system_and_developer(alice, gateway, simulator):
    before = await alice.balance()
    raw = await alice.openai().chat.completions.with_raw_response.create(
        model="claude-sonnet-4", messages=[{"role": "system", "content": "Be brief."},
                                           {"role": "developer", "content": "No emoji."},
                                           *user("hello [sim deltas=3]")], temperature=1.5, max_tokens=100)
    completion = raw.parse()
    choice = completion.choices[0]
    assert choice.message.role == "assistant" and choice.message.content.startswith("The quick brown fox")
    assert choice.finish_reason == "stop" and completion.model == "claude-sonnet-4"
    assert completion.object == "chat.completion" and completion.id.startswith("chatcmpl-")
    seen = simulator.seen()[-1]
    # (a cache breakpoint on it: automatic prompt caching, on by default for translated requests)
    assert seen.body["system"] == [{"type": "text", "text": "Be brief.\nNo emoji.", "cache_control": {"type": "ephemeral"}}]
    assert seen.body["temperature"] == 1
    assert seen.body["max_tokens"] == 100 and seen.api_key == UPSTREAM_KEY
    usage = Usage(input_tokens=completion.usage.prompt_tokens, output_tokens=completion.usage.completion_tokens)
    cost = usage_cost(usage, gateway.gateway.catalog.resolve("claude-sonnet-4").prices)
    assert await alice.balance() == before - cost
    assert raw.headers["x-cheaplm-cost-usd"] and raw.headers["request-id"].startswith("req_")


async def test_multi_turn_and_stop(alice, simulator):
    completion = await alice.openai().chat.completions.create(
        model="claude-haiku-4.5", stop=["lazy", "  "], max_completion_tokens=300,
        messages=[*user("first"), {"role": "assistant", "content": "ok"}, *user("second")])
    assert completion.choices[0].message.content == "The quick brown fox jumps over the "
    assert completion.choices[0].finish_reason == "stop"
    body = simulator.seen()[-1].body
    assert body["stop_sequences"] == ["lazy"] and [m["role"] for m in body["messages"]] == [
        "user", "assistant", "user"]


async def test_length_finish(alice):
    completion = await alice.openai().chat.completions.create(model="claude-haiku-4.5", max_tokens=5,
                                                              messages=user("[sim deltas=10]"))
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 4


async def test_stream_with_sdk_helpers_and_include_usage(alice, gateway):
    client = alice.openai()
    async with client.chat.completions.stream(model="claude-sonnet-4.5", messages=user("[sim deltas=8]"),
                                              stream_options={"include_usage": True}) as stream:
        deltas = [e.delta async for e in stream if e.type == "content.delta" and e.delta]
        final = await stream.get_final_completion()
    assert len(deltas) == 8 and "".join(deltas) == final.choices[0].message.content
    assert final.choices[0].finish_reason == "stop"
    assert final.usage.completion_tokens == 32 and final.usage.prompt_tokens > 0
    row = (await alice.settled(1)) and (await gateway.gateway.store.usage("alice"))[0]
    assert row.endpoint == "chat" and row.stream and row.output_tokens == 32 and not row.partial


async def test_stream_without_include_usage_has_no_usage_chunk(alice):
    async with alice.http() as http:
        response = await http.post("/v1/chat/completions", json={
            "model": "claude-sonnet-4.5", "stream": True, "messages": user("[sim deltas=2]")},
            headers={"authorization": f"Bearer {alice.key}"})
    assert response.headers["content-type"].startswith("text/event-stream")
    payloads = [line[6:] for line in response.text.split("\n") if line.startswith("data: ")]
    assert payloads[-1] == "[DONE]"
    assert not any('"usage"' in p for p in payloads)
    assert sum('"role":"assistant"' in p for p in payloads) == 1


async def test_parallel_tool_calls_and_full_round_trip(alice, simulator):
    client = alice.openai()
    async with client.chat.completions.stream(model="claude-sonnet-4.5", messages=user("weather [sim tools=2]"),
                                              tools=TOOLS, tool_choice="auto") as stream:
        final = await stream.get_final_completion()
    calls = final.choices[0].message.tool_calls
    assert final.choices[0].finish_reason == "tool_calls"
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]
    assert json.loads(calls[0].function.arguments) == {"city": "sim"}
    assert json.loads(calls[1].function.arguments) == {}
    assert calls[0].id != calls[1].id
    follow_up = await client.chat.completions.create(model="claude-sonnet-4.5", tools=TOOLS, messages=[
        *user("weather"),
        {"role": "assistant", "content": None, "tool_calls": [c.model_dump(exclude={"index"}) for c in calls]},
        {"role": "tool", "tool_call_id": calls[0].id, "content": "sunny"},
        {"role": "tool", "tool_call_id": calls[1].id, "content": "noon"}])
    assert follow_up.choices[0].finish_reason == "stop" and follow_up.choices[0].message.content
    sent = simulator.seen()[-1].body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert [b["type"] for b in sent[2]["content"]] == ["tool_result", "tool_result"]


async def test_tool_choice_named_and_no_parallel(alice, simulator):
    completion = await alice.openai().chat.completions.create(
        model="claude-sonnet-4.5", messages=user("time [sim tools=3]"), tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_time"}}, parallel_tool_calls=False)
    calls = completion.choices[0].message.tool_calls
    assert [c.function.name for c in calls] == ["get_time"] and completion.choices[0].message.content
    assert simulator.seen()[-1].body["tool_choice"] == {"type": "tool", "name": "get_time",
                                                        "disable_parallel_tool_use": True}


async def test_images_data_and_http(alice, simulator):
    await alice.openai().chat.completions.create(model="claude-sonnet-4.5", messages=[{"role": "user", "content": [
        {"type": "text", "text": "compare"},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQSkZJRg=="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}])
    blocks = simulator.seen()[-1].body["messages"][0]["content"]
    assert blocks[1]["source"] == {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQSkZJRg=="}
    assert blocks[2]["source"] == {"type": "url", "url": "https://example.com/a.png"}


async def test_reasoning_effort_gives_reasoning_content(alice, simulator):
    completion = await alice.openai().chat.completions.create(
        model="claude-opus-4.6", messages=user("think"), reasoning_effort="medium", max_completion_tokens=8000)
    message = completion.choices[0].message
    assert message.reasoning_content.startswith("Considering") and message.content
    assert simulator.seen()[-1].body["thinking"] == {"type": "enabled", "budget_tokens": 4096}
    async with alice.openai().chat.completions.stream(model="claude-opus-4.6", messages=user("think"),
                                                      reasoning_effort="low") as stream:
        chunks = [e.chunk async for e in stream if e.type == "chunk"]
    reasoning = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices)
    assert reasoning.startswith("Considering the question")


async def test_json_schema_response_format_is_forwarded(alice, simulator):
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"],
              "additionalProperties": False}
    await alice.openai().chat.completions.create(model="claude-sonnet-4.5", messages=user("json"),
                                                 response_format={"type": "json_schema",
                                                                  "json_schema": {"name": "x", "schema": schema}})
    assert simulator.seen()[-1].body["output_config"] == {"format": {"type": "json_schema", "schema": schema}}


async def test_billing_identical_to_messages_endpoint(gateway):
    a = await make_account(gateway, "via-messages")
    b = await make_account(gateway, "via-chat")
    prompt = "same [sim deltas=9 input_tokens=321 cache_read=40 cache_write=11]"
    async with a.anthropic().messages.stream(model="claude-opus-4.5", max_tokens=700,
                                             messages=user(prompt)) as s:
        await s.get_final_message()
    async with b.openai().chat.completions.stream(model="claude-opus-4.5", max_tokens=700, messages=user(prompt),
                                                  stream_options={"include_usage": True}) as s:
        final = await s.get_final_completion()
    await a.settled(1)
    await b.settled(1)
    row_a = (await gateway.gateway.store.usage("via-messages"))[0]
    row_b = (await gateway.gateway.store.usage("via-chat"))[0]
    lanes = ("input_tokens", "cache_write_5m", "cache_write_1h", "cache_read", "output_tokens", "cost")
    assert [getattr(row_a, f) for f in lanes] == [getattr(row_b, f) for f in lanes]
    assert row_b.cost > 0 and await a.balance() == await b.balance()
    assert final.usage.prompt_tokens == 321 + 40 + 11 and final.usage.prompt_tokens_details.cached_tokens == 40


async def test_chat_disconnect_cancels_upstream_and_charges_partial(alice, gateway, simulator):
    body = {"model": "claude-sonnet-4.5", "stream": True, "messages": user("[sim deltas=64 gap_ms=40]")}
    async with alice.http() as http:
        async with http.stream("POST", "/v1/chat/completions", json=body) as response:
            count = 0
            async for line in response.aiter_lines():
                if '"content":"' in line and '"role"' not in line:
                    count += 1
                    if count == 4:
                        break
        closed_at = time.monotonic()
    await simulator.last_outcome()
    assert simulator.seen()[-1].outcome == "cancelled" and simulator.seen()[-1].ended - closed_at < 0.1
    await alice.settled(1)
    row = (await gateway.gateway.store.usage("alice"))[0]
    assert row.partial and row.status == 499 and row.output_tokens >= 16 and row.cost > 0


async def test_models_list_per_endpoint(gateway):

    from proxy.catalog import Catalog, apply_overrides, DEFAULT_MODELS
    from dataclasses import replace
    gateway.gateway.catalog = Catalog.build(apply_overrides(DEFAULT_MODELS, {
        "claude-opus-4": {"endpoints": ["messages"]}}))
    gateway.gateway.rules = replace(gateway.gateway.rules, catalog=gateway.gateway.catalog)
    account = await make_account(gateway, "lister")
    openai_ids = [m.id for m in (await account.openai().models.list()).data]
    anthropic_ids = [m.id async for m in account.anthropic().models.list()]
    assert "claude-opus-4" not in openai_ids and "claude-opus-4" in anthropic_ids
    with pytest.raises(openai.BadRequestError) as refused:
        await account.openai().chat.completions.create(model="claude-opus-4", messages=user("x"))
    assert refused.value.body["message"] == 'Model "claude-opus-4" is not available.'
    assert refused.value.body["type"] == "invalid_request_error"
