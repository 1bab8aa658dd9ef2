"""The Responses adaptor: parse errors and the OpenAI error shapes it answers with."""

from __future__ import annotations

import json
import secrets

import pytest

from proxy import errors
from proxy.adaptors.base import RequestRules
from proxy.adaptors.responses import ResponsesAdaptor
from proxy.catalog import default_catalog
from proxy.protocol.reasoning_seal import ReasoningSeal

ADAPTOR = ResponsesAdaptor(ReasoningSeal(b"0123456789abcdef", secrets.token_bytes))
RULES = RequestRules(default_catalog())


def parse(body: dict, adaptor: ResponsesAdaptor = ADAPTOR):
    return adaptor.parse(json.dumps(body).encode(), RULES)


@pytest.mark.parametrize("body,status,param", [
    ({"input": "hi"}, 400, "model"),
    ({"model": "gpt-9", "input": "hi"}, 400, "model"),
    ({"model": "claude-haiku-4.5", "input": "hi", "stream": "yes"}, 400, "stream"),
    ({"model": "claude-haiku-4.5", "input": "hi", "max_output_tokens": 10**6}, None, None),  # clamped
])
def test_parse_errors(body, status, param):
    if status is None:
        parsed = parse(body)
        assert parsed.max_tokens == 8192 and (b"x-cheaplm-max-tokens", b"8192") in parsed.notes
        return
    with pytest.raises(errors.GatewayError) as refused:
        parse(body)
    assert refused.value.status == status and refused.value.param == param


def test_the_client_model_is_echoed_and_auto_cache_is_a_switch():
    parsed = parse({"model": "claude-sonnet-4-5", "input": "hi", "instructions": "sys"})
    assert parsed.client_model == "claude-sonnet-4-5" and parsed.body["model"] == "claude-sonnet-4-5-20250929"
    assert parsed.body["system"][0]["cache_control"] == {"type": "ephemeral"}
    plain = parse({"model": "claude-sonnet-4.5", "input": "hi", "instructions": "sys"},
                  ResponsesAdaptor(ADAPTOR.seal, auto_cache=False))
    assert plain.body["system"] == "sys"


@pytest.mark.parametrize("error,status,code,says", [
    (errors.billing("Insufficient balance"), 402, "insufficient_quota", "Insufficient balance"),
    (errors.GatewayError(429, "Too many requests", headers=(("retry-after", "12"),)), 429, "rate_limit_exceeded",
     "try again in 12 s"),
    (errors.GatewayError(400, "prompt is too long: 250000 tokens > 200000 maximum"), 400,
     "context_length_exceeded", "prompt is too long"),
    (errors.invalid_request("input: required", "input"), 400, "invalid_request_error", "input: required"),
])
def test_error_bodies_are_openai_shaped_with_the_codes_clients_act_on(error, status, code, says):
    body = ADAPTOR.error_body(error, "req_1")
    assert set(body) == {"error"} and error.status == status
    assert body["error"]["code"] == code and says in body["error"]["message"]
    assert body["error"]["type"] == error.openai_type()


def test_error_event_without_a_renderer_is_a_whole_failed_response():
    out = ADAPTOR.error_event(errors.upstream_timeout("stream"), "req_abc").decode()
    kinds = [line[7:] for line in out.split("\n") if line.startswith("event: ")]
    assert kinds == ["response.created", "response.in_progress", "response.failed"]
    assert '"id":"resp_abc"' in out and '"code":"server_error"' in out
