"""The simulated upstream is as strict as Anthropic's Messages API about extended thinking and request
shapes: driven over real HTTP (the ``simulator`` fixture) and, where pure, through sim_script."""

from __future__ import annotations

import base64
import copy
import json
from functools import partial

import anthropic
import httpx
import pytest

from proxy.protocol.sse import SSEDecoder, parse_event
from proxy.simulator.rules import LOOP_MESSAGE, InvalidRequest, check_request
from proxy.simulator.script import Knobs, message_body, plan
from proxy.simulator.signatures import redacted_data, thinking_signature, valid_redacted, valid_signature
from proxy.simulator.server import SimulatorState, serve_simulator

from tests.conftest import LOOPBACK_TLS, UPSTREAM_KEY

MODEL = "claude-sonnet-4-6"
WEATHER = {"name": "get_weather", "description": "Weather of a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
THINK = {"type": "enabled", "budget_tokens": 1024}
DOCS = "Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
CONSIDERATIONS = DOCS + "#important-considerations-when-using-extended-thinking"
TEMPERATURE = f"`temperature` may only be set to 1 when thinking is enabled. {CONSIDERATIONS}"
BUDGET_ABOVE_MAX = ("`max_tokens` must be greater than `thinking.budget_tokens`. "
                    f"{DOCS}#max-tokens-and-context-window-size")
FORCED = "Thinking may not be enabled when tool_choice forces tool use."


def loop_error(index: int, found: str) -> str:
    return (f"messages.{index}.content.0.type: Expected `thinking` or `redacted_thinking`, but found `{found}`. "
            "When `thinking` is enabled, a final `assistant` message must start with a thinking block (preceeding "
            "the lastmost set of `tool_use` and `tool_result` blocks). We recommend you include thinking blocks "
            "from previous turns. To avoid this requirement, disable `thinking`. Please consult our documentation "
            "at https://docs.claude.com/en/docs/build-with-claude/extended-thinking")


DROP = object()  # a body() value that removes the field


def body(**changes) -> dict:
    out = {"model": MODEL, "max_tokens": 2048, "messages": [{"role": "user", "content": "What is the weather?"}]}
    out.update(changes)
    return {k: v for k, v in out.items() if v is not DROP}


def http(sim, **headers) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=sim.url, timeout=10, verify=LOOPBACK_TLS, headers={
        "x-api-key": UPSTREAM_KEY, "anthropic-version": "2023-06-01", **headers})


async def post(sim, payload: dict, path: str = "/v1/messages", **headers) -> httpx.Response:
    async with http(sim, **headers) as client:
        return await client.post(path, json=payload)


def assert_refused(response: httpx.Response, message: str) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["type"] == "error"
    assert response.json()["error"] == {"type": "invalid_request_error", "message": message}


def reassemble(sse: bytes) -> dict:
    """The message a client rebuilds from the stream's events (the way the SDKs accumulate it)."""
    decoder, message, partial_json = SSEDecoder(), None, {}
    for raw in decoder.feed(sse):
        event = parse_event(raw)
        data = json.loads(event.data)
        assert data["type"] == event.name
        if event.name == "message_start":
            message = data["message"]
        elif event.name == "content_block_start":
            assert data["index"] == len(message["content"])
            message["content"].append(copy.deepcopy(data["content_block"]))
        elif event.name == "content_block_delta":
            block, delta = message["content"][data["index"]], data["delta"]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            elif delta["type"] == "thinking_delta":
                block["thinking"] += delta["thinking"]
            elif delta["type"] == "signature_delta":
                block["signature"] = delta["signature"]
            elif delta["type"] == "input_json_delta":
                partial_json[data["index"]] = partial_json.get(data["index"], "") + delta["partial_json"]
            else:
                raise AssertionError(f"unexpected delta {delta}")
        elif event.name == "content_block_stop":
            block = message["content"][data["index"]]
            if block["type"] == "tool_use":
                block["input"] = json.loads(partial_json.get(data["index"]) or "{}")
        elif event.name == "message_delta":
            message.update(data["delta"])
    return message


