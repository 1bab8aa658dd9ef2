"""The Messages adaptor passes bodies through untouched when it can, and writes them
anew when a parser upstream could read them otherwise."""

import json

import pytest

from proxy.adaptors.anthropic import AnthropicAdaptor
from proxy.adaptors.base import RequestRules
from proxy.catalog import default_catalog
from tests.protocol.bodies import TOOL_USE, tool_loop

BODY = (b'{"model": "MODEL", "max_tokens": 10,\n  "messages": [{"role": "user", "content": "hi \\u2603"}],'
        b' "output_config": {"effort": "low"}, "some_future_field": [1.50, 2e3]}')


def test_upstream_id_is_forwarded_byte_for_byte():
    raw = BODY.replace(b"MODEL", b"claude-sonnet-4-5-20250929")
    parsed = AnthropicAdaptor().parse(raw, RequestRules(default_catalog()))
    assert parsed.encoded(parsed.model.upstream_id) == raw


def test_alias_is_rewritten_and_unknown_fields_kept():
    raw = BODY.replace(b"MODEL", b"claude-sonnet-4.5")
    parsed = AnthropicAdaptor().parse(raw, RequestRules(default_catalog()))
    sent = json.loads(parsed.encoded(parsed.model.upstream_id))
    assert sent["model"] == "claude-sonnet-4-5-20250929" and parsed.client_model == "claude-sonnet-4.5"
    assert sent["output_config"] == {"effort": "low"} and sent["some_future_field"] == [1.5, 2000.0]
    assert sent["messages"][0]["content"] == "hi ☃"


def test_the_answer_names_the_model_as_the_client_sent_it():
    """Claude Code keeps a turn's thinking only while that turn's message.model equals the
    model it requests: message_start and whole answers echo the client's id, nothing else changes."""
    from proxy.adaptors.anthropic import PassThrough
    from proxy.protocol.sse import encode_event

    raw = BODY.replace(b"MODEL", b"claude-sonnet-4.5")
    adaptor = AnthropicAdaptor()
    parsed = adaptor.parse(raw, RequestRules(default_catalog()))
    start = encode_event("message_start", {"type": "message_start", "message": {
        "id": "msg_1", "model": "claude-sonnet-4-5-20250929", "content": [], "usage": {"input_tokens": 3}}})
    delta = encode_event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                 "delta": {"type": "text_delta", "text": '"model":"x"'}})
    renderer = adaptor.stream_renderer(parsed, "req_1")
    out = renderer.render([start, delta]) + renderer.render([start])
    first, second, third = out.split(b"\n\n")[:3]
    assert b'"model":"claude-sonnet-4.5"' in first and second + b"\n\n" == delta
    assert third + b"\n\n" == start  # only the stream's own message_start is looked at
    assert PassThrough("claude-sonnet-4-5-20250929").render([start]) == start  # already right: bytes as they came
    message = {"id": "msg_1", "model": "claude-sonnet-4-5-20250929", "content": [{"type": "text", "text": "☃"}]}
    body = json.loads(adaptor.render_message(json.dumps(message).encode(), message, parsed))
    assert body == {**message, "model": "claude-sonnet-4.5"}
    same = json.dumps({**message, "model": "claude-sonnet-4.5"}).encode()
    assert adaptor.render_message(same, json.loads(same), parsed) is same


# -- the client's bytes passed through: what a first-wins parser would read --------------------

def _first_wins(raw: bytes) -> dict:
    import json
    return json.loads(raw, object_pairs_hook=lambda pairs: dict(reversed(pairs)))


@pytest.mark.parametrize("raw", [
    # a second "model" spelled with an escape: the same key to every JSON parser
    b'{"model":"claude-opus-4-6","max_tokens":10,"messages":[{"role":"user","content":"hi"}],'
    b'"mod\\u0065l":"claude-haiku-4-5-20251001"}',
    # max_tokens twice: the hold is sized on the last, a first-wins upstream writes 4000
    b'{"model":"claude-haiku-4-5-20251001","max_tokens":4000,"messages":[{"role":"user","content":"hi"}],'
    b'"max_tokens":1}',
    # stream twice
    b'{"model":"claude-haiku-4-5-20251001","stream":true,"max_tokens":10,'
    b'"messages":[{"role":"user","content":"hi"}],"stream":false}',
    # the prompt twice: the hold is sized on the last (tiny) one
    b'{"model":"claude-haiku-4-5-20251001","max_tokens":10,"messages":[{"role":"user","content":"' + b"x" * 3000
    + b'"}],"messages":[{"role":"user","content":"hi"}]}',
])
def test_a_body_forwarded_as_sent_means_to_any_parser_what_was_checked_and_billed(raw):
    """The client's bytes go upstream untouched when nothing changed; a body whose keys
    repeat (literally or through a \\u escape) must be written anew, so that an upstream
    whose parser keeps the first of two keys serves what the gateway checked, held and
    billed (the model, max_tokens, stream, the prompt)."""
    from proxy.adaptors.anthropic import AnthropicAdaptor
    from proxy.adaptors.base import RequestRules
    from proxy.catalog import default_catalog
    parsed = AnthropicAdaptor().parse(raw, RequestRules(default_catalog()))
    sent = _first_wins(parsed.encoded(parsed.model.upstream_id))
    assert sent["model"] == parsed.model.upstream_id
    assert sent["max_tokens"] == parsed.max_tokens
    assert sent.get("stream", False) == parsed.stream
    assert sent["messages"] == parsed.body["messages"]


def test_a_plain_body_still_goes_upstream_as_the_client_sent_it():
    from proxy.adaptors.anthropic import AnthropicAdaptor
    from proxy.adaptors.base import RequestRules
    from proxy.catalog import default_catalog
    raw = b'{"model":"claude-haiku-4-5-20251001","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}'
    parsed = AnthropicAdaptor().parse(raw, RequestRules(default_catalog()))
    assert parsed.encoded(parsed.model.upstream_id) is raw


# -- malformed and deeply nested bodies: a 400, never a 500 after the hold ---------------------

def test_non_object_thinking_is_a_400_before_any_hold():
    """stream: true, tools, thinking: "enabled" (a string) used to reach _needs_recording,
    which called .get on it (a 500 after the hold was placed)."""
    from proxy import errors
    with pytest.raises(errors.GatewayError) as refused:
        AnthropicAdaptor().parse(json.dumps({**tool_loop([TOOL_USE]), "thinking": "enabled", "stream": True}).encode(),
                                 RequestRules(default_catalog()))
    assert refused.value.status == 400


def test_deeply_nested_body_with_alias_serializes_or_is_refused_as_400():
    depth = 300
    raw = ('{"model":"claude-haiku-4.5","max_tokens":8,"metadata":{"x":%s%s},'
           '"messages":[{"role":"user","content":"hi"}]}' % ("[" * depth, "]" * depth)).encode()
    from proxy import errors
    try:
        parsed = AnthropicAdaptor().parse(raw, RequestRules(default_catalog()))
        parsed.encoded(parsed.model.upstream_id)
    except errors.GatewayError as error:
        assert error.status == 400
