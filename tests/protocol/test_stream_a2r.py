"""Recorded Anthropic streams -> Responses stream events, for every chunk split."""

from __future__ import annotations

import json

import pytest

from proxy.errors import GatewayError
from proxy.protocol.reasoning_seal import ReasoningSeal
from proxy.protocol.responses_output import ResponseIds
from proxy.protocol.responses_request import ToolName
from proxy.protocol.stream_a2r import AnthropicToResponsesStream

from tests.splits import every_split, golden

SEAL = ReasoningSeal(b"a test secret of some length", lambda n: bytes(range(n)))  # deterministic nonces
ECHO = {"tools": [], "instructions": None}


def machine(show_thinking: bool = False, tools: dict | None = None) -> AnthropicToResponsesStream:
    return AnthropicToResponsesStream(ResponseIds("abc"), 1700000000, "claude-sonnet-4.5", ECHO, tools or {},
                                      SEAL.seal, show_thinking)


def translate(chunks, **options) -> bytes:
    m = machine(**options)
    return b"".join(m.feed(c) for c in chunks) + m.close()


def translate_every_split(data: bytes, **options) -> bytes:
    whole = translate([data], **options)
    for chunks in every_split(data):
        assert translate(chunks, **options) == whole, [len(c) for c in chunks]
    return whole


def events(out: bytes) -> list[dict]:
    found = []
    for block in out.decode().split("\n\n")[:-1]:
        head, data = block.split("\n")
        payload = json.loads(data.removeprefix("data: "))
        assert head == "event: " + payload["type"]
        found.append(payload)
    assert [e["sequence_number"] for e in found] == list(range(len(found)))
    return found


def test_thinking_text_tool_every_split():
    found = events(translate_every_split(golden("thinking_text_tool.sse")))
    assert [e["type"] for e in found] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.output_item.done",  # reasoning: no summary for this key
        "response.output_item.added", "response.content_part.added", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.output_item.done",  # redacted thinking
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done", "response.completed"]
    assert found[0]["response"]["id"] == "resp_abc" and found[0]["response"]["status"] == "in_progress"
    done = [e["item"] for e in found if e["type"] == "response.output_item.done"]
    assert SEAL.open(done[0]["encrypted_content"]) == {"type": "thinking", "thinking": "Let me think about the weather.",
                                                       "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3h"}
    assert done[0]["summary"] == []
    assert done[1]["content"][0]["text"] == "Hi ☃ there" and done[1]["status"] == "completed"
    assert SEAL.open(done[2]["encrypted_content"]) == {"type": "redacted_thinking",
                                                       "data": "EmwKAhgBEgy3va3pzix/LafPsn4a"}
    assert done[3] == {"id": "fc_abc003", "type": "function_call", "status": "completed", "call_id": "toolu_1",
                       "name": "get_weather", "arguments": '{"location": "Paris"}'}
    completed = found[-1]["response"]
    assert completed["status"] == "completed" and completed["output"] == done
    assert completed["model"] == "claude-sonnet-4.5"
    assert completed["usage"] == {"input_tokens": 2572, "input_tokens_details": {"cached_tokens": 2000},
                                  "output_tokens": 89, "output_tokens_details": {"reasoning_tokens": 8},
                                  "total_tokens": 2661}


def test_summary_for_keys_that_see_thinking():
    found = events(translate([golden("thinking_text_tool.sse")], show_thinking=True))
    kinds = [e["type"] for e in found]
    assert kinds[2:8] == ["response.output_item.added", "response.reasoning_summary_part.added",
                          "response.reasoning_summary_text.delta", "response.reasoning_summary_text.done",
                          "response.reasoning_summary_part.done", "response.output_item.done"]
    assert found[4]["delta"] == "Let me think about the weather." and found[4]["summary_index"] == 0
    assert found[7]["item"]["summary"] == [{"type": "summary_text", "text": "Let me think about the weather."}]


