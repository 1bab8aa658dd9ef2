"""Automatic cache breakpoints: where they go, and where they never go."""

from __future__ import annotations

import copy
import itertools

import pytest

from proxy.protocol.prompt_cache import MAX_BREAKPOINTS, has_cache_control, with_breakpoints

MARK = {"type": "ephemeral"}
TOOLS = [{"name": "a", "input_schema": {"type": "object"}}, {"name": "b", "input_schema": {"type": "object"}}]


def marks(body: dict) -> list[str]:
    """Where the breakpoints are, in prompt order."""
    found = [f"tools.{i}" for i, t in enumerate(body.get("tools") or []) if "cache_control" in t]
    system = body.get("system")
    if isinstance(system, list):
        found += [f"system.{i}" for i, b in enumerate(system) if "cache_control" in b]
    for i, message in enumerate(body.get("messages") or []):
        if isinstance(message["content"], list):
            found += [f"messages.{i}.{j}" for j, b in enumerate(message["content"]) if "cache_control" in b]
    return found


def text(value: str) -> dict:
    return {"type": "text", "text": value}


def test_codex_shaped_request_gets_tools_system_and_the_last_two_user_turns():
    body = {"model": "m", "tools": TOOLS, "system": "You are Codex.", "messages": [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": [text("ok"), {"type": "tool_use", "id": "t", "name": "a", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "done"}]}]}
    original = copy.deepcopy(body)
    out = with_breakpoints(body)
    assert body == original  # not changed in place
    assert marks(out) == ["tools.1", "system.0", "messages.0.0", "messages.2.0"]
    assert out["system"] == [{"type": "text", "text": "You are Codex.", "cache_control": MARK}]
    assert out["messages"][0]["content"] == [{"type": "text", "text": "first", "cache_control": MARK}]
    assert out["messages"][1] is body["messages"][1]  # assistant turns untouched


@pytest.mark.parametrize("where", ["top", "tool", "system", "message"])
def test_a_request_with_its_own_breakpoint_is_left_alone(where):
    body = {"tools": copy.deepcopy(TOOLS), "system": [text("s")], "messages": [{"role": "user", "content": [text("u")]}]}
    if where == "top":
        body["cache_control"] = MARK
    elif where == "tool":
        body["tools"][0]["cache_control"] = MARK
    elif where == "system":
        body["system"][0]["cache_control"] = MARK
    else:
        body["messages"][0]["content"][0]["cache_control"] = MARK
    assert has_cache_control(body) and with_breakpoints(body) is None


def test_never_on_thinking_or_empty_text_blocks():
    body = {"messages": [
        {"role": "user", "content": [text("question"), text("")]},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "t", "signature": "s"}]},
        {"role": "user", "content": [{"type": "redacted_thinking", "data": "d"}]}]}
    out = with_breakpoints(body)
    assert marks(out) == ["messages.0.0"]  # the last user turn has nothing markable; the one before does


def test_nothing_markable_is_none():
    assert with_breakpoints({"messages": [{"role": "user", "content": ""}]}) is None
    assert with_breakpoints({"messages": [{"role": "assistant", "content": "prefill"}]}) is None
    assert with_breakpoints({"system": "", "messages": []}) is None


def test_the_first_message_keeps_one_shape_turn_after_turn():
    """The router's cache affinity hashes the first message without markers: a string
    turned into a marked block on turn one must stay a block on turn three."""
    from proxy.upstream.router import prompt_prefix

    turns = [[{"role": "user", "content": "first"}]]
    for n in range(2, 5):
        turns.append([*turns[-1], {"role": "assistant", "content": "ok"}, {"role": "user", "content": f"turn {n}"}])
    prefixes = {prompt_prefix(with_breakpoints({"system": "s", "messages": messages})) for messages in turns}
    assert len(prefixes) == 1


def test_images_and_tool_results_can_carry_one():
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}}
    out = with_breakpoints({"messages": [{"role": "user", "content": [text("look"), image]}]})
    assert marks(out) == ["messages.0.1"]


# Every combination of the places: never more than four, each place marked when it can be.
SYSTEMS = [None, "", "sys", [text("a"), text("b")], [text("a"), text("")]]
TOOL_LISTS = [None, [], TOOLS]
CONTENTS = ["", "text", [text("x")], [text("")], [{"type": "tool_result", "tool_use_id": "t", "content": "r"}]]


def conversations():
    yield []
    for first in CONTENTS:
        yield [{"role": "user", "content": first}]
        for second in CONTENTS:
            yield [{"role": "user", "content": first}, {"role": "assistant", "content": "a"},
                   {"role": "user", "content": second}]


def markable(content) -> bool:
    if isinstance(content, str):
        return bool(content)
    return any(b["type"] != "text" or b["text"] for b in content)


@pytest.mark.parametrize("system,tools", list(itertools.product(range(len(SYSTEMS)), range(len(TOOL_LISTS)))))
def test_every_combination(system, tools):
    for messages in conversations():
        body = {"messages": copy.deepcopy(messages)}
        if SYSTEMS[system] is not None:
            body["system"] = copy.deepcopy(SYSTEMS[system])
        if TOOL_LISTS[tools] is not None:
            body["tools"] = copy.deepcopy(TOOL_LISTS[tools])
        before = copy.deepcopy(body)
        out = with_breakpoints(body)
        assert body == before
        expected = []
        if TOOL_LISTS[tools]:
            expected.append(f"tools.{len(TOOL_LISTS[tools]) - 1}")
        sys_value = SYSTEMS[system]
        if sys_value:
            blocks = [text(sys_value)] if isinstance(sys_value, str) else sys_value
            last = max((i for i, b in enumerate(blocks) if b["text"]), default=None)
            if last is not None:
                expected.append(f"system.{last}")
        users = [i for i, m in enumerate(messages) if m["role"] == "user"][-2:]
        for index in users:
            content = messages[index]["content"]
            if markable(content):
                blocks = [text(content)] if isinstance(content, str) else content
                last = max(j for j, b in enumerate(blocks) if b["type"] != "text" or b["text"])
                expected.append(f"messages.{index}.{last}")
        if not expected:
            assert out is None
            continue
        assert marks(out) == expected and len(expected) <= MAX_BREAKPOINTS
        # the content is the same but for the markers
        stripped = copy.deepcopy(out)
        for tool in stripped.get("tools") or []:
            tool.pop("cache_control", None)
        if isinstance(stripped.get("system"), list):
            for block in stripped["system"]:
                block.pop("cache_control", None)
            if isinstance(before.get("system"), str):
                assert stripped["system"] == [text(before["system"])]
                stripped["system"] = before["system"]
        for i, message in enumerate(stripped["messages"]):
            if isinstance(message["content"], list):
                for block in message["content"]:
                    block.pop("cache_control", None)
                if isinstance(before["messages"][i]["content"], str):
                    assert message["content"] == [text(before["messages"][i]["content"])]
                    message["content"] = before["messages"][i]["content"]
        if out["messages"] and before["messages"][0]["content"]:  # the first message is always blocks
            assert isinstance(out["messages"][0]["content"], list)
        assert stripped == before
