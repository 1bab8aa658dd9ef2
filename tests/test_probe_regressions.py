"""Regressions found by probing a running gateway (branch ``probe``).

Each test pins a finding and is expected to fail until it is fixed
(``xfail(strict=True)``): when a fix lands, the test passes, strict xfail turns
that into a failure, and the marker is to be removed.
"""

from __future__ import annotations

import json
import time

import pytest

from proxy.adaptors.anthropic import AnthropicAdaptor
from proxy.adaptors.base import RequestRules
from proxy.catalog import default_catalog
from proxy.cli import main
from proxy.protocol.thinking import Placeholder, Turn, lookup_ids, restore
from proxy.transfer import _amount

TOOL_USE = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}
TOOL_RESULT = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "x"}]}


def _loop(assistant_content, thinking=None):
    return {"model": "claude-sonnet-4-5-20250929", "max_tokens": 4000,
            "thinking": thinking if thinking is not None else {"type": "enabled", "budget_tokens": 2000},
            "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
            "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": assistant_content},
                         TOOL_RESULT]}


# -- transfer amounts ------------------------------------------------------------------------

@pytest.mark.xfail(strict=True, reason="POST /api/user/transfer {\"amount\": \"1e999999\"}: decimal.Overflow "
                                       "escapes _amount -> HTTP 500 instead of 400 Invalid amount")
def test_transfer_amount_overflowing_exponent_is_invalid_not_500():
    assert _amount("1e999999") is None


@pytest.mark.xfail(strict=True, reason="POST /api/user/transfer {\"amount\": \"1e400000\"} builds a 400,000-digit "
                                       "int on the event loop: the whole gateway stops answering for ~11 s "
                                       "(\"1e999990\": minutes); any key can repeat it 20 times a minute")
def test_transfer_amount_huge_exponent_is_refused_quickly():
    started = time.perf_counter()
    result = _amount("1e300000")
    assert time.perf_counter() - started < 0.5
    assert result is None


@pytest.mark.xfail(strict=True, reason="Decimal() accepts digit separators: amount \"1_0\" transfers $10")
def test_transfer_amount_with_underscores_is_invalid():
    assert _amount("1_0") is None


# -- thinking restore on malformed bodies (500 with an empty body, no request-id) -----------

@pytest.mark.xfail(strict=True, reason="thinking.type a list/dict: TypeError unhashable in thinking_enabled -> "
                                       "/v1/messages answers 500, empty body, no request-id")
@pytest.mark.parametrize("kind", [[], ["enabled"], {"a": 1}])
def test_lookup_ids_survives_unhashable_thinking_type(kind):
    assert lookup_ids(_loop([TOOL_USE], thinking={"type": kind})) == []


@pytest.mark.xfail(strict=True, reason="an assistant content block whose type is a list/dict: TypeError "
                                       "unhashable in _starts_with_thinking -> /v1/messages 500")
@pytest.mark.parametrize("kind", [["thinking"], {"x": 1}])
def test_lookup_ids_survives_unhashable_block_type(kind):
    lookup_ids(_loop([{"type": kind}, TOOL_USE]))


@pytest.mark.xfail(strict=True, reason="a remembered turn applied to content with a block whose type is a list: "
                                       "TypeError unhashable in Turn.apply -> /v1/messages 500")
def test_restore_survives_unhashable_block_type_in_client_content():
    turn = Turn(({"type": "thinking", "thinking": "t", "signature": "s"}, Placeholder("tool_use", "toolu_1")))
    result = restore(_loop([TOOL_USE, {"type": ["x"]}]), {"toolu_1": turn}.get)
    assert result.status == "restored"


@pytest.mark.xfail(strict=True, reason="stream: true, tools, thinking: \"enabled\" (a string): _needs_recording "
                                       "calls .get on it -> AttributeError -> 500 (after the hold was placed)")
def test_needs_recording_survives_non_object_thinking():
    from proxy.relay import _needs_recording
    parsed = AnthropicAdaptor().parse(json.dumps({**_loop([TOOL_USE]), "thinking": "enabled", "stream": True})
                                      .encode(), RequestRules(default_catalog()))
    assert _needs_recording(AnthropicAdaptor(), parsed, filtered=True) is False


# -- re-serializing a deeply nested body -----------------------------------------------------

@pytest.mark.xfail(strict=True, reason="a body nested 256-1024 deep (orjson.loads accepts up to 1024) with a "
                                       "model alias is re-serialized with orjson.dumps, whose limit is ~255: "
                                       "/v1/messages answers 500, empty body, no request-id")
def test_deeply_nested_body_with_alias_serializes_or_is_refused_as_400():
    depth = 300
    raw = ('{"model":"claude-haiku-4.5","max_tokens":8,"metadata":{"x":%s%s},'
           '"messages":[{"role":"user","content":"hi"}]}' % ("[" * depth, "]" * depth)).encode()
    from proxy import errors
    try:
        parsed = AnthropicAdaptor().parse(raw, RequestRules(default_catalog()))
    except errors.GatewayError as error:
        assert error.status == 400
        return
    parsed.upstream_bytes()


# -- model fallback --------------------------------------------------------------------------

@pytest.mark.xfail(strict=True, reason="an id naming two families (\"opus-haiku\", \"haiku-opus\") falls back to "
                                       "the dearest one (claude-opus-4.6) instead of 404")
@pytest.mark.parametrize("model_id", ["opus-haiku", "haiku-opus"])
def test_ambiguous_family_does_not_fall_back(model_id):
    assert default_catalog().newest_of_family(model_id, "messages") is None


# -- admin CLI -------------------------------------------------------------------------------

@pytest.mark.xfail(strict=True, reason="key create --models '' (an empty $VAR) mints an UNRESTRICTED key, while "
                                       "--models ' , ' mints one allowed nothing: fails open")
def test_key_create_with_empty_models_does_not_fail_open(capsys, tmp_path):
    db = str(tmp_path / "probe.db")
    assert main(["user", "create", "alice", "--db", db]) == 0
    code = main(["key", "create", "alice", "--models", "", "--db", db])
    capsys.readouterr()
    if code != 0:
        return  # refused: fine
    import sqlite3
    with sqlite3.connect(db) as conn:
        (models,), = conn.execute("SELECT models FROM api_keys").fetchall()
    assert models is not None  # NULL means every model