async def first_turn(sim, stream: bool, prompt: str = "What is the weather in Paris?", **changes) -> dict:
    payload = body(**{"messages": [{"role": "user", "content": prompt}], "tools": [WEATHER], "thinking": THINK,
                      "stream": stream, **changes})
    response = await post(sim, payload)
    assert response.status_code == 200, response.text
    return reassemble(response.content) if stream else response.json()


def second_turn(answer_content: list, prompt: str = "What is the weather in Paris?", **changes) -> dict:
    tool_uses = [b for b in answer_content if b["type"] == "tool_use"]
    return body(**{"tools": [WEATHER], "thinking": THINK, "messages": [
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": answer_content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": b["id"], "content": "sunny"}
                                     for b in tool_uses]}], **changes})


# --- Signatures (pure) --------------------------------------------------------------------------------------

def test_thinking_signature_is_deterministic_opaque_and_bound_to_secret_and_text():
    one = thinking_signature(b"secret-1", "Considering it.")
    assert one == thinking_signature(b"secret-1", "Considering it.")
    assert one != thinking_signature(b"secret-2", "Considering it.")
    assert one != thinking_signature(b"secret-1", "Considering it!")
    assert one.startswith("EqSig") and len(one) > 200
    assert base64.b64encode(base64.b64decode(one, validate=True)).decode() == one
    assert valid_signature(b"secret-1", "Considering it.", one)
    assert not valid_signature(b"secret-2", "Considering it.", one)
    assert not valid_signature(b"secret-1", "Considering it. ", one)
    assert not valid_signature(b"secret-1", "Considering it.", one[:-1])
    assert not valid_signature(b"secret-1", "Considering it.", "")
    assert not valid_signature(b"secret-1", "Considering it.", None)


