"""What the simulated upstream answers to a request: a deterministic script. Pure.

Knobs come from the simulator's defaults, overridden per request by a directive
anywhere in the prompt text, e.g. ``[sim deltas=64 gap_ms=20 fault=error_mid]``,
so they reach the simulator through any gateway and any translation.

Knobs: ttft_ms, gap_ms, deltas, delta_bytes, mode (auto|text|tool_use|thinking),
tools (tool calls per answer), fault (none|429|529|500|error_mid|drop_mid|hang|
hang_mid), fault_after (deltas before a mid-stream fault), retry_after,
input_tokens, cache_read, cache_write, cache_write_1h, redacted (redacted_thinking
blocks put before the thinking block of an answer that thinks).

Requests are checked first, as strictly as Anthropic's Messages API checks them
(``check_request``): thinking configuration, sampling parameters that thinking
forbids, message shapes, tool_use/tool_result pairing, the thinking block a tool
loop's last assistant turn must start with, and the signatures of thinking and
redacted_thinking blocks sent back. Signatures are HMACs under a secret the
simulator keeps (``thinking_signature``, ``redacted_data``), so a block that was
edited, re-serialized or made up is refused like Anthropic refuses it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from dataclasses import dataclass, fields, replace
from typing import Any

from ..protocol.sse import encode_event

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

DEFAULT_SECRET = b"cheaplm-simulator"  # plan()'s default; a SimulatorState draws a random one
_SIGNATURE_HEAD = base64.b64decode("EqSigSim")   # 6 bytes: every signature starts "EqSigSim"
_REDACTED_HEAD = base64.b64decode("EmwKSimR")    # 6 bytes: every redacted data starts "EmwKSimR"
_NONCE, _TAG = 12, 32


def _mac(secret: bytes, *parts: bytes) -> bytes:
    return hmac.new(secret, b"\0".join(parts), hashlib.sha256).digest()


def thinking_signature(secret: bytes, thinking: str) -> str:
    """The signature the simulator gives a thinking block with this text (264 base64 characters)."""
    mac = _mac(secret, b"thinking", thinking.encode("utf-8", "surrogatepass"))
    filler = b"".join(_mac(secret, b"pad", mac, bytes([i])) for i in range(5))
    return base64.b64encode(_SIGNATURE_HEAD + mac + filler).decode("ascii")


def valid_signature(secret: bytes, thinking: Any, signature: Any) -> bool:
    if not isinstance(thinking, str) or not isinstance(signature, str):
        return False
    return hmac.compare_digest(thinking_signature(secret, thinking).encode(), signature.encode("utf-8", "replace"))


def _keystream(secret: bytes, nonce: bytes, size: int) -> bytes:
    blocks = (_mac(secret, b"stream", nonce, i.to_bytes(4, "big")) for i in range(-(-size // 32)))
    return b"".join(blocks)[:size]


def redacted_data(secret: bytes, hidden: str) -> str:
    """The ``data`` of a redacted_thinking block hiding ``hidden``."""
    plain = hidden.encode("utf-8", "surrogatepass")
    nonce = _mac(secret, b"nonce", plain)[:_NONCE]
    cipher = bytes(a ^ b for a, b in zip(plain, _keystream(secret, nonce, len(plain))))
    sealed = nonce + cipher
    return base64.b64encode(_REDACTED_HEAD + sealed + _mac(secret, b"redacted", sealed)).decode("ascii")


def valid_redacted(secret: bytes, data: Any) -> bool:
    if not isinstance(data, str):
        return False
    try:
        raw = base64.b64decode(data, validate=True)
    except ValueError:
        return False
    if base64.b64encode(raw).decode("ascii") != data:  # not canonical: some bits were changed
        return False
    if not raw.startswith(_REDACTED_HEAD) or len(raw) < len(_REDACTED_HEAD) + _NONCE + _TAG:
        return False
    sealed, tag = raw[len(_REDACTED_HEAD):-_TAG], raw[-_TAG:]
    return hmac.compare_digest(tag, _mac(secret, b"redacted", sealed))


def _hidden_reasoning(serial: int, index: int) -> str:
    return f"Reasoning {serial}.{index} flagged by the safety systems and returned encrypted. " * 3


# --- Request checks ---------------------------------------------------------------------------------------

MAX_TOKENS_CEILING = 128_000  # no per-model limits: tests use arbitrary model ids
THINKING_TYPES = ("enabled", "disabled", "adaptive")
INTERLEAVED_BETA = "interleaved-thinking-2025-05-14"
_DOCS = "Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
_CONSIDERATIONS = f"{_DOCS}#important-considerations-when-using-extended-thinking"
LOOP_MESSAGE = (
    "messages.{index}.content.0.type: Expected `thinking` or `redacted_thinking`, but found `{found}`. When "
    "`thinking` is enabled, a final `assistant` message must start with a thinking block (preceeding the lastmost "
    "set of `tool_use` and `tool_result` blocks). We recommend you include thinking blocks from previous turns. To "
    "avoid this requirement, disable `thinking`. " + _DOCS)


class InvalidRequest(ValueError):
    """A request Anthropic would refuse: HTTP 400, ``invalid_request_error``, with this message."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _blocks(message: dict) -> list:
    content = message.get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return content


