"""Recorded Anthropic streams -> the exact OpenAI chunk sequences, for every chunk split."""

import json

import pytest


from proxy.protocol.stream_a2o import AnthropicToOpenAIStream

from tests.splits import every_split, golden


def translate(chunks, include_usage):
    machine = AnthropicToOpenAIStream("claude-sonnet-4.5", 1700000000, include_usage, "req_x")
    return b"".join(machine.feed(c) for c in chunks) + machine.close()


def translate_every_split(data: bytes, include_usage: bool) -> bytes:
    """The output for the whole input, asserted equal for every chunk split of it."""
    whole = translate([data], include_usage)
    for chunks in every_split(data):
        assert translate(chunks, include_usage) == whole, [len(c) for c in chunks]
    return whole


def lines(out: bytes) -> list:
    assert out.endswith(b"\n\n")
    items = []
    for block in out.decode().split("\n\n")[:-1]:
        assert block.startswith("data: ") and "\n" not in block
        payload = block[6:]
        items.append(payload if payload == "[DONE]" else json.loads(payload))
    return items


def choice(delta, finish=None):
    return {"id": "chatcmpl-msg_1", "object": "chat.completion.chunk", "created": 1700000000,
            "model": "claude-sonnet-4.5", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def with_id(chunk, message_id):
    chunk["id"] = "chatcmpl-" + message_id
    return chunk


THINKING_TOOL = [
    choice({"role": "assistant", "content": ""}),
    choice({"reasoning_content": "Let me think about the weather."}),
    choice({"content": "Hi ☃ there"}),
    choice({"tool_calls": [{"index": 0, "id": "toolu_1", "type": "function",
                            "function": {"name": "get_weather", "arguments": ""}}]}),
    choice({"tool_calls": [{"index": 0, "function": {"arguments": '{"loc'}}]}),
    choice({"tool_calls": [{"index": 0, "function": {"arguments": 'ation": "Paris"}'}}]}),
    choice({}, "tool_calls"),
    {"id": "chatcmpl-msg_1", "object": "chat.completion.chunk", "created": 1700000000, "model": "claude-sonnet-4.5",
     "choices": [], "usage": {"prompt_tokens": 2572, "completion_tokens": 89, "total_tokens": 2661,
                              "prompt_tokens_details": {"cached_tokens": 2000}}},
    "[DONE]",
]


def test_thinking_text_tool_with_usage_every_split():
    assert lines(translate_every_split(golden("thinking_text_tool.sse"), True)) == THINKING_TOOL


def test_text_only_without_usage_every_split():
    expected = [with_id(choice({"role": "assistant", "content": ""}), "msg_2"),
                with_id(choice({"content": "Hello"}), "msg_2"), with_id(choice({"content": ", world"}), "msg_2"),
                with_id(choice({}, "stop"), "msg_2"), "[DONE]"]
    assert lines(translate_every_split(golden("text_only.sse"), False)) == expected


def test_error_mid_stream_every_split():
    items = lines(translate_every_split(golden("error_mid.sse"), True))
    assert items[:2] == [with_id(choice({"role": "assistant", "content": ""}), "msg_3"),
                         with_id(choice({"content": "Partial answer"}), "msg_3")]
    assert items[2] == {"error": {"message": "Overloaded", "type": "overloaded_error", "param": None,
                                  "code": "overloaded_error"}}
    assert len(items) == 3  # no finish chunk, no usage, no [DONE] after an error


def test_tool_indices_own_counter_and_empty_arguments_every_split():
    items = lines(translate_every_split(golden("two_tools_no_args.sse"), False))
    tool_deltas = [i["choices"][0]["delta"]["tool_calls"][0] for i in items
                   if isinstance(i, dict) and i.get("choices") and "tool_calls" in i["choices"][0]["delta"]]
    assert tool_deltas == [
        {"index": 0, "id": "toolu_a", "type": "function", "function": {"name": "now", "arguments": ""}},
        {"index": 0, "function": {"arguments": "{}"}},
        {"index": 1, "id": "toolu_b", "type": "function", "function": {"name": "get", "arguments": ""}},
        {"index": 1, "function": {"arguments": '{"q":1}'}},
    ]
    roles = [i for i in items if isinstance(i, dict) and "role" in i["choices"][0]["delta"]]
    assert len(roles) == 1
    assert items[-2]["choices"][0]["finish_reason"] == "tool_calls" and items[-1] == "[DONE]"


def test_nothing_after_finish():
    data = golden("text_only.sse")
    out = translate([data + b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
                     b'"delta":{"type":"text_delta","text":"late"}}\n\n'], False)
    assert b"late" not in out and out.endswith(b"data: [DONE]\n\n")


@pytest.mark.parametrize("name", ["thinking_text_tool.sse", "text_only.sse", "error_mid.sse",
                                  "two_tools_no_args.sse"])
def test_relay_pipeline_tap_events_into_render_matches_golden_for_every_split(name):
    """The relay hands the tap's whole events to render(): same output as feeding bytes."""
    from proxy.protocol.stream_filter import AnthropicStreamTap

    data = golden(name)
    expected = translate([data], True)
    for chunks in every_split(data):
        tap = AnthropicStreamTap(filter_thinking=False)
        machine = AnthropicToOpenAIStream("claude-sonnet-4.5", 1700000000, True, "req_x")
        out = b"".join(machine.render(tap.events(c)) for c in chunks) + machine.render(tap.close_events())
        assert out == expected, [len(c) for c in chunks]
