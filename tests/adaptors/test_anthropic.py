"""The Messages adaptor passes bodies through untouched when it can."""

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
    import json

    raw = BODY.replace(b"MODEL", b"claude-sonnet-4.5")
    parsed = AnthropicAdaptor().parse(raw, RequestRules(default_catalog()))
    sent = json.loads(parsed.encoded(parsed.model.upstream_id))
    assert sent["model"] == "claude-sonnet-4-5-20250929" and parsed.client_model == "claude-sonnet-4.5"
    assert sent["output_config"] == {"effort": "low"} and sent["some_future_field"] == [1.5, 2000.0]
    assert sent["messages"][0]["content"] == "hi ☃"