def _thinking_mode(body: dict) -> str:
    """'enabled', 'adaptive' or 'disabled' (absent), after checking the ``thinking`` object."""
    thinking = body.get("thinking")
    if thinking is None:
        return "disabled"
    if not isinstance(thinking, dict):
        raise InvalidRequest("thinking: Input should be a valid dictionary or object to extract fields from")
    kind = thinking.get("type")
    if kind is None:
        raise InvalidRequest("thinking: Unable to extract tag using discriminator 'type'")
    if not isinstance(kind, str) or kind not in THINKING_TYPES:
        raise InvalidRequest(f"thinking: Input tag '{kind}' found using 'type' does not match any of the expected "
                             "tags: 'enabled', 'disabled', 'adaptive'")
    if kind == "enabled":
        _required_int(thinking.get("budget_tokens"), "thinking.enabled.budget_tokens", 1024)
    return kind


def _required_int(value: Any, where: str, minimum: int) -> int:
    """A required integer field at least ``minimum``, refused in Anthropic's words."""
    if value is None:
        raise InvalidRequest(f"{where}: Field required")
    if not _is_int(value):
        raise InvalidRequest(f"{where}: Input should be a valid integer")
    if value < minimum:
        raise InvalidRequest(f"{where}: Input should be greater than or equal to {minimum}")
    return value


def _check_max_tokens(body: dict) -> int:
    max_tokens = _required_int(body.get("max_tokens"), "max_tokens", 1)
    if max_tokens > MAX_TOKENS_CEILING:
        raise InvalidRequest(f"max_tokens: {max_tokens} > {MAX_TOKENS_CEILING}, which is the maximum allowed "
                             f"number of output tokens for {body.get('model')}")
    return max_tokens


def _check_sampling(body: dict) -> None:
    """What thinking (enabled or adaptive) forbids: a temperature other than 1, top_k, a top_p below 0.95."""
    temperature, top_k, top_p = body.get("temperature"), body.get("top_k"), body.get("top_p")
    if temperature is not None and (not _number(temperature) or temperature != 1):
        raise InvalidRequest(f"`temperature` may only be set to 1 when thinking is enabled. {_CONSIDERATIONS}")
    if top_k is not None:
        raise InvalidRequest(f"`top_k` must be unset when thinking is enabled. {_CONSIDERATIONS}")
    if top_p is not None and (not _number(top_p) or top_p < 0.95):
        raise InvalidRequest(f"`top_p` must be greater than or equal to 0.95 or unset when thinking is enabled. "
                             f"{_CONSIDERATIONS}")


