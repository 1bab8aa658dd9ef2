"""The official openai SDK's Responses API (responses.create / responses.stream) against
/v1/responses, backed by the simulator over HTTP: translation, metering, a multi-turn tool
loop with thinking carried statelessly in reasoning items, and the errors."""

from __future__ import annotations

import json
from dataclasses import replace

import httpx
import openai
import pytest

from proxy.billing import usage_cost
from proxy.protocol.usage import Usage
from proxy.serve import serve

from storage.records import KeyLimits
from tests.conftest import make_account

FUNCTION = {"type": "function", "name": "get_weather", "description": "Weather for a city", "strict": False,
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
EFFORT = {"effort": "medium", "summary": "auto"}


def cost_of(gateway, model: str, usage) -> int:
    details = usage.input_tokens_details
    cached = details.cached_tokens if details else 0
    return usage_cost(Usage(input_tokens=usage.input_tokens - cached, cache_read=cached,
                            output_tokens=usage.output_tokens), gateway.gateway.catalog.resolve(model).prices)


async def test_create_plain_text_is_metered_to_the_micro_dollar(alice, gateway, simulator):
    before = await alice.balance()
    raw = await alice.openai().responses.with_raw_response.create(
        model="claude-sonnet-4.5", input="hello [sim deltas=3]", instructions="Be brief.", max_output_tokens=100,
        store=False)
    response = raw.parse()
    assert response.object == "response" and response.status == "completed" and response.id.startswith("resp_")
    assert response.model == "claude-sonnet-4.5"
    assert response.output_text.startswith("The quick brown fox")
    sent = simulator.seen()[-1].body
    assert sent["max_tokens"] == 100 and sent["model"] == "claude-sonnet-4-5-20250929"
    assert sent["system"][0]["text"] == "Be brief." and sent["system"][0]["cache_control"] == {"type": "ephemeral"}
    usage = response.usage
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens and usage.output_tokens == 12
    cost = cost_of(gateway, "claude-sonnet-4.5", usage)
    assert await alice.balance() == before - cost
    assert raw.headers["x-cheaplm-cost-usd"] and raw.headers["request-id"].startswith("req_")
    row = (await gateway.gateway.store.usage("alice", 1))[0]
    assert row.endpoint == "responses" and row.cost == cost and not row.stream


async def test_stream_helper_text_and_usage(alice, gateway):
    before = await alice.balance()
    async with alice.openai().responses.stream(model="claude-haiku-4.5", input=[
            {"role": "user", "content": [{"type": "input_text", "text": "hi [sim deltas=5]"}]}]) as stream:
        deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
        final = await stream.get_final_response()
    assert len(deltas) == 5 and "".join(deltas) == final.output_text
    assert final.status == "completed" and final.usage.output_tokens == 20
    account = await alice.settled(1)
    row = (await gateway.gateway.store.usage("alice", 1))[0]
    assert row.endpoint == "responses" and row.stream and not row.partial
    assert account.balance == before - cost_of(gateway, "claude-haiku-4.5", final.usage) == before - row.cost


async def test_tool_loop_with_thinking_is_stateless_through_the_simulator(alice, simulator):
    """The simulator refuses a tool loop whose last assistant turn lacks its signed thinking
    block: this passes only if the reasoning item rebuilds it exactly."""
    client = alice.openai()
    history: list = [{"type": "message", "role": "developer", "content": [{"type": "input_text",
                                                                           "text": "You are a coding agent."}]},
                     {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Paris?"}]}]
    async with client.responses.stream(model="claude-sonnet-4.5", input=history, tools=[FUNCTION], reasoning=EFFORT,
                                       include=["reasoning.encrypted_content"], store=False) as stream:
        first = await stream.get_final_response()
    kinds = [item.type for item in first.output]
    assert kinds == ["reasoning", "message", "function_call"]
    reasoning, call = first.output[0], first.output[2]
    assert reasoning.encrypted_content.startswith("clm1.") and reasoning.summary == []  # no pass_thinking
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "sim"}
    history += [item.model_dump(exclude_none=True) for item in first.output]
    history.append({"type": "function_call_output", "call_id": call.call_id, "output": "sunny"})
    second = await client.responses.create(model="claude-sonnet-4.5", input=history, tools=[FUNCTION],
                                           reasoning=EFFORT, store=False)
    assert second.status == "completed" and second.output_text
    sent = simulator.seen()[-1].body
    assert sent["thinking"]["type"] == "enabled"
    assistant = sent["messages"][1]["content"]
    assert [b["type"] for b in assistant] == ["thinking", "text", "tool_use"]
    assert assistant[0]["signature"].startswith("EqSig") and simulator.seen()[-1].status == 200
    # a third turn with the whole history again, streamed
    history += [item.model_dump(exclude_none=True) for item in second.output]
    history.append({"role": "user", "content": "And Rome?"})
    async with client.responses.stream(model="claude-sonnet-4.5", input=history, tools=[FUNCTION],
                                       reasoning=EFFORT) as stream:
        third = await stream.get_final_response()
    assert [item.type for item in third.output] == ["reasoning", "message", "function_call"]


async def test_forged_reasoning_is_dropped_never_sent(alice, simulator):
    client = alice.openai()
    first = await client.responses.create(model="claude-sonnet-4.5", input="Paris?", tools=[FUNCTION],
                                          reasoning=EFFORT)
    items = [item.model_dump(exclude_none=True) for item in first.output]
    sealed = items[0]["encrypted_content"]
    items[0]["encrypted_content"] = sealed[:-6] + ("AAAAAA" if not sealed.endswith("AAAAAA") else "BBBBBB")
    call = first.output[2]
    raw = await client.responses.with_raw_response.create(
        model="claude-sonnet-4.5", tools=[FUNCTION], reasoning=EFFORT,
        input=[{"role": "user", "content": "Paris?"}, *items,
               {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}])
    assert raw.headers["x-cheaplm-reasoning-dropped"] == "1"
    sent = simulator.seen()[-1].body
    # the forged block never went upstream: the gateway's own memory of that turn put the real one back
    assert sent["messages"][1]["content"][0]["signature"].startswith("EqSig")
    assert raw.parse().status == "completed"


async def test_pass_thinking_key_sees_the_summary(gateway):
    account = await make_account(gateway, "thinker", pass_thinking=True)
    async with account.openai().responses.stream(model="claude-sonnet-4.5", input="think", reasoning=EFFORT) as stream:
        events = [e async for e in stream]
        final = await stream.get_final_response()
    summary = "".join(e.delta for e in events if e.type == "response.reasoning_summary_text.delta")
    assert summary.startswith("Considering the question") and final.output[0].summary[0].text == summary


async def test_namespace_and_custom_tools_named_back(alice, simulator):
    tools = [{"type": "namespace", "name": "crm", "description": "Customer records",
              "tools": [{"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {
                  "id": {"type": "integer"}}}}]},
             {"type": "custom", "name": "apply_patch", "description": "Edit files",
              "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}},
             {"type": "web_search"}]
    raw = await alice.openai().responses.with_raw_response.create(
        model="claude-sonnet-4.5", input="go [sim tools=2]", tools=tools)
    response = raw.parse()
    assert raw.headers["x-cheaplm-dropped-tools"] == "web_search"
    calls = [item for item in response.output if item.type in ("function_call", "custom_tool_call")]
    assert [(c.type, c.name, getattr(c, "namespace", None)) for c in calls] == [
        ("function_call", "lookup", "crm"), ("custom_tool_call", "apply_patch", None)]
    assert json.loads(calls[0].arguments) == {"id": 1} and calls[1].input == "sim"
    sent = simulator.seen()[-1].body
    assert [t["name"] for t in sent["tools"]] == ["crm__lookup", "apply_patch"]
    # the next turn names them as the client does, and the upstream sees the flat names again
    follow = await alice.openai().responses.create(model="claude-sonnet-4.5", tools=tools, input=[
        {"role": "user", "content": "go"}, *[c.model_dump(exclude_none=True) for c in calls],
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": [{"type": "input_text", "text": "ok"}]},
        {"type": "custom_tool_call_output", "call_id": calls[1].call_id, "output": "patched"}])
    assert follow.status == "completed"
    blocks = simulator.seen()[-1].body["messages"][1]["content"]
    assert [(b["name"], b["input"]) for b in blocks] == [("crm__lookup", {"id": 1}), ("apply_patch", {"input": "sim"})]


async def test_errors_before_the_stream_are_openai_shaped(alice, gateway):
    client = alice.openai()
    with pytest.raises(openai.BadRequestError) as bad:
        await client.responses.create(model="claude-sonnet-4.5", input="hi", previous_response_id="resp_123")
    assert "previous_response_id" in bad.value.message and bad.value.body["param"] == "previous_response_id"
    with pytest.raises(openai.BadRequestError):
        await client.responses.create(model="gpt-9", input="hi")
    poor = await make_account(gateway, "poor", credit_micro=10)
    with pytest.raises(openai.APIStatusError) as broke:
        await poor.openai().responses.create(model="claude-sonnet-4.5", input="hi", stream=True)
    assert broke.value.status_code == 402 and broke.value.body["code"] == "insufficient_quota"
    limited = await make_account(gateway, "limited", limits=KeyLimits(rpm=1))
    await limited.openai().responses.create(model="claude-haiku-4.5", input="hi")
    with pytest.raises(openai.RateLimitError) as limit:
        await limited.openai().responses.create(model="claude-haiku-4.5", input="hi")
    assert limit.value.body["code"] == "rate_limit_exceeded" and "try again in" in limit.value.body["message"]


def failed_event(text: str) -> dict:
    events = [json.loads(line[6:]) for line in text.split("\n") if line.startswith("data: ")]
    assert events[-1]["type"] == "response.failed"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events[-1]["response"]


async def test_errors_inside_the_stream_are_response_failed(alice, gateway, simulator):
    async with alice.http() as http:
        response = await http.post("/v1/responses", json={
            "model": "claude-sonnet-4.5", "stream": True, "input": "go [sim deltas=8 fault=error_mid fault_after=3]"},
            headers={"authorization": f"Bearer {alice.key}"})
    failed = failed_event(response.text)
    assert failed["status"] == "failed" and failed["error"]["code"] == "server_is_overloaded"
    account = await alice.settled(1)
    row = (await gateway.gateway.store.usage("alice", 1))[0]
    assert row.partial and row.output_tokens >= 3 and row.endpoint == "responses" and row.status == 200
    # billed as on the other endpoints: what was delivered, every lane at its price, to the micro-dollar
    delivered = Usage(input_tokens=row.input_tokens, output_tokens=row.output_tokens)
    assert row.cost == usage_cost(delivered, gateway.gateway.catalog.resolve("claude-sonnet-4.5").prices) > 0
    assert account.balance == 10_000_000 - row.cost


async def test_a_prompt_larger_than_the_balance_is_refused_before_the_stream_with_insufficient_quota(gateway,
                                                                                                   simulator):
    """Near an empty balance the hold is sized on the upstream's count of the prompt
    before anything is sent: a prompt the balance cannot cover is a 402 before the
    stream, in the OpenAI shape Codex reads (insufficient_quota), and costs nothing."""
    account = await make_account(gateway, "thin", credit_micro=2_000)
    async with account.http() as http:
        response = await http.post("/v1/responses", json={
            "model": "claude-haiku-4.5", "stream": True, "max_output_tokens": 16,
            "input": "hi [sim input_tokens=900000]"}, headers={"authorization": f"Bearer {account.key}"})
    assert response.status_code == 402
    assert response.json()["error"]["code"] == "insufficient_quota"
    assert (await gateway.gateway.store.get_account("thin")).balance == 2_000  # nothing charged


async def test_spend_cap_says_when_to_retry(gateway, simulator):
    """A key's spend cap that cannot cover the counted prompt: a 429 before the stream,
    saying when to try again (Codex waits that long)."""
    account = await make_account(gateway, "capped", limits=KeyLimits(daily_usd=2_000))
    async with account.http() as http:
        response = await http.post("/v1/responses", json={
            "model": "claude-haiku-4.5", "stream": True, "max_output_tokens": 16,
            "input": "hi [sim input_tokens=5000]"}, headers={"authorization": f"Bearer {account.key}"})
    assert response.status_code == 429 and response.headers["retry-after"]
    error = response.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and "try again in" in error["message"].lower()


@pytest.mark.parametrize("path", ["/responses", "/v1/v1/responses"])
async def test_alias_paths_and_metrics_label(alice, gateway, path):
    async with alice.http() as http:
        response = await http.post(path, json={"model": "claude-haiku-4.5", "input": "hi"},
                                   headers={"authorization": f"Bearer {alice.key}"})
        assert response.status_code == 200 and response.json()["object"] == "response"
        metrics = await http.get("/metrics")
    assert any(line.startswith("cheaplm_requests_total{") and 'endpoint="responses"' in line
               and 'status="200"' in line for line in metrics.text.splitlines())


async def test_model_is_echoed_on_every_endpoint(alice, simulator):
    message = await alice.anthropic().messages.create(model="claude-sonnet-4-5", max_tokens=20,
                                                      messages=[{"role": "user", "content": "hi"}])
    assert message.model == "claude-sonnet-4-5" and simulator.seen()[-1].model == "claude-sonnet-4-5-20250929"
    async with alice.anthropic().messages.stream(model="claude-sonnet-4.5", max_tokens=20,
                                                 messages=[{"role": "user", "content": "hi"}]) as stream:
        streamed = await stream.get_final_message()
    assert streamed.model == "claude-sonnet-4.5"
    completion = await alice.openai().chat.completions.create(model="claude-sonnet-4-5",
                                                              messages=[{"role": "user", "content": "hi"}])
    assert completion.model == "claude-sonnet-4-5"


async def test_auto_cache_for_messages_is_a_setting(nursery, config, simulator):
    running = await nursery.start(serve, replace(config, auto_cache_messages=True))
    account = await make_account(running, "cacher")
    await account.anthropic().messages.create(model="claude-haiku-4.5", max_tokens=10, system="Be brief.",
                                              messages=[{"role": "user", "content": "hi"}])
    sent = simulator.seen()[-1].body
    assert sent["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert sent["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral"}
    async with httpx.AsyncClient(base_url=running.url) as http:
        marked = {"model": "claude-haiku-4.5", "max_tokens": 10, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}], "system": "Be brief."}
        await http.post("/v1/messages", json=marked, headers={"x-api-key": account.key})
    assert simulator.seen()[-1].body["system"] == "Be brief."  # the client's own plan is left alone
