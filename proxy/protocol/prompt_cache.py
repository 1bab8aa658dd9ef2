"""Automatic prompt caching: Anthropic cache breakpoints for a request that marks none. Pure.

Coding agents resend tens of kilobytes of instructions and tools on every turn (Codex
sends about 40 KB with a ``prompt_cache_key`` and no ``cache_control``); without a
breakpoint every turn pays the full input price, with one the stable prefix is read
from the cache at a tenth of it. A request that carries any ``cache_control`` (or the
top-level one) is the client's own plan and is left alone.

Breakpoints, in prompt order and at most Anthropic's four:

1. the last tool (the tool list changes least);
2. the last system block (a string system prompt becomes one text block);
3. the end of the previous user turn (what the last request wrote, read back now);
4. the end of the latest user turn (written for the next request).

A breakpoint goes on the last block of its place that can carry one: not on a thinking
or redacted_thinking block, not on an empty text block. Where there is no such block
the place gets none. Nothing is marked twice. A first message given as a string is
written as one text block whether marked or not (the same prompt to the upstream), so
its shape does not change from turn to turn.
"""

from __future__ import annotations

from typing import Any

MAX_BREAKPOINTS = 4
EPHEMERAL = {"type": "ephemeral"}
_UNMARKABLE = frozenset({"thinking", "redacted_thinking"})


def has_cache_control(body: dict[str, Any]) -> bool:
    """Whether the request marks any breakpoint itself."""
    if "cache_control" in body:
        return True
    for tool in body.get("tools") or ():
        if isinstance(tool, dict) and "cache_control" in tool:
            return True
    system = body.get("system")
    if isinstance(system, list) and any(isinstance(b, dict) and "cache_control" in b for b in system):
        return True
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list) and any(isinstance(b, dict) and "cache_control" in b for b in content):
            return True
    return False


def _markable(block: Any) -> bool:
    if not isinstance(block, dict) or not isinstance(block.get("type"), str) or block["type"] in _UNMARKABLE:
        return False
    return block["type"] != "text" or bool(block.get("text"))


def _mark_last(blocks: list) -> list | None:
    """A copy of ``blocks`` with its last markable block marked, or None if it has none."""
    for i in range(len(blocks) - 1, -1, -1):
        if _markable(blocks[i]):
            marked = list(blocks)
            marked[i] = {**blocks[i], "cache_control": dict(EPHEMERAL)}
            return marked
    return None


def _as_blocks(content: Any) -> list | None:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return content if isinstance(content, list) else None


def with_breakpoints(body: dict[str, Any]) -> dict[str, Any] | None:
    """``body`` with breakpoints added (a new dict; ``body`` is not changed), or None when
    it marks some already or nothing could be marked."""
    if has_cache_control(body):
        return None
    out = dict(body)
    placed = 0
    tools = body.get("tools")
    if isinstance(tools, list) and tools and isinstance(tools[-1], dict):
        out["tools"] = [*tools[:-1], {**tools[-1], "cache_control": dict(EPHEMERAL)}]
        placed += 1
    system = _as_blocks(body.get("system"))
    if system:
        marked = _mark_last(system)
        if marked is not None:
            out["system"] = marked
            placed += 1
    messages = body.get("messages")
    if isinstance(messages, list):
        users = [i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "user"]
        turns = users[-2:][::-1]  # the latest user turn first: it matters most when places run out
        new_messages = list(messages)
        for index in turns:
            if placed >= MAX_BREAKPOINTS:
                break
            blocks = _as_blocks(messages[index].get("content"))
            marked = _mark_last(blocks) if blocks else None
            if marked is not None:
                new_messages[index] = {**messages[index], "content": marked}
                placed += 1
        first = new_messages[0] if new_messages else None
        if isinstance(first, dict) and isinstance(first.get("content"), str) and first["content"]:
            # one shape for the first message on every turn, marked or not: the router's cache
            # affinity hashes it (markers aside), and "hi" and [{"type": "text", "text": "hi"}] differ there
            new_messages[0] = {**first, "content": _as_blocks(first["content"])}
        out["messages"] = new_messages
    return out if placed else None
