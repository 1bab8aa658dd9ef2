"""Responses requests -> Messages, and whole Messages answers -> Responses objects."""

from __future__ import annotations

import json
import secrets

import pytest

from proxy.protocol.reasoning_seal import ReasoningSeal
from proxy.protocol.responses_output import ResponseIds, failure, output_items, usage_object
from proxy.protocol.responses_request import ToolName, translate_responses_request
from proxy.protocol.translate import TranslationError
from proxy.protocol.usage import Usage

SEAL = ReasoningSeal(b"0123456789abcdef0123456789abcdef", secrets.token_bytes)
THINKING = {"type": "thinking", "thinking": "hmm", "signature": "EqSig"}


def translate(body: dict, thinking: bool = True):
    return translate_responses_request({"model": "m", **body}, "upstream-id", 8192, thinking, SEAL.open)


def test_string_input_and_instructions():
    out = translate({"input": "hi", "instructions": "Be brief."}).body
    assert out == {"model": "upstream-id", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
                   "system": "Be brief.", "max_tokens": 8192}


def test_codex_history_becomes_alternating_messages():
    sealed = SEAL.seal(THINKING)
    items = [
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "instructions"}]},
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "skills"}]},
        {"role": "user", "content": "fix the bug"},  # no type (ai-sdk clients)
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": sealed},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Looking."}]},
        {"type": "function_call", "call_id": "c1", "name": "shell", "arguments": '{"cmd": "ls"}'},
        {"type": "function_call", "call_id": "c2", "name": "read", "namespace": "fs", "arguments": ""},
        {"type": "function_call_output", "call_id": "c1", "output": "a.py"},
        {"type": "function_call_output", "call_id": "c2", "output": [
            {"type": "input_text", "text": "content"},
            {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="}]},
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "mid-run note"}]},
        {"type": "custom_tool_call", "call_id": "c3", "name": "apply_patch", "input": "*** Begin Patch"},
        {"type": "custom_tool_call_output", "call_id": "c3", "output": "ok"},
    ]
    out = translate({"input": items}).body
    assert out["system"] == "instructions\n\nskills"
    assert [m["role"] for m in out["messages"]] == ["user", "assistant", "user", "assistant", "user"]
    assert out["messages"][1]["content"] == [
        THINKING, {"type": "text", "text": "Looking."},
        {"type": "tool_use", "id": "c1", "name": "shell", "input": {"cmd": "ls"}},
        {"type": "tool_use", "id": "c2", "name": "fs__read", "input": {}}]
    results = out["messages"][2]["content"]
    assert [b["type"] for b in results] == ["tool_result", "tool_result", "text"]  # results first, the note after
    assert results[1]["content"][1]["source"] == {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}
    assert results[2] == {"type": "text", "text": "mid-run note"}
    assert out["messages"][3]["content"] == [{"type": "tool_use", "id": "c3", "name": "apply_patch",
                                              "input": {"input": "*** Begin Patch"}}]
    assert out["messages"][4]["content"] == [{"type": "tool_result", "tool_use_id": "c3", "content": "ok"}]


def test_reasoning_that_does_not_open_is_dropped_and_counted():
    translated = translate({"input": [
        {"role": "user", "content": "q"},
        {"type": "reasoning", "summary": [], "encrypted_content": "gAAAA-openai"},
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "made up"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "a"}]}]})
    assert translated.dropped_reasoning == 2
    assert translated.body["messages"][1]["content"] == [{"type": "text", "text": "a"}]


def test_tools_namespaces_custom_and_hosted():
    translated = translate({"input": "go", "tool_choice": {"type": "function", "name": "lookup", "namespace": "crm"},
                            "parallel_tool_calls": False, "tools": [
        {"type": "function", "name": "shell", "strict": True, "parameters": {"type": "object", "properties": {}}},
        {"type": "namespace", "name": "crm", "description": "CRM", "tools": [
            {"type": "function", "name": "lookup", "description": "Find"}]},
        {"type": "custom", "name": "apply_patch", "format": {"type": "grammar", "syntax": "lark",
                                                             "definition": "start: x"}},
        {"type": "web_search"}, {"type": "file_search", "vector_store_ids": []}]})
    body = translated.body
    assert [t["name"] for t in body["tools"]] == ["shell", "crm__lookup", "apply_patch"]
    assert body["tools"][0]["strict"] is True and body["tools"][1]["description"] == "Find\n\n(in crm: CRM)"
    assert "start: x" in body["tools"][2]["description"]
    assert body["tools"][2]["input_schema"]["required"] == ["input"]
    assert body["tool_choice"] == {"type": "tool", "name": "crm__lookup", "disable_parallel_tool_use": True}
    assert translated.dropped_tools == ["web_search", "file_search"]
    assert translated.tools["crm__lookup"] == ToolName("function", "lookup", "crm")
    assert translated.tools["apply_patch"] == ToolName("custom", "apply_patch")


@pytest.mark.parametrize("effort,budget", [("minimal", 1024), ("low", 2048), ("medium", 4096), ("high", 4096),
                                           ("xhigh", 4096)])
def test_reasoning_effort_is_a_thinking_budget_within_half_the_cap(effort, budget):
    out = translate({"input": "q", "reasoning": {"effort": effort, "summary": "auto"}, "temperature": 0.2}).body
    assert out["thinking"] == {"type": "enabled", "budget_tokens": budget} and "temperature" not in out