def test_interleaved_thinking_two_tools_and_namespaces_every_split():
    tools = {"read": ToolName("function", "read_file", "fs")}
    found = events(translate_every_split(golden("redacted_interleaved_two_tools.sse"), tools=tools))
    done = [e["item"] for e in found if e["type"] == "response.output_item.done"]
    assert [i["type"] for i in done] == ["reasoning", "reasoning", "message", "function_call", "reasoning",
                                         "function_call"]
    assert SEAL.open(done[1]["encrypted_content"])["thinking"] == 'Two files: read "a.txt" first,\nthen b ☃ 😀 \\ done.'
    # a thinking block sent whole in its start event
    assert SEAL.open(done[4]["encrypted_content"]) == {"type": "thinking", "thinking": "Now b.",
                                                       "signature": "EpgBCkYIBxgCIkB2sig=="}
    assert [(i["name"], i["namespace"], i["arguments"]) for i in done if i["type"] == "function_call"] == [
        ("read_file", "fs", '{"path": "a.txt"}'), ("read_file", "fs", '{"path": "b.txt"}')]
    assert len({i["id"] for i in done}) == 6


def test_tools_without_arguments_get_an_empty_object():
    found = events(translate_every_split(golden("two_tools_no_args.sse")))
    calls = [e["item"] for e in found if e["type"] == "response.output_item.done" and e["item"]["type"] == "function_call"]
    assert calls and all(c["arguments"] for c in calls)


def test_custom_tool_call_gives_the_text_back():
    stream = golden("thinking_text_tool.sse").replace(b'"partial_json":"{\\"loc"', b'"partial_json":"{\\"input\\": \\"*** Begin"') \
        .replace(b'"partial_json":"ation\\": \\"Paris\\"}"', b'"partial_json":" Patch\\"}"')
    found = events(translate([stream], tools={"get_weather": ToolName("custom", "apply_patch")}))
    done = found[-2]["item"]
    assert done["type"] == "custom_tool_call" and done["input"] == "*** Begin Patch" and done["name"] == "apply_patch"
    assert "response.function_call_arguments.delta" not in [e["type"] for e in found]
    assert found[-3]["type"] == "response.custom_tool_call_input.done"


def test_upstream_error_mid_stream_is_response_failed_every_split():
    found = events(translate_every_split(golden("error_mid.sse")))
    assert found[-1]["type"] == "response.failed"
    failed = found[-1]["response"]
    assert failed["status"] == "failed" and failed["error"] == {"code": "server_is_overloaded", "message": "Overloaded"}
    assert failed["output"] == []  # the open message never finished


@pytest.mark.parametrize("error,code,message", [
    (GatewayError(402, "Insufficient balance"), "insufficient_quota", "Insufficient balance"),
    (GatewayError(429, "Spend cap reached. Retry in 30 s.", "rate_limit_error", headers=(("retry-after", "30"),)),
     "rate_limit_exceeded", "Spend cap reached. Retry in 30 s. Please try again in 30 s."),
    (GatewayError(400, "prompt is too long: 210000 tokens > 200000 maximum"), "context_length_exceeded",
     "prompt is too long: 210000 tokens > 200000 maximum"),
    (GatewayError(502, "Upstream closed the stream before message_stop", "api_error"), "server_error",
     "Upstream closed the stream before message_stop"),
    (GatewayError(504, "Upstream stream timed out"), "server_error", "Upstream stream timed out"),
])
def test_gateway_failures_after_some_output(error, code, message):
    m = machine()
    data = golden("thinking_text_tool.sse")
    head = m.feed(data[:data.index(b"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":2")])
    found = events(head + m.error_event(error))
    assert found[-1]["type"] == "response.failed"
    assert found[-1]["response"]["error"] == {"code": code, "message": message}
    assert [i["type"] for i in found[-1]["response"]["output"]] == ["reasoning", "message"]
    assert m.error_event(error) == b"" and m.feed(data) == b""  # once, and nothing after


def test_failure_before_message_start_still_opens_the_response():
    found = events(machine().error_event(GatewayError(503, "The billing ledger is temporarily unavailable")))
    assert [e["type"] for e in found] == ["response.created", "response.in_progress", "response.failed"]


def test_output_cap_is_completed_with_status_incomplete():
    data = golden("text_only.sse")
    start = data.index(b'"stop_reason":"') + len(b'"stop_reason":"')
    capped = data[:start] + b"max_tokens" + data[data.index(b'"', start):]
    completed = events(translate([capped]))[-1]
    assert completed["type"] == "response.completed"
    assert completed["response"]["status"] == "incomplete"
    assert completed["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