def test_redacted_data_verifies_only_untouched_and_under_its_secret():
    data = redacted_data(b"secret-1", "hidden reasoning")
    assert data == redacted_data(b"secret-1", "hidden reasoning") and len(data) > 80
    assert "hidden" not in base64.b64decode(data).decode("latin-1")
    assert valid_redacted(b"secret-1", data)
    assert not valid_redacted(b"secret-2", data)
    raw = bytearray(base64.b64decode(data))
    for position in (0, 10, len(raw) // 2, len(raw) - 1):
        tampered = bytearray(raw)
        tampered[position] ^= 1
        assert not valid_redacted(b"secret-1", base64.b64encode(bytes(tampered)).decode())
    assert not valid_redacted(b"secret-1", data[:-4])
    assert not valid_redacted(b"secret-1", data + "\n")
    assert not valid_redacted(b"secret-1", "not base64 at all!")
    assert not valid_redacted(b"secret-1", 42)


def test_plan_signs_thinking_after_trimming_it_to_max_tokens():
    payload = body(max_tokens=15, messages=[{"role": "user", "content": "hi [sim mode=thinking]"}])
    script = plan(payload, Knobs(), 1, b"k")
    thinking = message_body(script)["content"][0]
    assert script.stop_reason == "max_tokens" and thinking["type"] == "thinking"
    assert thinking["thinking"] == "Considering the question step by step. "  # one piece of three kept
    assert thinking["signature"] == thinking_signature(b"k", thinking["thinking"])


def test_plan_puts_redacted_thinking_first_and_thinking_before_text_and_tools():
    script = plan(body(thinking=THINK, tools=[WEATHER], messages=[
        {"role": "user", "content": "weather [sim redacted=2]"}]), Knobs(), 7, b"k")
    content = message_body(script)["content"]
    assert [b["type"] for b in content] == ["redacted_thinking", "redacted_thinking", "thinking", "text", "tool_use"]
    assert content[0]["data"] != content[1]["data"] and all(valid_redacted(b"k", b["data"]) for b in content[:2])
    plain = plan(body(tools=[WEATHER], messages=[{"role": "user", "content": "weather [sim redacted=2]"}]),
                 Knobs(), 8, b"k")
    assert [b.kind for b in plain.blocks] == ["text", "tool_use"]  # redacted only in an answer that thinks


def test_check_request_is_pure_and_raises_invalid_request():
    check_request(body(thinking=THINK), b"k")
    with pytest.raises(InvalidRequest, match="greater than or equal to 1024"):
        check_request(body(thinking={"type": "enabled", "budget_tokens": 1000}), b"k")
    # count_tokens takes no max_tokens and no sampling parameters
    check_request(body(max_tokens=DROP, thinking=THINK), b"k", count_tokens=True)
    assert LOOP_MESSAGE.format(index=3, found="tool_use") == loop_error(3, "tool_use")


# --- Rules over HTTP: refused ---------------------------------------------------------------------------------

REFUSED = {
    "thinking-not-object": (dict(thinking="enabled"),
                            "thinking: Input should be a valid dictionary or object to extract fields from"),
    "thinking-no-type": (dict(thinking={"budget_tokens": 2000}),
                         "thinking: Unable to extract tag using discriminator 'type'"),
    "thinking-unknown-type": (dict(thinking={"type": "on", "budget_tokens": 2000}),
                              "thinking: Input tag 'on' found using 'type' does not match any of the expected tags: "
                              "'enabled', 'disabled', 'adaptive'"),
    "budget-missing": (dict(thinking={"type": "enabled"}), "thinking.enabled.budget_tokens: Field required"),
    "budget-not-int": (dict(thinking={"type": "enabled", "budget_tokens": "2000"}),
                       "thinking.enabled.budget_tokens: Input should be a valid integer"),
    "budget-below-1024": (dict(thinking={"type": "enabled", "budget_tokens": 1023}),
                          "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"),
    "budget-equals-max": (dict(max_tokens=2048, thinking={"type": "enabled", "budget_tokens": 2048}),
                          BUDGET_ABOVE_MAX),
    "budget-above-max": (dict(max_tokens=1500, thinking={"type": "enabled", "budget_tokens": 4096}),
                         BUDGET_ABOVE_MAX),
    "temperature-enabled": (dict(thinking=THINK, temperature=0.7), TEMPERATURE),
    "temperature-zero": (dict(thinking=THINK, temperature=0), TEMPERATURE),
    "temperature-adaptive": (dict(thinking={"type": "adaptive"}, temperature=0.5), TEMPERATURE),
    "top-k": (dict(thinking=THINK, top_k=40), f"`top_k` must be unset when thinking is enabled. {CONSIDERATIONS}"),
    "top-k-adaptive": (dict(thinking={"type": "adaptive"}, top_k=1),
                       f"`top_k` must be unset when thinking is enabled. {CONSIDERATIONS}"),
    "top-p-low": (dict(thinking=THINK, top_p=0.9),
                  f"`top_p` must be greater than or equal to 0.95 or unset when thinking is enabled. {CONSIDERATIONS}"),
    "tool-choice-any": (dict(thinking=THINK, tools=[WEATHER], tool_choice={"type": "any"}), FORCED),
    "tool-choice-tool": (dict(thinking=THINK, tools=[WEATHER], tool_choice={"type": "tool", "name": "get_weather"}),
                         FORCED),
    "max-tokens-missing": (dict(max_tokens=DROP), "max_tokens: Field required"),
    "max-tokens-zero": (dict(max_tokens=0), "max_tokens: Input should be greater than or equal to 1"),
    "max-tokens-negative": (dict(max_tokens=-5), "max_tokens: Input should be greater than or equal to 1"),
    "max-tokens-string": (dict(max_tokens="1000"), "max_tokens: Input should be a valid integer"),
    "max-tokens-float": (dict(max_tokens=100.5), "max_tokens: Input should be a valid integer"),
    "max-tokens-bool": (dict(max_tokens=True), "max_tokens: Input should be a valid integer"),
    "max-tokens-above-ceiling": (dict(max_tokens=128_001),
                                 f"max_tokens: 128001 > 128000, which is the maximum allowed number of output tokens "
                                 f"for {MODEL}"),
    "messages-missing": (dict(messages=DROP), "messages: Field required"),
    "messages-empty": (dict(messages=[]), "messages: at least one message is required"),
    "messages-not-list": (dict(messages="hello"), "messages: Input should be a valid list"),
    "role-tool": (dict(messages=[{"role": "tool", "content": "r"}]),
                  "messages.0.role: Input should be 'user' or 'assistant'"),
    "content-missing": (dict(messages=[{"role": "user"}]), "messages.0.content: Field required"),
    "content-empty": (dict(messages=[{"role": "user", "content": ""}]),
                      "messages.0: all messages must have non-empty content except for the optional final assistant "
                      "message"),
    "text-block-empty": (dict(messages=[{"role": "user", "content": [{"type": "text", "text": ""}]}]),
                         "messages: text content blocks must be non-empty"),
    "text-block-blank": (dict(messages=[{"role": "user", "content": [{"type": "text", "text": " \n"}]}]),
                         "messages: text content blocks must contain non-whitespace text"),
    "tool-use-unanswered": (dict(tools=[WEATHER], messages=[
        {"role": "user", "content": "weather"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}]},
        {"role": "user", "content": "and?"}]),
        "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_1. Each "
        "`tool_use` block must have a corresponding `tool_result` block in the next message."),
    "tool-result-unasked": (dict(tools=[WEATHER], messages=[
        {"role": "user", "content": "weather"},
        {"role": "assistant", "content": "Let me see."},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "sunny"}]}]),
        "messages.2.content.0: unexpected `tool_use_id` found in `tool_result` blocks: toolu_9. Each `tool_result` "
        "block must have a corresponding `tool_use` block in the previous message."),
}


