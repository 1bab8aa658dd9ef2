"""What the simulated upstream answers to a request: a deterministic script. Pure.

Knobs come from the simulator's defaults, overridden per request by a directive
anywhere in the prompt text, e.g. ``[sim deltas=64 gap_ms=20 fault=error_mid]``,
so they reach the simulator through any gateway and any translation.

Knobs: ttft_ms, gap_ms, deltas, delta_bytes, mode (auto|text|tool_use|thinking),
tools (tool calls per answer), fault (none|429|529|500|error_mid|drop_mid|hang|
hang_mid), fault_after (deltas before a mid-stream fault), retry_after,
input_tokens, cache_read, cache_write, cache_write_1h, redacted (redacted_thinking
blocks put before the thinking block of an answer that thinks), searches (web searches
reported in ``usage.server_tool_use`` when the request has a web_search tool, at most its
``max_uses``).

Requests are checked first by rules.py (Anthropic's request rules); the signatures of
thinking blocks are signatures.py's.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields, replace
from typing import Any

from ..protocol.sse import encode_event
from .signatures import DEFAULT_SECRET, hidden_reasoning, redacted_data, thinking_signature

_DIRECTIVE = re.compile(r"\[sim ([^\]]*)\]")
_TEXT = "The quick brown fox jumps over the lazy dog while the gateway meters every token. "
_THINKING = "Considering the question step by step. "
FAULTS = ("none", "429", "529", "500", "error_mid", "drop_mid", "hang", "hang_mid")
MODES = ("auto", "text", "tool_use", "thinking")


@dataclass(frozen=True)
class Knobs:
    ttft_ms: float = 0.0
    gap_ms: float = 0.0
    deltas: int = 16
    delta_bytes: int = 16
    mode: str = "auto"
    tools: int = 1
    fault: str = "none"
    fault_after: int = 2
    retry_after: int = 1
    input_tokens: int = -1   # -1: estimated from the request
    cache_read: int = 0
    cache_write: int = 0
    cache_write_1h: int = 0
    redacted: int = 0        # redacted_thinking blocks before the thinking block (when the answer thinks)
    searches: int = 1        # web searches an answer makes when the request has a web_search tool (<= max_uses)

    def with_directive(self, text: str) -> "Knobs":
        changes: dict[str, Any] = {}
        kinds = {f.name: f.type for f in fields(self)}
        for match in _DIRECTIVE.finditer(text):
            for pair in match.group(1).split():
                key, _, value = pair.partition("=")
                if key not in kinds:
                    continue
                kind = kinds[key]
                changes[key] = float(value) if kind == "float" else int(value) if kind == "int" else value
        knobs = replace(self, **changes) if changes else self
        if knobs.fault not in FAULTS or knobs.mode not in MODES:
            raise ValueError(f"simulator: unknown fault {knobs.fault!r} or mode {knobs.mode!r}")
        return knobs


def request_text(body: dict) -> str:
    """All prompt text of a Messages request, for directives and token estimates."""
    parts: list[str] = []
    stack: list[Any] = [body.get("system"), body.get("messages")]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            parts.append(item)
        elif isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, dict):
            for key in ("text", "content", "thinking"):
                if key in item:
                    stack.append(item[key])
    return "\n".join(parts)


def counted_tokens(body: dict, defaults: Knobs) -> int:
    """count_tokens' answer: the input tokens a message with this prompt reports (its
    ``input_tokens`` directive, which stands for what the prompt's bytes do not show:
    a document by URL, an image)."""
    try:
        knobs = defaults.with_directive(request_text(body))
    except ValueError:  # (a directive the message would refuse: the count does not care)
        knobs = defaults
    return knobs.input_tokens if knobs.input_tokens >= 0 else estimate_tokens(body)


def estimate_tokens(body: dict) -> int:
    size = len(json.dumps([body.get("system"), body.get("messages"), body.get("tools")]))
    return max(1, size // 4)


@dataclass
class Block:
    kind: str           # text | thinking | redacted_thinking | tool_use
    pieces: list[str]   # text / thinking deltas, or partial_json fragments
    name: str = ""
    tool_id: str = ""
    input: Any = None
    signature: str = ""
    data: str = ""      # redacted_thinking only


@dataclass
class Script:
    """A planned answer. ``status != 200`` means an error body instead of a message."""

    status: int
    knobs: Knobs
    message_id: str
    model: str
    blocks: list[Block]
    stop_reason: str
    stop_sequence: str | None
    usage: dict
    error: dict | None = None

    @property
    def output_tokens(self) -> int:
        return self.usage["output_tokens"]


def _server_tool(tool: dict) -> bool:
    kind = tool.get("type")
    return isinstance(kind, str) and kind != "custom"


def web_searches(body: dict, wanted: int) -> int | None:
    """The web searches an answer reports: ``wanted``, at most the web_search tools'
    ``max_uses``; None when the request has no web_search tool."""
    limits = [t.get("max_uses") for t in body.get("tools") or []
              if isinstance(t, dict) and str(t.get("type", "")).startswith("web_search_")]
    if not limits:
        return None
    bounded = [m for m in limits if isinstance(m, int)]
    return max(0, min([wanted, *bounded]) if len(bounded) == len(limits) else wanted)


def _tokens(text: str) -> int:
    return max(1, -(-len(text) // 4))


def _sample_input(schema: Any) -> Any:
    if not isinstance(schema, dict):
        return {}
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return {k: _sample_input(v) for k, v in (schema.get("properties") or {}).items()}
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    samples = {"string": "sim", "integer": 1, "number": 1.5, "boolean": True, "array": []}
    return samples.get(kind, "sim") if isinstance(kind, str) else "sim"


def _chunks(text: str, size: int) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


# --- Signatures -------------------------------------------------------------------------------------------
# A thinking block's signature is an HMAC-SHA256 of its text under the simulator's secret, padded with more
# HMAC output to the length of a real one and base64-encoded; a redacted_thinking block's data is hidden text
# "encrypted" with an HMAC keystream and sealed with an HMAC tag. Both are opaque and deterministic for one
# secret and one text, and both verify only under the secret that made them.

def plan(body: dict, defaults: Knobs, serial: int, secret: bytes = DEFAULT_SECRET) -> Script:
    """The deterministic answer to one Messages request (checked by ``check_request``
    beforehand); thinking and redacted_thinking blocks are signed with ``secret``."""
    knobs = defaults.with_directive(request_text(body))
    model = str(body.get("model", "claude-sim"))
    message_id = f"msg_sim{serial:012d}"
    input_tokens = knobs.input_tokens if knobs.input_tokens >= 0 else estimate_tokens(body)
    usage = {"input_tokens": input_tokens, "cache_creation_input_tokens": knobs.cache_write + knobs.cache_write_1h,
             "cache_read_input_tokens": knobs.cache_read,
             "cache_creation": {"ephemeral_5m_input_tokens": knobs.cache_write,
                                "ephemeral_1h_input_tokens": knobs.cache_write_1h},
             "output_tokens": 0}
    if knobs.fault in ("429", "529", "500"):
        status = int(knobs.fault)
        kind = {429: "rate_limit_error", 529: "overloaded_error", 500: "api_error"}[status]
        return Script(status, knobs, message_id, model, [], "", None, usage,
                      error={"type": kind, "message": f"Simulated {status}"})

    max_tokens = body.get("max_tokens") if isinstance(body.get("max_tokens"), int) else 4096
    messages = body.get("messages") or []
    last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
    answering_tool = isinstance(last.get("content"), list) and any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in last["content"])
    tools = [t for t in (body.get("tools") or []) if isinstance(t, dict) and t.get("name")
             and not _server_tool(t)]
    searches = web_searches(body, knobs.searches)
    if searches is not None:
        usage["server_tool_use"] = {"web_search_requests": searches}
    choice = body.get("tool_choice") if isinstance(body.get("tool_choice"), dict) else {}
    thinking = (body.get("thinking") or {}).get("type") in ("enabled", "adaptive") \
        if isinstance(body.get("thinking"), dict) else False

    mode = knobs.mode
    if mode == "auto":
        use_tools = bool(tools) and choice.get("type") != "none" and not answering_tool
        mode = "tool_use" if use_tools else "text"
    blocks: list[Block] = []
    if thinking or knobs.mode == "thinking":
        for i in range(max(0, knobs.redacted)):
            blocks.append(Block("redacted_thinking", [], data=redacted_data(secret, hidden_reasoning(serial, i))))
        blocks.append(Block("thinking", [_THINKING] * 3))  # signed below, once its length is final
    text_len = knobs.deltas * knobs.delta_bytes if mode != "tool_use" else knobs.delta_bytes
    text = (_TEXT * (text_len // len(_TEXT) + 1))[:text_len]
    stop_reason, stop_sequence = "end_turn", None
    for seq in body.get("stop_sequences") or []:
        if isinstance(seq, str) and seq and seq in text:
            cut = text.index(seq)
            if stop_sequence is None or cut < text.index(stop_sequence):
                stop_sequence = seq
    if stop_sequence is not None:
        text, stop_reason = text[:text.index(stop_sequence)], "stop_sequence"
    if text:
        blocks.append(Block("text", _chunks(text, knobs.delta_bytes)))
    if mode == "tool_use" and stop_sequence is None:
        chosen = [t for t in tools if t["name"] == choice.get("name")] if choice.get("type") == "tool" else tools
        chosen = chosen or tools or [{"name": "sim_tool", "input_schema": {}}]
        count = 1 if choice.get("disable_parallel_tool_use") else max(1, knobs.tools)
        for i in range(count):
            tool = chosen[i % len(chosen)]
            value = _sample_input(tool.get("input_schema"))
            blocks.append(Block("tool_use", _chunks(json.dumps(value), 8) if value else [],
                                name=tool["name"], tool_id=f"toolu_sim{serial:08d}{i:02d}", input=value))
        stop_reason = "tool_use"

    # Cap output at max_tokens, trimming pieces from the end.
    total = 0
    kept: list[Block] = []
    for block in blocks:
        pieces = []
        for piece in block.pieces:
            cost = _tokens(piece)
            if total + cost > max_tokens:
                stop_reason, stop_sequence = "max_tokens", None
                break
            total += cost
            pieces.append(piece)
        else:
            kept.append(block)
            continue
        if pieces or block.kind == "text":
            block.pieces = pieces
            if block.kind == "tool_use":
                block.input = None
            kept.append(block)
        break
    for block in kept:
        if block.kind == "thinking":
            block.signature = thinking_signature(secret, "".join(block.pieces))
    usage["output_tokens"] = max(total, 1)
    return Script(200, knobs, message_id, model, kept, stop_reason, stop_sequence, usage)


def error_body(script: Script) -> dict:
    return {"type": "error", "error": script.error}


def message_body(script: Script, message_id: str | None = None) -> dict:
    """The non-streaming answer (with a fresh id when the script is reused)."""
    content: list[dict] = []
    for block in script.blocks:
        if block.kind == "text":
            content.append({"type": "text", "text": "".join(block.pieces)})
        elif block.kind == "thinking":
            content.append({"type": "thinking", "thinking": "".join(block.pieces), "signature": block.signature})
        elif block.kind == "redacted_thinking":
            content.append({"type": "redacted_thinking", "data": block.data})
        else:
            joined = "".join(block.pieces)
            content.append({"type": "tool_use", "id": block.tool_id, "name": block.name,
                            "input": json.loads(joined) if joined and block.input is not None else {}})
    return {"id": message_id or script.message_id, "type": "message", "role": "assistant", "model": script.model,
            "content": content, "stop_reason": script.stop_reason, "stop_sequence": script.stop_sequence,
            "usage": script.usage}


def stream_head(script: Script, message_id: str | None = None) -> bytes:
    """message_start (with a fresh id when the script is reused) and a ping."""
    start_usage = {**script.usage, "output_tokens": 1}
    if "server_tool_use" in start_usage:  # (counted as the answer goes: none yet at its start)
        start_usage["server_tool_use"] = {"web_search_requests": 0}
    return encode_event("message_start", {"type": "message_start", "message": {
        "id": message_id or script.message_id, "type": "message", "role": "assistant", "model": script.model,
        "content": [], "stop_reason": None, "stop_sequence": None, "usage": start_usage}}) \
        + encode_event("ping", {"type": "ping"})


def stream_events(script: Script) -> tuple[bytes, list[bytes], bytes]:
    """(head, deltas, tail): the events before the first delta, one item per delta
    event (with its block start/stop events attached), and the closing events."""
    head = stream_head(script)
    deltas: list[bytes] = []
    pending = b""
    for index, block in enumerate(script.blocks):
        if block.kind == "text":
            start_block, delta_type, field = {"type": "text", "text": ""}, "text_delta", "text"
        elif block.kind == "thinking":
            start_block, delta_type, field = {"type": "thinking", "thinking": "", "signature": ""}, \
                "thinking_delta", "thinking"
        elif block.kind == "redacted_thinking":  # arrives whole in its start event, no deltas
            start_block, delta_type, field = {"type": "redacted_thinking", "data": block.data}, "", ""
        else:
            start_block = {"type": "tool_use", "id": block.tool_id, "name": block.name, "input": {}}
            delta_type, field = "input_json_delta", "partial_json"
        pending += encode_event("content_block_start", {"type": "content_block_start", "index": index,
                                                        "content_block": start_block})
        if block.kind == "tool_use":
            pending += encode_event("content_block_delta", {"type": "content_block_delta", "index": index,
                                                            "delta": {"type": delta_type, field: ""}})
        for piece in block.pieces:
            deltas.append(pending + encode_event("content_block_delta", {
                "type": "content_block_delta", "index": index, "delta": {"type": delta_type, field: piece}}))
            pending = b""
        if block.kind == "thinking":
            pending += encode_event("content_block_delta", {"type": "content_block_delta", "index": index,
                                                            "delta": {"type": "signature_delta",
                                                                      "signature": block.signature}})
        pending += encode_event("content_block_stop", {"type": "content_block_stop", "index": index})
    tail = pending + encode_event("message_delta", {
        "type": "message_delta", "delta": {"stop_reason": script.stop_reason, "stop_sequence": script.stop_sequence},
        "usage": {"output_tokens": script.output_tokens,
                  **({"server_tool_use": script.usage["server_tool_use"]} if "server_tool_use" in script.usage else {})}}) \
        + encode_event("message_stop", {"type": "message_stop"})
    return head, deltas, tail


def mid_stream_error() -> bytes:
    return encode_event("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
