"""Anthropic answer -> OpenAI Responses objects: output items, usage, status, the
response object, and the ``{code, message}`` of a failed response. Pure.

One Anthropic content block is one output item, in order: ``text`` a ``message``,
``thinking`` and ``redacted_thinking`` a ``reasoning`` item whose
``encrypted_content`` seals the exact block (its ``summary`` carries the thinking
text only when the key may see thinking), ``tool_use`` a ``function_call`` or a
``custom_tool_call`` named back the way the client declared it (a namespace's tool
by its own name and ``namespace``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable

from .responses_request import CUSTOM_INPUT, ToolName
from .usage import Usage

_BYTES_PER_TOKEN = 4  # reasoning tokens are not counted apart by Anthropic: estimated from the text
_CONTEXT_ERROR = re.compile(r"prompt is too long|context (window|length)|too many (input )?tokens", re.I)
_RETRY_SECONDS = re.compile(r"(?:retry|try again) in (\d+(?:\.\d+)?) ?s", re.I)
INCOMPLETE = {"max_tokens": "max_output_tokens", "model_context_window_exceeded": "max_output_tokens",
              "refusal": "content_filter"}


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class ResponseIds:
    """The ids of one response and its items, made from the gateway's request id."""

    base: str

    @classmethod
    def for_request(cls, request_id: str) -> "ResponseIds":
        return cls(request_id.removeprefix("req_"))

    @property
    def response(self) -> str:
        return "resp_" + self.base

    def item(self, kind: str, index: int) -> str:
        prefix = {"message": "msg", "reasoning": "rs", "function_call": "fc", "custom_tool_call": "ctc"}[kind]
        return f"{prefix}_{self.base}{index:03d}"


def usage_object(usage: Usage, reasoning_chars: int = 0) -> dict[str, Any]:
    """Responses usage: input counts cache reads and writes; cached_tokens the reads."""
    reasoning = min(usage.output_tokens, -(-reasoning_chars // _BYTES_PER_TOKEN)) if reasoning_chars else 0
    return {"input_tokens": usage.prompt_tokens, "input_tokens_details": {"cached_tokens": usage.cache_read},
            "output_tokens": usage.output_tokens, "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": usage.prompt_tokens + usage.output_tokens}


def status_of(stop_reason: str | None) -> tuple[str, dict | None]:
    """(status, incomplete_details) for an Anthropic stop reason."""
    reason = INCOMPLETE.get(stop_reason or "")
    return ("incomplete", {"reason": reason}) if reason else ("completed", None)


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}] if status == "completed" else []
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": content}


def reasoning_item(item_id: str, summary: str | None, encrypted: str | None) -> dict[str, Any]:
    item: dict[str, Any] = {"id": item_id, "type": "reasoning",
                            "summary": [{"type": "summary_text", "text": summary}] if summary else []}
    if encrypted is not None:
        item["encrypted_content"] = encrypted
    return item


def call_item(item_id: str, call_id: str, tool: ToolName, payload: str, status: str = "completed") -> dict[str, Any]:
    """A function_call (``payload``: the arguments JSON) or custom_tool_call (the input text)."""
    if tool.kind == "custom":
        item = {"id": item_id, "type": "custom_tool_call", "status": status, "call_id": call_id, "name": tool.name,
                "input": payload}
    else:
        item = {"id": item_id, "type": "function_call", "status": status, "call_id": call_id, "name": tool.name,
                "arguments": payload}
    if tool.namespace:
        item["namespace"] = tool.namespace
    return item


def tool_name(tools: dict[str, ToolName], name: str) -> ToolName:
    return tools.get(name) or ToolName("function", name)


def custom_input(arguments: str) -> str:
    """A custom tool's text from the Anthropic input JSON ``{"input": "..."}``."""
    try:
        value = json.loads(arguments) if arguments else {}
    except ValueError:
        return arguments
    if isinstance(value, dict) and isinstance(value.get(CUSTOM_INPUT), str):
        return value[CUSTOM_INPUT]
    return arguments