@pytest.mark.parametrize("changes, message", REFUSED.values(), ids=REFUSED.keys())
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_refused_with_anthropics_error(simulator, changes, message, stream):
    response = await post(simulator, body(stream=stream, **changes))
    assert_refused(response, message)
    assert response.headers["content-type"] == "application/json"
    seen = simulator.seen()[-1]
    assert (seen.status, seen.outcome) == (400, "rejected")


# --- Rules over HTTP: accepted --------------------------------------------------------------------------------

CLAUDE_CODE = dict(
    max_tokens=32000, stream=True, thinking={"type": "enabled", "budget_tokens": 31999},
    system=[{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "Project context."}],
    metadata={"user_id": "user_abc_account_x_session_y"}, service_tier="auto",
    context_management={"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
    output_config={"effort": "high"}, tools=[WEATHER], tool_choice={"type": "auto"},
    messages=[{"role": "user", "content": [
        {"type": "text", "text": "<system-reminder>ctx</system-reminder>", "cache_control": {"type": "ephemeral"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "notes"}},
        {"type": "text", "text": "Fix the bug."}]},
        {"role": "assistant", "content": "Looking."},
        {"role": "system", "content": "The user switched to plan mode."},
        {"role": "user", "content": "Go on."}])

ACCEPTED = {
    "no-thinking": {},
    "thinking-null": dict(thinking=None),
    "disabled": dict(thinking={"type": "disabled"}),
    "adaptive": dict(thinking={"type": "adaptive"}),
    "budget-just-below-max": dict(max_tokens=1025, thinking={"type": "enabled", "budget_tokens": 1024}),
    "temperature-1-with-thinking": dict(thinking=THINK, temperature=1),
    "temperature-1.0-adaptive": dict(thinking={"type": "adaptive"}, temperature=1.0),
    "top-p-0.95": dict(thinking=THINK, top_p=0.95),
    "sampling-without-thinking": dict(temperature=0.2, top_k=5, top_p=0.5),
    "sampling-with-thinking-disabled": dict(thinking={"type": "disabled"}, temperature=0, top_k=3),
    "tool-choice-auto": dict(thinking=THINK, tools=[WEATHER], tool_choice={"type": "auto"}),
    "tool-choice-none": dict(thinking=THINK, tools=[WEATHER], tool_choice={"type": "none"}),
    # Anthropic's docs: forced tool use errors with manual ("enabled") thinking; adaptive thinking supports it.
    "tool-choice-any-adaptive": dict(thinking={"type": "adaptive"}, tools=[WEATHER], tool_choice={"type": "any"}),
    "tool-choice-forced-without-thinking": dict(tools=[WEATHER], tool_choice={"type": "tool", "name": "get_weather"}),
    "max-tokens-ceiling": dict(max_tokens=128_000),
    "claude-code-shape": CLAUDE_CODE,
    "final-assistant-prefill-empty": dict(messages=[{"role": "user", "content": "hi"},
                                                    {"role": "assistant", "content": ""}]),
    "unknown-block-type-passes": dict(messages=[{"role": "user", "content": [
        {"type": "search_result", "source": "s", "title": "t", "content": [{"type": "text", "text": "x"}]},
        {"type": "text", "text": "hi"}]}]),
}


@pytest.mark.parametrize("changes", ACCEPTED.values(), ids=ACCEPTED.keys())
async def test_accepted(simulator, changes):
    response = await post(simulator, body(**changes))
    assert response.status_code == 200, response.text


async def test_interleaved_thinking_beta_lifts_budget_below_max_tokens(simulator):
    payload = body(max_tokens=2000, thinking={"type": "enabled", "budget_tokens": 8000})
    assert_refused(await post(simulator, payload), BUDGET_ABOVE_MAX)
    beta = "claude-code-20250219,interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14"
    response = await post(simulator, payload, **{"anthropic-beta": beta})
    assert response.status_code == 200, response.text
    # the same body again, cached by the simulator, is still refused without the header
    assert_refused(await post(simulator, payload), BUDGET_ABOVE_MAX)


async def test_directive_with_unknown_fault_is_a_400_recorded_as_rejected(simulator):
    response = await post(simulator, body(messages=[{"role": "user", "content": "hi [sim fault=explode]"}]))
    assert response.status_code == 400 and "unknown fault" in response.json()["error"]["message"]
    assert simulator.seen()[-1].outcome == "rejected"


# --- The answer's shape ---------------------------------------------------------------------------------------

async def test_stream_thinking_first_then_text_then_tool_use_with_signature_delta(simulator):
    response = await post(simulator, body(thinking=THINK, tools=[WEATHER], stream=True))
    events = [parse_event(raw) for raw in SSEDecoder().feed(response.content)]
    data = [json.loads(e.data) for e in events]
    starts = [d["content_block"]["type"] for d in data if d["type"] == "content_block_start"]
    assert starts == ["thinking", "text", "tool_use"]
    thinking_events = [d for d in data if d.get("index") == 0]
    kinds = [d["type"] if d["type"] != "content_block_delta" else d["delta"]["type"] for d in thinking_events]
    assert kinds == ["content_block_start", "thinking_delta", "thinking_delta", "thinking_delta", "signature_delta",
                     "content_block_stop"]
    message = reassemble(response.content)
    assert message["stop_reason"] == "tool_use"
    thinking = message["content"][0]
    assert thinking["signature"] == simulator.state.sign_thinking(thinking["thinking"])
    assert message["content"][2]["input"] == {"city": "sim"}


async def test_redacted_thinking_arrives_whole_in_its_start_event(simulator):
    response = await post(simulator, body(thinking=THINK, stream=True, messages=[
        {"role": "user", "content": "hi [sim redacted=1]"}]))
    data = [json.loads(parse_event(raw).data) for raw in SSEDecoder().feed(response.content)]
    first = [d for d in data if d.get("index") == 0]
    assert [d["type"] for d in first] == ["content_block_start", "content_block_stop"]
    block = first[0]["content_block"]
    assert set(block) == {"type", "data"} and block["type"] == "redacted_thinking"
    assert valid_redacted(simulator.state.secret, block["data"])
    whole = await post(simulator, body(thinking=THINK, messages=[{"role": "user", "content": "hi [sim redacted=1]"}]))
    assert [b["type"] for b in whole.json()["content"]] == ["redacted_thinking", "thinking", "text"]


# --- Tool loops -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("first_stream", [True, False], ids=["turn1-stream", "turn1-whole"])
@pytest.mark.parametrize("second_stream", [True, False], ids=["turn2-stream", "turn2-whole"])
async def test_tool_loop_with_thinking_sent_back_exactly_is_accepted(simulator, first_stream, second_stream):
    answer = await first_turn(simulator, first_stream)
    assert [b["type"] for b in answer["content"]] == ["thinking", "text", "tool_use"]
    assert answer["stop_reason"] == "tool_use"
    response = await post(simulator, second_turn(answer["content"], stream=second_stream))
    assert response.status_code == 200, response.text
    final = reassemble(response.content) if second_stream else response.json()
    assert final["stop_reason"] == "end_turn"
    assert [b["type"] for b in final["content"]] == ["thinking", "text"]


async def test_tool_loop_through_the_anthropic_sdk_is_accepted(simulator):
    client = anthropic.AsyncAnthropic(api_key=UPSTREAM_KEY, base_url=simulator.url, max_retries=0,
                                    http_client=anthropic.DefaultAsyncHttpxClient(verify=LOOPBACK_TLS))
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    async with client.messages.stream(model=MODEL, max_tokens=2048, thinking=THINK, tools=[WEATHER],
                                      messages=messages) as stream:
        first = await stream.get_final_message()
    assert [b.type for b in first.content] == ["thinking", "text", "tool_use"]
    messages += [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": first.content[2].id,
                                               "content": "sunny"}]}]
    second = await client.messages.create(model=MODEL, max_tokens=2048, thinking=THINK, tools=[WEATHER],
                                          messages=messages)
    assert second.stop_reason == "end_turn"


