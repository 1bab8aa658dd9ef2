"""Tool loops with thinking through a key that filters thinking from streams, and through
the OpenAI endpoint (whose clients never send reasoning back): the simulator refuses a
final assistant turn without its signed thinking block, as Anthropic's API does, so
these pass only if the gateway puts the removed blocks back byte for byte. In-process:
the simulator's script (its rules, its signatures) at the Upstream cut. Every test runs
with the in-process memory and with the fleet's (Redis: a prefix per test); the last
one serves a loop's two turns from two gateways on one ledger."""

import json
from dataclasses import replace

import pytest

from proxy.protocol.thinking_memory import ThinkingStore
from proxy.serve import serve
from proxy.shared.thinking import SharedThinking

from tests.conftest import Account, make_account
from tests.shared.fleet_redis import REDIS_URL, delete_prefix, new_prefix, shared_redis


@pytest.fixture(params=["in-process", "redis"])
async def memory(request, app_gateway):
    """The in-process gateway's thinking memory: its own, or the fleet's in Redis."""
    if request.param == "in-process":
        yield request.param
        return
    async with shared_redis() as shared:
        app_gateway.gateway.thinking = SharedThinking(shared)
        yield request.param

TOOL = {"name": "get_weather", "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
THINKING = {"type": "enabled", "budget_tokens": 2048}
OPENAI_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": TOOL["input_schema"]}}


async def first_turn_streamed(account, **extra):
    client = account.anthropic()
    async with client.messages.stream(model="claude-sonnet-4.5", max_tokens=4096, thinking=THINKING,
                                      tools=[TOOL], messages=[{"role": "user", "content": "Weather in Paris?"}],
                                      **extra) as stream:
        message = await stream.get_final_message()
    return message


def second_turn(message) -> list[dict]:
    """What a client sends next: its own view of the assistant turn, and the tool result."""
    assistant = [block.model_dump(exclude_none=True) for block in message.content]
    tool_use = next(b for b in message.content if b.type == "tool_use")
    return [{"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": assistant},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "sunny"}]}]


@pytest.mark.parametrize("second_streamed", [True, False], ids=["then-streamed", "then-whole"])
async def test_filtered_stream_then_tool_result(app_alice, second_streamed, memory):
    alice = app_alice
    gateway = alice.running
    simulator = gateway.upstream
    message = await first_turn_streamed(alice)
    assert [b.type for b in message.content] == ["text", "tool_use"]  # the thinking block was filtered
    client = alice.anthropic()
    if second_streamed:
        async with client.messages.stream(model="claude-sonnet-4.5", max_tokens=4096, thinking=THINKING,
                                          tools=[TOOL], messages=second_turn(message)) as stream:
            answer = await stream.get_final_message()
    else:
        answer = await client.messages.create(model="claude-sonnet-4.5", max_tokens=4096, thinking=THINKING,
                                              tools=[TOOL], messages=second_turn(message))
    assert answer.stop_reason == "end_turn"
    sent = simulator.seen()[-1].body
    assert sent["thinking"] == THINKING
    restored = sent["messages"][1]["content"]
    assert restored[0]["type"] == "thinking" and restored[0]["signature"].startswith("EqSig")
    assert [b["type"] for b in restored] == ["thinking", "text", "tool_use"]


async def test_restored_blocks_never_reach_another_key(app_alice, app_gateway, memory):
    alice = app_alice
    gateway = app_gateway
    simulator = gateway.upstream
    message = await first_turn_streamed(alice)
    mallory = await make_account(gateway, "mallory")
    async with mallory.http() as http:
        response = await http.post("/v1/messages", json={
            "model": "claude-sonnet-4.5", "max_tokens": 4096, "thinking": THINKING, "tools": [TOOL],
            "messages": second_turn(message)})
    assert response.status_code == 200 and response.headers["x-cheaplm-thinking"] == "disabled"
    sent = simulator.seen()[-1].body
    assert "thinking" not in sent and all(b["type"] != "thinking" for b in sent["messages"][1]["content"])


async def test_after_a_restart_the_loop_goes_on_without_thinking_unless_redis_kept_it(app_alice, memory):
    alice = app_alice
    gateway = alice.running
    simulator = gateway.upstream
    message = await first_turn_streamed(alice)
    remembered = gateway.gateway.thinking
    # What a restarted gateway remembers: nothing of its own; the fleet's Redis still has it.
    gateway.gateway.thinking = ThinkingStore() if memory == "in-process" else SharedThinking(remembered.shared)
    async with alice.http() as http:
        response = await http.post("/v1/messages", json={
            "model": "claude-sonnet-4.5", "max_tokens": 4096, "thinking": THINKING, "tools": [TOOL],
            "stream": True, "messages": second_turn(message)})
    assert response.status_code == 200 and "event: message_stop" in response.text
    if memory == "in-process":
        assert response.headers["x-cheaplm-thinking"] == "disabled"
        assert "thinking" not in simulator.seen()[-1].body
    else:
        assert "x-cheaplm-thinking" not in response.headers
        assert simulator.seen()[-1].body["messages"][1]["content"][0]["type"] == "thinking"