def output_items(content: list, ids: ResponseIds, tools: dict[str, ToolName], seal: Callable[[dict], str],
                 show_thinking: bool) -> tuple[list[dict], int]:
    """(the output items of a whole Anthropic answer, characters of thinking text)."""
    items, thinking_chars = [], 0
    for block in content:
        kind = block.get("type") if isinstance(block, dict) else None
        index = len(items)
        if kind == "text":
            items.append(message_item(ids.item("message", index), block.get("text", "")))
        elif kind == "thinking":
            text = block.get("thinking", "")
            thinking_chars += len(text)
            sealed = seal({"type": "thinking", "thinking": text, "signature": block.get("signature", "")})
            items.append(reasoning_item(ids.item("reasoning", index), text if show_thinking else None, sealed))
        elif kind == "redacted_thinking":
            items.append(reasoning_item(ids.item("reasoning", index), None,
                                        seal({"type": "redacted_thinking", "data": block.get("data", "")})))
        elif kind == "tool_use":
            tool = tool_name(tools, str(block.get("name", "")))
            arguments = _dumps(block.get("input") or {})
            payload = custom_input(arguments) if tool.kind == "custom" else arguments
            items.append(call_item(ids.item(f"{tool.kind}_tool_call" if tool.kind == "custom" else "function_call",
                                            index), str(block.get("id", "")), tool, payload))
    return items, thinking_chars


def response_object(ids: ResponseIds, created: int, model: str, template: dict[str, Any], status: str,
                    output: list[dict], usage: dict | None = None, error: dict | None = None,
                    incomplete: dict | None = None) -> dict[str, Any]:
    """The ``response`` object; ``template`` holds what the request said (echoed)."""
    return {"id": ids.response, "object": "response", "created_at": created, "status": status,
            "error": error, "incomplete_details": incomplete, "model": model, "output": output,
            "usage": usage, **template}


def request_echo(body: dict[str, Any]) -> dict[str, Any]:
    """What a response object repeats of its request."""
    return {"instructions": body.get("instructions") if isinstance(body.get("instructions"), str) else None,
            "max_output_tokens": body.get("max_output_tokens"),
            "parallel_tool_calls": body.get("parallel_tool_calls") is not False,
            "previous_response_id": None,
            "reasoning": body.get("reasoning") if isinstance(body.get("reasoning"), dict) else None,
            "store": False,
            "temperature": body.get("temperature", 1.0), "top_p": body.get("top_p", 1.0),
            "text": body.get("text") if isinstance(body.get("text"), dict) else {"format": {"type": "text"}},
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools") if isinstance(body.get("tools"), list) else [],
            "truncation": body.get("truncation") if isinstance(body.get("truncation"), str) else "disabled",
            "metadata": body.get("metadata") if isinstance(body.get("metadata"), dict) else {},
            "prompt_cache_key": body.get("prompt_cache_key") if isinstance(body.get("prompt_cache_key"), str)
            else None}


def failure(status: int, error_type: str | None, message: str, retry_after: str | None = None) -> dict[str, str]:
    """``response.error`` ``{code, message}`` for a failure, in the codes clients act on:
    ``insufficient_quota`` (Codex stops), ``context_length_exceeded`` (Codex compacts),
    ``rate_limit_exceeded`` with "try again in N s" (Codex waits N s), else retried."""
    if status == 402 or error_type in ("billing_error", "insufficient_quota"):
        return {"code": "insufficient_quota", "message": message}
    if _CONTEXT_ERROR.search(message):
        return {"code": "context_length_exceeded", "message": message}
    if status == 429 or error_type in ("rate_limit_error", "rate_limit_exceeded"):
        seconds = retry_after if retry_after and retry_after.isdigit() else None
        if seconds is None and (match := _RETRY_SECONDS.search(message)):
            seconds = match.group(1)
        if seconds is not None and "try again in" not in message.lower():
            message = f"{message} Please try again in {seconds} s."
        return {"code": "rate_limit_exceeded", "message": message}
    if status in (503, 529) or error_type == "overloaded_error":
        return {"code": "server_is_overloaded", "message": message}
    if status >= 500 or error_type in ("api_error", "timeout_error"):
        return {"code": "server_error", "message": message}
    return {"code": error_type or "invalid_request_error", "message": message}