async def test_tool_loop_redacted_thinking_round_trip(simulator):
    answer = await first_turn(simulator, True, prompt="Weather? [sim redacted=1]")
    assert [b["type"] for b in answer["content"]] == ["redacted_thinking", "thinking", "text", "tool_use"]
    ok = await post(simulator, second_turn(answer["content"], prompt="Weather? [sim redacted=1]"))
    assert ok.status_code == 200, ok.text

    tampered = copy.deepcopy(answer["content"])
    raw = bytearray(base64.b64decode(tampered[0]["data"]))
    raw[20] ^= 0x40
    tampered[0]["data"] = base64.b64encode(bytes(raw)).decode()
    assert_refused(await post(simulator, second_turn(tampered, prompt="Weather? [sim redacted=1]")),
                   "messages.1.content.0: Invalid `data` in `redacted_thinking` block")
    foreign = copy.deepcopy(answer["content"])
    foreign[0]["data"] = redacted_data(b"another upstream", "hidden")
    assert_refused(await post(simulator, second_turn(foreign, prompt="Weather? [sim redacted=1]")),
                   "messages.1.content.0: Invalid `data` in `redacted_thinking` block")
    missing = copy.deepcopy(answer["content"])
    del missing[0]["data"]
    assert_refused(await post(simulator, second_turn(missing, prompt="Weather? [sim redacted=1]")),
                   "messages.1.content.0.redacted_thinking.data: Field required")


