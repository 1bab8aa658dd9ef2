"""Request/response translation tables, one row per mapping, including the regressions
other gateways shipped (protocol.md section 3)."""

import pytest

from proxy.protocol.translate import (TranslationError, finish_reason, openai_usage, translate_messages,
                                      translate_request, translate_response)
from proxy.protocol.usage import Usage

USER = {"role": "user", "content": "hi"}


def tr(**body):
    body.setdefault("messages", [USER])
    return translate_request(body, "upstream-model", 8192, True)


ROWS = [
    ("system hoisted", dict(messages=[{"role": "system", "content": "A"}, USER]), {"system": "A"}),
    ("developer and system in order, any position",
     dict(messages=[{"role": "developer", "content": "A"}, USER,
                    {"role": "system", "content": [{"type": "text", "text": "B"}]}]), {"system": "A\nB"}),
    ("max_completion_tokens wins", dict(max_tokens=10, max_completion_tokens=20), {"max_tokens": 20}),
    ("max_tokens", dict(max_tokens=10), {"max_tokens": 10}),
    ("default max_tokens from the model", dict(), {"max_tokens": 8192}),
    ("stop string", dict(stop="END"), {"stop_sequences": ["END"]}),
    ("stop list, whitespace-only dropped", dict(stop=["a", " ", "\n", "b"]), {"stop_sequences": ["a", "b"]}),
    ("temperature capped at 1", dict(temperature=1.7), {"temperature": 1}),
    ("temperature kept", dict(temperature=0.2), {"temperature": 0.2}),
    ("top_p", dict(top_p=0.5), {"top_p": 0.5}),
    ("function tool", dict(tools=[{"type": "function", "function": {
        "name": "f", "description": "d", "parameters": {"type": "object", "properties": {"x": {"type": "string"}}}}}]),
     {"tools": [{"name": "f", "description": "d",
                 "input_schema": {"type": "object", "properties": {"x": {"type": "string"}}}}],
      "tool_choice": {"type": "auto"}}),
    ("tool without parameters gets an empty object schema",
     dict(tools=[{"type": "function", "function": {"name": "f"}}]),
     {"tools": [{"name": "f", "input_schema": {"type": "object", "properties": {}}}]}),
    ("tool type never clobbers parameters.type",
     dict(tools=[{"type": "function", "function": {"name": "f", "parameters": {"properties": {}}}}]),
     {"tools": [{"name": "f", "input_schema": {"properties": {}, "type": "object"}}]}),
    ("strict kept", dict(tools=[{"type": "function", "function": {"name": "f", "strict": True}}]),
     {"tools": [{"name": "f", "input_schema": {"type": "object", "properties": {}}, "strict": True}]}),
    ("tool_choice required", dict(tools=[{"type": "function", "function": {"name": "f"}}], tool_choice="required"),
     {"tool_choice": {"type": "any"}}),
    ("tool_choice none", dict(tools=[{"type": "function", "function": {"name": "f"}}], tool_choice="none"),
     {"tool_choice": {"type": "none"}}),
    ("tool_choice named", dict(tools=[{"type": "function", "function": {"name": "f"}}],
                               tool_choice={"type": "function", "function": {"name": "f"}}),
     {"tool_choice": {"type": "tool", "name": "f"}}),
    ("parallel_tool_calls false", dict(tools=[{"type": "function", "function": {"name": "f"}}],
                                       parallel_tool_calls=False),
     {"tool_choice": {"type": "auto", "disable_parallel_tool_use": True}}),
    ("user -> metadata.user_id", dict(user="u-1"), {"metadata": {"user_id": "u-1"}}),
    ("reasoning_effort low", dict(reasoning_effort="low", max_tokens=4000, temperature=0.3),
     {"thinking": {"type": "enabled", "budget_tokens": 1024}, "max_tokens": 4000}),
    ("reasoning_effort high clamped below max_tokens", dict(reasoning_effort="high", max_tokens=3000),
     {"thinking": {"type": "enabled", "budget_tokens": 2999}}),
    ("json_schema -> output_config.format", dict(response_format={"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"type": "object", "properties": {}}}}),
     {"output_config": {"format": {"type": "json_schema", "schema": {"type": "object", "properties": {}}}}}),
    ("response_format text is the default", dict(response_format={"type": "text"}), {}),
]


@pytest.mark.parametrize("name,body,expected", ROWS, ids=[r[0] for r in ROWS])
def test_request_mapping(name, body, expected):
    out = tr(**body)
    for key, value in expected.items():
        assert out[key] == value, key
    assert out["model"] == "upstream-model"


@pytest.mark.parametrize("dropped", ["seed", "logprobs", "top_logprobs", "frequency_penalty", "presence_penalty",
                                     "logit_bias", "store", "some_future_parameter"])
def test_hints_without_equivalent_are_dropped(dropped):
    out = tr(**{dropped: 1})
    assert dropped not in out and set(out) == {"model", "messages", "max_tokens"}


def test_thinking_drops_temperature_and_low_top_p():
    out = tr(reasoning_effort="medium", max_tokens=8000, temperature=0.2, top_p=0.5)
    assert "temperature" not in out and "top_p" not in out and out["thinking"]["budget_tokens"] == 4096


@pytest.mark.parametrize("body,param", [
    (dict(n=2), "n"),
    (dict(max_tokens=0), "max_tokens"),
    (dict(max_tokens="5"), "max_tokens"),
    (dict(temperature=3), "temperature"),
    (dict(temperature="hot"), "temperature"),
    (dict(stop=5), "stop"),
    (dict(tools=[{"type": "web_search"}]), "tools"),
    (dict(tools=[{"type": "function", "function": {}}]), "tools"),
    (dict(tools=[{"type": "function", "function": {"name": "f"}}], tool_choice="sometimes"), "tool_choice"),
    (dict(tool_choice="required"), "tool_choice"),
    (dict(reasoning_effort="extreme"), "reasoning_effort"),
    (dict(reasoning_effort="low", max_tokens=1024), "max_tokens"),
    (dict(reasoning_effort="low", tools=[{"type": "function", "function": {"name": "f"}}], tool_choice="required"),
     "tool_choice"),
    (dict(response_format={"type": "json_object"}), "response_format"),
    (dict(response_format={"type": "json_schema", "json_schema": {}}), "response_format"),
    (dict(messages=[]), "messages"),
    (dict(messages=[{"role": "function", "content": "x"}]), "messages"),
    (dict(messages=[{"role": "system", "content": "only a system prompt"}]), "messages"),
    (dict(messages=[{"role": "user", "content": [{"type": "input_audio"}]}]), "messages"),
    (dict(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}]),
     "messages"),
    (dict(messages=[{"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}]), "messages"),
    (dict(messages=[{"role": "tool", "content": "r"}]), "messages"),
])
def test_refused_with_a_clear_400(body, param):
    with pytest.raises(TranslationError) as refused:
        tr(**body)
    assert refused.value.param == param and refused.value.message


def test_reasoning_effort_on_a_model_without_thinking():
    with pytest.raises(TranslationError):
        translate_request({"messages": [USER], "reasoning_effort": "low"}, "m", 8192, False)


def test_images_data_and_http_urls():
    _, messages = translate_messages([{"role": "user", "content": [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}},
    ]}])
    assert messages[0]["content"] == [
        {"type": "text", "text": "what is this"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


def test_tool_round_trip_messages_merged_results_first():
    system, messages = translate_messages([
        USER,
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "a", "arguments": "{\"x\": 1}"}},
            {"id": "call_2", "type": "function", "function": {"name": "b", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "one"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "two"}]},
        {"role": "user", "content": "and now?"},
    ])
    assert system == ""
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    # empty assistant text dropped; arguments parsed ("" -> {})
    assert messages[1]["content"] == [{"type": "tool_use", "id": "call_1", "name": "a", "input": {"x": 1}},
                                      {"type": "tool_use", "id": "call_2", "name": "b", "input": {}}]
    assert messages[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "call_1", "content": "one"},
        {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "two"}]},
        {"type": "text", "text": "and now?"}]


