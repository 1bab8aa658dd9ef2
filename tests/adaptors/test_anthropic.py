"""The Messages adaptor passes bodies through untouched when it can."""

import json

from proxy.adaptors.anthropic import AnthropicAdaptor
from proxy.adaptors.base import RequestRules
from proxy.catalog import default_catalog

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