async def test_assistant_turn_starting_with_redacted_thinking_satisfies_the_loop_rule(simulator):
    content = [{"type": "redacted_thinking", "data": simulator.state.redacted_data("why")},
               {"type": "tool_use", "id": "toolu_r", "name": "get_weather", "input": {"city": "Oslo"}}]
    response = await post(simulator, second_turn(content))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("stream", [True, False], ids=["turn1-stream", "turn1-whole"])
async def test_tampered_thinking_text_or_signature_is_refused(simulator, stream):
    answer = await first_turn(simulator, stream)
    invalid = "messages.1.content.0: Invalid `signature` in `thinking` block"
    edits = {
        "text": lambda b: b.update(thinking=b["thinking"] + " "),
        "text-trimmed": lambda b: b.update(thinking=b["thinking"].strip()),
        "signature-char": lambda b: b.update(signature=b["signature"][:-5] + ("A" if b["signature"][-5] != "A"
                                                                              else "B") + b["signature"][-4:]),
        "signature-empty": lambda b: b.update(signature=""),
        "signature-other-secret": lambda b: b.update(signature=thinking_signature(b"other", b["thinking"])),
    }
    for name, edit in edits.items():
        content = copy.deepcopy(answer["content"])
        edit(content[0])
        assert_refused(await post(simulator, second_turn(content)), invalid)
    content = copy.deepcopy(answer["content"])
    del content[0]["signature"]
    assert_refused(await post(simulator, second_turn(content)),
                   "messages.1.content.0.thinking.signature: Field required")