def test_empty_text_blocks_never_sent():
    _, messages = translate_messages([{"role": "user", "content": [{"type": "text", "text": ""},
                                                                   {"type": "text", "text": "x"}]},
                                      {"role": "assistant", "content": ""}, {"role": "user", "content": "y"}])
    assert messages == [{"role": "user", "content": [{"type": "text", "text": "x"}, {"type": "text", "text": "y"}]}]


@pytest.mark.parametrize("stop,finish", [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("pause_turn", "stop"), ("max_tokens", "length"),
    ("model_context_window_exceeded", "length"), ("tool_use", "tool_calls"), ("refusal", "content_filter"),
    (None, "stop"),
])
def test_finish_reasons(stop, finish):
    assert finish_reason(stop) == finish


def test_usage_mapping():
    assert openai_usage(Usage(input_tokens=10, cache_write_5m=3, cache_write_1h=2, cache_read=100,
                              output_tokens=7)) == {
        "prompt_tokens": 115, "completion_tokens": 7, "total_tokens": 122,
        "prompt_tokens_details": {"cached_tokens": 100}}


def test_response_translation():
    message = {"id": "msg_1", "type": "message", "role": "assistant", "stop_reason": "tool_use", "content": [
        {"type": "thinking", "thinking": "hmm", "signature": "s"}, {"type": "text", "text": "Let me look."},
        {"type": "tool_use", "id": "toolu_1", "name": "get", "input": {"q": "☃"}}],
        "usage": {"input_tokens": 5, "output_tokens": 9, "cache_read_input_tokens": 4}}
    out = translate_response(message, "claude-sonnet-4.5", 123)
    assert out["id"] == "chatcmpl-msg_1" and out["model"] == "claude-sonnet-4.5" and out["created"] == 123
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {"role": "assistant", "content": "Let me look.", "refusal": None,
                                 "reasoning_content": "hmm", "tool_calls": [
                                     {"id": "toolu_1", "type": "function",
                                      "function": {"name": "get", "arguments": '{"q": "☃"}'}}]}
    assert out["usage"]["prompt_tokens"] == 9 and out["usage"]["prompt_tokens_details"]["cached_tokens"] == 4
    only_tools = translate_response({"content": [{"type": "tool_use", "id": "t", "name": "n", "input": {}}],
                                     "stop_reason": "tool_use", "usage": {}}, "m", 1)
    assert only_tools["choices"][0]["message"]["content"] is None