async def test_a_key_that_passes_thinking_sends_the_blocks_itself(app_gateway, memory):
    gateway = app_gateway
    keeper = await make_account(gateway, "keeper", pass_thinking=True)
    message = await first_turn_streamed(keeper)
    assert message.content[0].type == "thinking"
    answer = await keeper.anthropic().messages.create(model="claude-sonnet-4.5", max_tokens=4096,
                                                      thinking=THINKING, tools=[TOOL], messages=second_turn(message))
    assert answer.stop_reason == "end_turn"
    tool_use = next(b for b in message.content if b.type == "tool_use")
    key = await gateway.gateway.keys.authenticate(keeper.key)
    assert await gateway.gateway.thinking.recall(key.id, [tool_use.id]) == {}  # nothing needed remembering


@pytest.mark.parametrize("first_streamed", [True, False], ids=["stream", "whole"])
async def openai_turn(client, messages, stream: bool):
    ask = dict(model="claude-sonnet-4.5", max_tokens=4096, reasoning_effort="low", tools=[OPENAI_TOOL],
               messages=messages)
    if not stream:
        return await client.chat.completions.create(**ask)
    async with client.chat.completions.stream(**ask) as s:
        return await s.get_final_completion()


@pytest.mark.parametrize("first_streamed", [True, False], ids=["stream", "whole"])
async def test_openai_reasoning_tool_loop(app_alice, first_streamed, memory):
    alice = app_alice
    gateway = alice.running
    simulator = gateway.upstream
    client = alice.openai()
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    completion = await openai_turn(client, messages, first_streamed)
    call = completion.choices[0].message.tool_calls[0]
    messages += [{"role": "assistant", "content": None, "tool_calls": [
                     {"id": call.id, "type": "function",
                      "function": {"name": call.function.name, "arguments": call.function.arguments}}]},
                 {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    for stream in (False, True):
        answer = await openai_turn(client, list(messages), stream)
        assert answer.choices[0].finish_reason == "stop"
        sent = simulator.seen()[-1].body
        assert sent["thinking"]["type"] == "enabled"
        assert [b["type"] for b in sent["messages"][1]["content"]] == ["thinking", "tool_use"]
    rows = await alice.running.gateway.store.usage("alice", 10)
    assert len(rows) == 3 and all(r.status == 200 for r in rows)


async def test_signatures_go_back_byte_for_byte(app_gateway, memory):
    """The block put back is exactly the one the upstream issued (compared with what a
    key that passes thinking received for the same answer)."""
    gateway = app_gateway
    simulator = gateway.upstream
    keeper = await make_account(gateway, "byte-keeper", pass_thinking=True)
    filtered = await make_account(gateway, "byte-filtered")
    kept = await first_turn_streamed(keeper)
    await first_turn_streamed(filtered)
    issued = kept.content[0].model_dump(exclude_none=True)
    message = await first_turn_streamed(filtered)
    await filtered.anthropic().messages.create(model="claude-sonnet-4.5", max_tokens=4096, thinking=THINKING,
                                               tools=[TOOL], messages=second_turn(message))
    restored = simulator.seen()[-1].body["messages"][1]["content"][0]
    assert restored["type"] == "thinking"
    assert json.dumps(restored, sort_keys=True) == json.dumps(
        {"type": "thinking", "thinking": issued["thinking"], "signature": restored["signature"]}, sort_keys=True)
    assert simulator.state.sign_thinking(restored["thinking"]) == restored["signature"]


@pytest.mark.parametrize("fleet", ["per-node memory", "shared redis"])
async def test_a_loops_next_turn_on_another_gateway_finds_the_thinking(nursery, config, simulator, fleet):
    """Claude Code's shape through a load balancer: turn 1 (streamed, thinking, tools,
    ?beta=true) reaches gateway A, which filters the thinking out; turn 2 (the tool
    result, without the thinking blocks the client never saw) reaches gateway B on the
    same ledger. With the fleet's Redis, B puts A's blocks back; with per-node memory it
    can only serve the turn without thinking."""
    prefix = new_prefix()
    if fleet == "shared redis":
        async with shared_redis(prefix):  # (skips when Redis is unreachable)
            pass
        config = replace(config, redis_url=REDIS_URL, redis_prefix=prefix)
    try:
        one = await nursery.start(serve, config)
        two = await nursery.start(serve, config)
        assert isinstance(two.gateway.thinking, SharedThinking) == (fleet == "shared redis")
        on_a = await make_account(one, "claude-code")
        on_b = Account(on_a.username, on_a.key, two)
        beta = "interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14"
        message = await first_turn_streamed(on_a, extra_headers={"anthropic-beta": beta},
                                            extra_query={"beta": "true"})
        assert [b.type for b in message.content] == ["text", "tool_use"]  # filtered on A
        async with on_b.http() as http:
            response = await http.post("/v1/messages?beta=true", headers={"anthropic-beta": beta}, json={
                "model": "claude-sonnet-4.5", "max_tokens": 32000, "thinking": THINKING, "tools": [TOOL],
                "stream": True, "messages": second_turn(message)})
        assert response.status_code == 200 and "event: message_stop" in response.text
        sent = simulator.seen()[-1].body
        if fleet == "shared redis":
            assert "x-cheaplm-thinking" not in response.headers and sent["thinking"] == THINKING
            assert [b["type"] for b in sent["messages"][1]["content"]] == ["thinking", "text", "tool_use"]
        else:
            assert response.headers["x-cheaplm-thinking"] == "disabled" and "thinking" not in sent
    finally:
        await delete_prefix(prefix)