@pytest.mark.parametrize("stream", [True, False], ids=["turn1-stream", "turn1-whole"])
async def test_tool_loop_without_the_thinking_block_is_refused_with_anthropics_words(simulator, stream):
    answer = await first_turn(simulator, stream)
    without_thinking = answer["content"][1:]          # text, tool_use: what a thinking-stripping gateway sends
    assert_refused(await post(simulator, second_turn(without_thinking)), loop_error(1, "text"))
    only_tool = answer["content"][2:]
    assert_refused(await post(simulator, second_turn(only_tool)), loop_error(1, "tool_use"))
    seen = simulator.seen()[-1]
    assert (seen.status, seen.outcome) == (400, "rejected")


async def test_loop_rule_names_the_index_of_the_last_assistant_message(simulator):
    answer = await first_turn(simulator, False)
    payload = second_turn(answer["content"][2:])
    payload["messages"][:0] = [{"role": "user", "content": "Earlier question"},
                               {"role": "assistant", "content": "Earlier answer"},
                               {"role": "system", "content": "A mid-conversation system message."}]
    assert_refused(await post(simulator, payload), loop_error(4, "tool_use"))


async def test_earlier_turns_may_omit_thinking_but_what_they_keep_is_verified(simulator):
    earlier = await first_turn(simulator, False, prompt="Weather in Oslo?")
    earlier_tool = earlier["content"][2]
    latest = await first_turn(simulator, True)
    history = [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": earlier["content"][1:]},  # thinking of an earlier turn dropped: fine
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": earlier_tool["id"], "content": "cold"}]},
        {"role": "assistant", "content": "Cold in Oslo."},
    ]
    payload = second_turn(latest["content"])
    payload["messages"][:0] = history
    assert (await post(simulator, payload)).status_code == 200

    payload["messages"][1]["content"] = earlier["content"]  # kept whole: verified and fine
    assert (await post(simulator, payload)).status_code == 200

    tampered = copy.deepcopy(earlier["content"])
    tampered[0]["thinking"] = "I secretly decided something else."
    payload["messages"][1]["content"] = tampered
    assert_refused(await post(simulator, payload), "messages.1.content.0: Invalid `signature` in `thinking` block")


async def test_thinking_disabled_tool_loop_without_thinking_blocks_is_accepted(simulator):
    response = await post(simulator, body(tools=[WEATHER], messages=[{"role": "user", "content": "Weather?"}]))
    answer = response.json()
    assert [b["type"] for b in answer["content"]] == ["text", "tool_use"]
    for thinking in (DROP, {"type": "disabled"}):
        payload = second_turn(answer["content"], prompt="Weather?", thinking=thinking)
        assert (await post(simulator, payload)).status_code == 200
    # thinking blocks sent back while thinking is off are still verified
    content = [{"type": "thinking", "thinking": "made up", "signature": "EqSigSimAAAA"}, *answer["content"]]
    assert_refused(await post(simulator, second_turn(content, prompt="Weather?", thinking=DROP)),
                   "messages.1.content.0: Invalid `signature` in `thinking` block")