def _check_messages(messages: Any, secret: bytes) -> list[tuple[int, dict]]:
    """Shapes and signatures; returns the conversation (index, message) without role ``system`` messages."""
    if messages is None:
        raise InvalidRequest("messages: Field required")
    if not isinstance(messages, list):
        raise InvalidRequest("messages: Input should be a valid list")
    if not messages:
        raise InvalidRequest("messages: at least one message is required")
    conversation = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequest(f"messages.{i}: Input should be a valid dictionary")
        role = message.get("role")
        if role not in ("user", "assistant", "system"):  # recent Claude Code sends mid-conversation system
            raise InvalidRequest(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        content = message.get("content")
        if content is None:
            raise InvalidRequest(f"messages.{i}.content: Field required")
        if not isinstance(content, (str, list)):
            raise InvalidRequest(f"messages.{i}.content: Input should be a valid list")
        if not content and not (role == "assistant" and i == len(messages) - 1):
            raise InvalidRequest(f"messages.{i}: all messages must have non-empty content except for the "
                                 "optional final assistant message")
        for j, block in enumerate(_blocks(message)):
            where = f"messages.{i}.content.{j}"
            if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                raise InvalidRequest(f"{where}: Input should be a valid dictionary with a `type`")
            kind = block["type"]
            if kind == "text":
                text = block.get("text")
                if not isinstance(text, str):
                    raise InvalidRequest(f"{where}.text.text: Field required")
                if not text:
                    raise InvalidRequest("messages: text content blocks must be non-empty")
                if not text.strip():
                    raise InvalidRequest("messages: text content blocks must contain non-whitespace text")
            elif kind == "thinking":
                for field in ("thinking", "signature"):
                    if field not in block:
                        raise InvalidRequest(f"{where}.thinking.{field}: Field required")
                if not valid_signature(secret, block["thinking"], block["signature"]):
                    raise InvalidRequest(f"{where}: Invalid `signature` in `thinking` block")
            elif kind == "redacted_thinking":
                if "data" not in block:
                    raise InvalidRequest(f"{where}.redacted_thinking.data: Field required")
                if not valid_redacted(secret, block["data"]):
                    raise InvalidRequest(f"{where}: Invalid `data` in `redacted_thinking` block")
            elif kind == "tool_use" and not (isinstance(block.get("id"), str) and isinstance(block.get("name"), str)):
                raise InvalidRequest(f"{where}.tool_use: `id` and `name` are required")
            elif kind == "tool_result" and not isinstance(block.get("tool_use_id"), str):
                raise InvalidRequest(f"{where}.tool_result.tool_use_id: Field required")
        if role != "system":
            conversation.append((i, message))
    return conversation


def _ids(message: dict, kind: str, key: str) -> list[tuple[int, str]]:
    return [(j, b[key]) for j, b in enumerate(_blocks(message)) if b["type"] == kind]


def _check_tool_pairs(conversation: list[tuple[int, dict]]) -> None:
    """Every tool_use answered by a tool_result in the next message, and no tool_result without its tool_use
    (mid-conversation ``system`` messages are skipped)."""
    for k, (i, message) in enumerate(conversation):
        if message["role"] == "assistant":
            uses = [tool_id for _, tool_id in _ids(message, "tool_use", "id")]
            if uses and k + 1 < len(conversation):
                following = conversation[k + 1][1]
                answered = {tool_id for _, tool_id in _ids(following, "tool_result", "tool_use_id")} \
                    if following["role"] == "user" else set()
                missing = [tool_id for tool_id in uses if tool_id not in answered]
                if missing:
                    raise InvalidRequest(
                        f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                        f"{', '.join(missing)}. Each `tool_use` block must have a corresponding `tool_result` "
                        "block in the next message.")
        else:
            previous = conversation[k - 1][1] if k else None
            asked = {tool_id for _, tool_id in _ids(previous, "tool_use", "id")} \
                if previous is not None and previous["role"] == "assistant" else set()
            for j, tool_id in _ids(message, "tool_result", "tool_use_id"):
                if tool_id not in asked:
                    raise InvalidRequest(
                        f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: "
                        f"{tool_id}. Each `tool_result` block must have a corresponding `tool_use` block in the "
                        "previous message.")


def _check_tool_loop(conversation: list[tuple[int, dict]]) -> None:
    """With thinking enabled, a final user message of tool results needs the assistant message before it to
    start with its (signed) thinking block."""
    if len(conversation) < 2:
        return
    (_, last), (i, before) = conversation[-1], conversation[-2]
    if last["role"] != "user" or before["role"] != "assistant" or not _ids(last, "tool_result", "tool_use_id"):
        return
    blocks = _blocks(before)
    found = blocks[0]["type"] if blocks else "nothing"
    if found not in ("thinking", "redacted_thinking"):
        raise InvalidRequest(LOOP_MESSAGE.format(index=i, found=found))


def _check_tools(tools: Any) -> None:
    """A list of tools; a custom tool (no versioned ``type``) needs a name and an object
    ``input_schema`` whose ``properties``, if any, is an object."""
    if tools is None:
        return
    if not isinstance(tools, list):
        raise InvalidRequest("tools: Input should be a valid list")
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise InvalidRequest(f"tools.{i}: Input should be a valid dictionary")
        if isinstance(tool.get("type"), str) and tool["type"] != "custom":
            continue  # a server tool (web_search_20250305, ...)
        schema = tool.get("input_schema")
        if not isinstance(tool.get("name"), str) or not isinstance(schema, dict):
            raise InvalidRequest(f"tools.{i}: a custom tool needs a name and an input_schema object")
        if not isinstance(schema.get("properties", {}), dict):
            raise InvalidRequest(f"tools.{i}.input_schema.properties: Input should be a valid dictionary")


def check_request(body: dict, secret: bytes, *, count_tokens: bool = False, betas: str = "") -> None:
    """Raise ``InvalidRequest`` for what Anthropic's Messages API (or count_tokens, with ``count_tokens``)
    refuses. ``betas`` is the anthropic-beta header: interleaved thinking lifts budget_tokens < max_tokens.

    Unknown top-level fields (context_management, output_config, metadata, service_tier, ...), unknown
    content block types and mid-conversation ``system`` messages pass, as they do upstream."""
    max_tokens = None if count_tokens else _check_max_tokens(body)
    mode = _thinking_mode(body)
    system = body.get("system")
    if system is not None and not isinstance(system, (str, list)):
        raise InvalidRequest("system: Input should be a valid list")
    if mode == "enabled" and max_tokens is not None and max_tokens <= body["thinking"]["budget_tokens"] \
            and INTERLEAVED_BETA not in (b.strip() for b in betas.split(",")):
        raise InvalidRequest("`max_tokens` must be greater than `thinking.budget_tokens`. "
                             f"{_DOCS}#max-tokens-and-context-window-size")
    if mode != "disabled" and not count_tokens:
        _check_sampling(body)
    _check_tools(body.get("tools"))
    choice = body.get("tool_choice")
    if mode == "enabled" and isinstance(choice, dict) and choice.get("type") in ("any", "tool"):
        raise InvalidRequest("Thinking may not be enabled when tool_choice forces tool use.")
    conversation = _check_messages(body.get("messages"), secret)
    _check_tool_pairs(conversation)
    if mode == "enabled":  # adaptive thinking may skip thinking at any step, so it cannot require the block
        _check_tool_loop(conversation)


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
    tools = [t for t in (body.get("tools") or []) if isinstance(t, dict) and t.get("name")]
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
            blocks.append(Block("redacted_thinking", [], data=redacted_data(secret, _hidden_reasoning(serial, i))))
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
        "usage": {"output_tokens": script.output_tokens}}) + encode_event("message_stop", {"type": "message_stop"})
    return head, deltas, tail


def mid_stream_error() -> bytes:
    return encode_event("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
