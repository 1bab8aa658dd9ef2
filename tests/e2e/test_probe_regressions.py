"""Regressions found by probing a running gateway as an attacker would: each test pins
a finding that was fixed (it failed before the fix)."""

from __future__ import annotations

import json
import time

import pytest

from proxy.adaptors.anthropic import AnthropicAdaptor
from proxy.adaptors.base import RequestRules
from proxy.catalog import default_catalog
from proxy.cli.main import main
from proxy.protocol.thinking import Placeholder, Turn, lookup_ids, restore
from proxy.http.api.transfer import usd_amount as _amount

TOOL_USE = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}
TOOL_RESULT = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "x"}]}


def _loop(assistant_content, thinking=None):
    return {"model": "claude-sonnet-4-5-20250929", "max_tokens": 4000,
            "thinking": thinking if thinking is not None else {"type": "enabled", "budget_tokens": 2000},
            "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
            "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": assistant_content},
                         TOOL_RESULT]}


# -- transfer amounts ------------------------------------------------------------------------

def test_transfer_amount_overflowing_exponent_is_invalid_not_500():
    assert _amount("1e999999") is None


def test_transfer_amount_huge_exponent_is_refused_quickly():
    started = time.perf_counter()
    result = _amount("1e300000")
    assert time.perf_counter() - started < 0.5
    assert result is None


def test_transfer_amount_with_underscores_is_invalid():
    assert _amount("1_0") is None


# -- thinking restore on malformed bodies (500 with an empty body, no request-id) -----------

@pytest.mark.parametrize("kind", [[], ["enabled"], {"a": 1}])
def test_lookup_ids_survives_unhashable_thinking_type(kind):
    assert lookup_ids(_loop([TOOL_USE], thinking={"type": kind})) == []


@pytest.mark.parametrize("kind", [["thinking"], {"x": 1}])
def test_lookup_ids_survives_unhashable_block_type(kind):
    lookup_ids(_loop([{"type": kind}, TOOL_USE]))


def test_restore_survives_unhashable_block_type_in_client_content():
    turn = Turn(({"type": "thinking", "thinking": "t", "signature": "s"}, Placeholder("tool_use", "toolu_1")))
    result = restore(_loop([TOOL_USE, {"type": ["x"]}]), {"toolu_1": turn}.get)
    assert result.status == "restored"


def test_non_object_thinking_is_a_400_before_any_hold():
    """stream: true, tools, thinking: "enabled" (a string) used to reach _needs_recording,
    which called .get on it (a 500 after the hold was placed)."""
    from proxy import errors
    with pytest.raises(errors.GatewayError) as refused:
        AnthropicAdaptor().parse(json.dumps({**_loop([TOOL_USE]), "thinking": "enabled", "stream": True}).encode(),
                                 RequestRules(default_catalog()))
    assert refused.value.status == 400


# -- re-serializing a deeply nested body -----------------------------------------------------

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


# -- model fallback --------------------------------------------------------------------------

@pytest.mark.parametrize("model_id", ["opus-haiku", "haiku-opus"])
def test_ambiguous_family_does_not_fall_back(model_id):
    assert default_catalog().newest_of_family(model_id, "messages") is None


# -- admin CLI -------------------------------------------------------------------------------

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