async def test_adaptive_thinking_loop_is_verified_but_may_lack_a_thinking_block(simulator):
    adaptive = {"type": "adaptive"}
    answer = await first_turn(simulator, True, thinking=adaptive)
    assert answer["content"][0]["type"] == "thinking"
    assert (await post(simulator, second_turn(answer["content"], thinking=adaptive))).status_code == 200
    assert (await post(simulator, second_turn(answer["content"][1:], thinking=adaptive))).status_code == 200
    tampered = copy.deepcopy(answer["content"])
    tampered[0]["thinking"] += "!"
    assert_refused(await post(simulator, second_turn(tampered, thinking=adaptive)),
                   "messages.1.content.0: Invalid `signature` in `thinking` block")


# --- The secret -----------------------------------------------------------------------------------------------

async def test_secret_is_random_per_state_and_settable(nursery):
    assert SimulatorState().secret != SimulatorState().secret
    state = SimulatorState(secret=b"fixed secret")
    url, _ = await nursery.start(partial(serve_simulator, "127.0.0.1", 0, state=state))
    assert state.sign_thinking("x") == thinking_signature(b"fixed secret", "x")
    payload = body(thinking=THINK)
    async with httpx.AsyncClient(base_url=url, timeout=10, verify=LOOPBACK_TLS) as client:
        before = (await client.post("/v1/messages", json=payload)).json()["content"][0]
        assert before["signature"] == thinking_signature(b"fixed secret", before["thinking"])
        state.secret = b"rotated"
        after = (await client.post("/v1/messages", json=payload)).json()["content"][0]  # same body: re-planned
        assert after["signature"] == thinking_signature(b"rotated", after["thinking"]) != before["signature"]
        loop = second_turn([before, {"type": "tool_use", "id": "toolu_x", "name": "get_weather", "input": {}}])
        refused = await client.post("/v1/messages", json=loop)
        assert refused.json()["error"]["message"] == "messages.1.content.0: Invalid `signature` in `thinking` block"
        loop["messages"][1]["content"][0] = after
        assert (await client.post("/v1/messages", json=loop)).status_code == 200


# --- count_tokens ----------------------------------------------------------------------------------------------

async def test_count_tokens_applies_the_rules_that_concern_it(simulator):
    path = "/v1/messages/count_tokens"
    no_max = dict(max_tokens=DROP)
    ok = await post(simulator, body(thinking=THINK, temperature=0.5, **no_max), path)  # no max_tokens nor sampling
    assert ok.status_code == 200 and ok.json()["input_tokens"] > 0
    assert_refused(await post(simulator, body(thinking={"type": "enabled", "budget_tokens": 10}, **no_max), path),
                   "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
    assert_refused(await post(simulator, body(thinking=THINK, tools=[WEATHER], tool_choice={"type": "any"},
                                              **no_max), path), FORCED)
    assert_refused(await post(simulator, body(messages=[], **no_max), path),
                   "messages: at least one message is required")
    answer = await first_turn(simulator, True)
    loop = second_turn(answer["content"], **no_max)
    assert (await post(simulator, loop, path)).status_code == 200
    assert_refused(await post(simulator, second_turn(answer["content"][1:], **no_max), path), loop_error(1, "text"))
    tampered = copy.deepcopy(answer["content"])
    tampered[0]["signature"] = tampered[0]["signature"][::-1]
    assert_refused(await post(simulator, second_turn(tampered, **no_max), path),
                   "messages.1.content.0: Invalid `signature` in `thinking` block")
    assert simulator.seen(path)[-1].outcome == "rejected"


def test_a_thinking_type_that_is_not_a_string_is_refused_not_a_crash():
    from proxy.simulator.rules import InvalidRequest, check_request
    import pytest as _pytest
    for kind in ([], {"x": 1}, 5):
        with _pytest.raises(InvalidRequest, match="thinking: Input tag"):
            check_request({"model": "m", "max_tokens": 10, "thinking": {"type": kind},
                           "messages": [{"role": "user", "content": "hi"}]}, b"secret")