def test_no_effort_no_thinking_and_thinking_dropped_where_it_cannot_be():
    assert "thinking" not in translate({"input": "q", "reasoning": {"summary": "auto"}}).body
    assert "thinking" not in translate({"input": "q", "reasoning": {"effort": "none"}}).body
    unsupported = translate({"input": "q", "reasoning": {"effort": "high"}}, thinking=False)
    assert "thinking" not in unsupported.body and unsupported.thinking_note == "unsupported"
    small = translate({"input": "q", "reasoning": {"effort": "high"}, "max_output_tokens": 500})
    assert "thinking" not in small.body and small.thinking_note == "max_output_tokens"
    forced = translate({"input": "q", "reasoning": {"effort": "high"}, "tool_choice": "required",
                        "tools": [{"type": "function", "name": "f"}]})
    assert "thinking" not in forced.body and forced.thinking_note == "tool_choice"


def test_the_fields_codex_sends_are_accepted():
    out = translate({"input": "q", "store": False, "include": ["reasoning.encrypted_content"],
                     "prompt_cache_key": "session", "truncation": "auto", "client_metadata": {"x": "y"},
                     "text": {"format": {"type": "json_schema", "name": "n", "schema": {"type": "object"},
                                         "strict": True}, "verbosity": "low"},
                     "max_output_tokens": 300, "safety_identifier": "user-1", "stream": True}).body
    assert out["output_config"] == {"format": {"type": "json_schema", "schema": {"type": "object"}}}
    assert out["max_tokens"] == 300 and out["metadata"] == {"user_id": "user-1"}


@pytest.mark.parametrize("body,param", [
    ({"input": "q", "previous_response_id": "resp_1"}, "previous_response_id"),
    ({"input": "q", "conversation": "conv_1"}, "conversation"),
    ({"input": "q", "background": True}, "background"),
    ({}, "input"), ({"input": 3}, "input"), ({"input": []}, "input"),
    ({"input": [{"type": "item_reference", "id": "x"}]}, "input"),
    ({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{bad"}]}, "input"),
    ({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "[1]"}]}, "input"),
    ({"input": [{"type": "function_call_output", "output": "x"}]}, "input"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]}]}, "input"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}, "input"),
    ({"input": [{"role": "tool", "content": "x"}]}, "input"),
    ({"input": "q", "max_output_tokens": 0}, "max_output_tokens"),
    ({"input": "q", "reasoning": {"effort": "extreme"}}, "reasoning"),
    ({"input": "q", "text": {"format": {"type": "json_object"}}}, "text"),
    ({"input": "q", "tools": [{"type": "function", "name": "f"}, {"type": "function", "name": "f"}]}, "tools"),
    ({"input": "q", "tools": [{"type": "function", "name": "f"}], "tool_choice": {"type": "function", "name": "g"}},
     "tool_choice"),
    ({"input": "q", "tool_choice": "required"}, "tool_choice"),
])
def test_refused_with_a_400_that_names_the_field(body, param):
    with pytest.raises(TranslationError) as refused:
        translate(body)
    assert refused.value.param == param


def test_whole_answer_to_output_items():
    ids = ResponseIds("abc")
    content = [THINKING, {"type": "redacted_thinking", "data": "d"}, {"type": "text", "text": "Hi"},
               {"type": "tool_use", "id": "t1", "name": "crm__lookup", "input": {"id": 1}},
               {"type": "tool_use", "id": "t2", "name": "apply_patch", "input": {"input": "patch"}},
               {"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}}]
    tools = {"crm__lookup": ToolName("function", "lookup", "crm"), "apply_patch": ToolName("custom", "apply_patch")}
    items, chars = output_items(content, ids, tools, SEAL.seal, show_thinking=True)
    assert chars == 3 and [i["type"] for i in items] == ["reasoning", "reasoning", "message", "function_call",
                                                         "custom_tool_call"]
    assert items[0]["summary"] == [{"type": "summary_text", "text": "hmm"}] and SEAL.open(
        items[0]["encrypted_content"]) == THINKING
    assert items[3]["namespace"] == "crm" and json.loads(items[3]["arguments"]) == {"id": 1}
    assert items[4]["input"] == "patch"
    hidden, _ = output_items(content, ids, tools, SEAL.seal, show_thinking=False)
    assert hidden[0]["summary"] == []


def test_usage_counts_cache_reads_and_writes_as_input():
    usage = Usage(input_tokens=10, cache_write_5m=100, cache_write_1h=5, cache_read=1000, output_tokens=40)
    assert usage_object(usage, reasoning_chars=400) == {
        "input_tokens": 1115, "input_tokens_details": {"cached_tokens": 1000}, "output_tokens": 40,
        "output_tokens_details": {"reasoning_tokens": 40}, "total_tokens": 1155}


def test_failure_codes():
    assert failure(200, "rate_limit_error", "slow down")["message"] == "slow down"
    assert failure(429, "rate_limit_error", "slow down", "7")["message"] == "slow down Please try again in 7 s."
    assert failure(400, "invalid_request_error", "bad")["code"] == "invalid_request_error"
    assert failure(529, "overloaded_error", "x")["code"] == "server_is_overloaded"
