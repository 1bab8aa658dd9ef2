"""Anthropic's request rules, as strictly as its Messages API checks them: thinking
configuration, sampling parameters that thinking forbids, message shapes, tool_use /
tool_result pairing, the thinking block a tool loop's last assistant turn must start
with, and the signatures of thinking blocks sent back. Pure."""

from __future__ import annotations

from typing import Any

from .signatures import valid_redacted, valid_signature

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
            uses = tool.get("max_uses")  # a server tool (web_search_20250305, ...)
            if uses is not None and (not isinstance(uses, int) or isinstance(uses, bool) or uses < 1):
                raise InvalidRequest(f"tools.{i}.max_uses: Input should be greater than or equal to 1")
            continue
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
