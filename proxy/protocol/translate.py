"""OpenAI Chat Completions <-> Anthropic Messages: requests, responses, usage, stop reasons. Pure.

What would change the answer and cannot be mapped honestly (n > 1, json_object
output, non-function tools, unknown content parts) is refused with a
TranslationError, which the adaptor answers with 400. Sampling hints without an
Anthropic equivalent (seed, logprobs, penalties, logit_bias) and parameters this
gateway does not know are ignored, as protocol.md's table says, so newer clients
keep working.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

from .usage import Usage

FINISH_REASONS = {
    "end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop",
    "max_tokens": "length", "model_context_window_exceeded": "length",
    "tool_use": "tool_calls", "refusal": "content_filter",
}
# reasoning_effort -> thinking budget (clamped below max_tokens, at least 1024)
THINKING_BUDGETS = {"minimal": 1024, "low": 1024, "medium": 4096, "high": 16384}
MIN_THINKING_BUDGET = 1024
_DATA_URL = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^,;]*)*?);base64,(?P<data>.*)$", re.S)


class TranslationError(ValueError):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def finish_reason(stop_reason: str | None) -> str:
    return FINISH_REASONS.get(stop_reason or "end_turn", "stop")


def openai_usage(usage: Usage) -> dict[str, Any]:
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.output_tokens,
            "total_tokens": usage.prompt_tokens + usage.output_tokens,
            "prompt_tokens_details": {"cached_tokens": usage.cache_read}}


# -- request ------------------------------------------------------------------------------

def _text_of(content: Any, where: str) -> str:
    """System/developer/tool content: a string or a list of text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise TranslationError(f"{where}: only text parts are supported here", "messages")
            texts.append(part["text"])
        return "\n".join(texts)
    raise TranslationError(f"{where}: content must be a string or a list of parts", "messages")


def _image(part: dict, where: str) -> dict:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image if isinstance(image, str) else None
    if not isinstance(url, str) or not url:
        raise TranslationError(f"{where}: image_url.url is required", "messages")
    if url.startswith("data:"):
        match = _DATA_URL.match(url)
        if not match or not match.group("type"):
            raise TranslationError(f"{where}: image data URLs must look like data:image/png;base64,...",
                                   "messages")
        return {"type": "image", "source": {"type": "base64", "media_type": match.group("type"),
                                            "data": match.group("data")}}
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise TranslationError(f"{where}: image URLs must be http(s) or data: URLs", "messages")


def _content_blocks(content: Any, where: str, images: bool) -> list[dict]:
    """A message's content (string, parts or null) as Anthropic blocks, empty text dropped.

    User content may hold images; assistant content holds text (refusal parts are
    the model's own words already carried in the text, and are skipped)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise TranslationError(f"{where}: content must be a string, a list of parts or null", "messages")
    blocks = []
    for i, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            if part["text"]:
                blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url" and images:
            blocks.append(_image(part, f"{where}.content.{i}"))
        elif kind == "refusal" and not images:
            continue
        else:
            raise TranslationError(f"{where}.content.{i}: unsupported content part type {kind!r}", "messages")
    return blocks


def _assistant_blocks(message: dict, where: str) -> list[dict]:
    blocks = _content_blocks(message.get("content"), where, images=False)
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise TranslationError(f"{where}.tool_calls must be a list", "messages")
    for j, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not call.get("id"):
            raise TranslationError(f"{where}.tool_calls.{j}: needs id and function.name", "messages")
        arguments = function.get("arguments") or "{}"
        try:
            # orjson: what it reads it can write back (no lone surrogates, no NaN, bounded depth)
            parsed = orjson.loads(arguments) if isinstance(arguments, str) else arguments
        except orjson.JSONDecodeError:
            raise TranslationError(f"{where}.tool_calls.{j}.function.arguments is not valid JSON",
                                   "messages") from None
        if not isinstance(parsed, dict):
            raise TranslationError(f"{where}.tool_calls.{j}.function.arguments must be a JSON object", "messages")
        blocks.append({"type": "tool_use", "id": call["id"], "name": function["name"], "input": parsed})
    return blocks


def _tool_result(message: dict, where: str) -> dict:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise TranslationError(f"{where}: tool messages need tool_call_id", "messages")
    content = message.get("content")
    if isinstance(content, list):
        blocks = _content_blocks(content, where, images=True)
        return {"type": "tool_result", "tool_use_id": call_id, "content": blocks}
    return {"type": "tool_result", "tool_use_id": call_id, "content": _text_of(content, where)}


def translate_messages(messages: Any) -> tuple[str, list[dict]]:
    """(system text, Anthropic messages). System/developer messages are hoisted in order;
    consecutive tool results become one user message with the results first; empty text
    blocks are dropped; consecutive same-role messages are merged."""
    if not isinstance(messages, list) or not messages:
        raise TranslationError("messages: a non-empty list is required", "messages")
    system: list[str] = []
    out: list[dict] = []

    def append(role: str, blocks: list[dict]) -> None:
        if not blocks:
            return
        if out and out[-1]["role"] == role:
            previous = out[-1]["content"]
            if role == "user" and blocks[0]["type"] == "tool_result":
                # tool results must come first in their user message
                results = [b for b in previous if b["type"] == "tool_result"]
                others = [b for b in previous if b["type"] != "tool_result"]
                out[-1]["content"] = results + blocks + others
            else:
                previous.extend(blocks)
        else:
            out.append({"role": role, "content": blocks})

    for i, message in enumerate(messages):
        where = f"messages.{i}"
        if not isinstance(message, dict):
            raise TranslationError(f"{where}: must be an object", "messages")
        role = message.get("role")
        if role in ("system", "developer"):
            text = _text_of(message.get("content"), where)
            if text:
                system.append(text)
        elif role == "user":
            append("user", _content_blocks(message.get("content"), where, images=True))
        elif role == "assistant":
            append("assistant", _assistant_blocks(message, where))
        elif role == "tool":
            append("user", [_tool_result(message, where)])
        else:
            raise TranslationError(f"{where}: unsupported role {role!r}", "messages")
    if not out:
        raise TranslationError("messages: at least one user or assistant message with content is required",
                               "messages")
    return "\n".join(system), out


def _tools(tools: Any) -> list[dict]:
    if not isinstance(tools, list):
        raise TranslationError("tools: must be a list", "tools")
    out = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise TranslationError(f"tools.{i}: only function tools are supported", "tools")
        function = tool.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
            raise TranslationError(f"tools.{i}.function.name is required", "tools")
        parameters = function.get("parameters")
        schema = dict(parameters) if isinstance(parameters, dict) else {"type": "object", "properties": {}}
        schema.setdefault("type", "object")  # never the tool's own "type" ("function")
        entry = {"name": function["name"], "input_schema": schema}
        if isinstance(function.get("description"), str):
            entry["description"] = function["description"]
        if function.get("strict") is True:
            entry["strict"] = True
        out.append(entry)
    return out


def _tool_choice(choice: Any) -> dict:
    if choice in ("auto", None):
        return {"type": "auto"}
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("function"), dict) \
            and isinstance(choice["function"].get("name"), str):
        return {"type": "tool", "name": choice["function"]["name"]}
    raise TranslationError("tool_choice: expected auto, required, none or {type: function, function: {name}}",
                           "tool_choice")


def _number(body: dict, name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise TranslationError(f"{name}: must be a number from {low} to {high}", name)
    return value


def copy_sampling(body: dict, out: dict) -> None:
    """OpenAI temperature (0-2, capped at Anthropic's 1) and top_p."""
    temperature = _number(body, "temperature", 0, 2)
    if temperature is not None:
        out["temperature"] = min(temperature, 1)
    top_p = _number(body, "top_p", 0, 1)
    if top_p is not None:
        out["top_p"] = top_p


def drop_sampling_for_thinking(out: dict) -> None:
    out.pop("temperature", None)  # thinking requires the default temperature
    if out.get("top_p", 1) < 0.95:
        out.pop("top_p")


def translate_request(body: dict, upstream_model: str, max_output: int, thinking_supported: bool) -> dict:
    """An OpenAI Chat Completions body -> an Anthropic Messages body. ``max_output`` is
    the default ``max_tokens``; a larger value is translated as asked (the caller
    applies the model's output cap, clamping or refusing it)."""
    n = body.get("n")
    if n is not None and n != 1:
        raise TranslationError("n: only n=1 is supported (one choice per request)", "n")
    system, messages = translate_messages(body.get("messages"))
    out: dict[str, Any] = {"model": upstream_model, "messages": messages}
    if system:
        out["system"] = system

    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    name = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
    if limit is None:
        limit = max_output
    elif isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise TranslationError(f"{name}: must be a positive integer", name)
    out["max_tokens"] = limit

    stop = body.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise TranslationError("stop: must be a string or a list of strings", "stop")
        kept = [s for s in stops if s.strip()]
        if kept:
            out["stop_sequences"] = kept

    copy_sampling(body, out)

    if body.get("tools"):
        out["tools"] = _tools(body["tools"])
        out["tool_choice"] = _tool_choice(body.get("tool_choice"))
        if body.get("parallel_tool_calls") is False and out["tool_choice"]["type"] != "none":
            out["tool_choice"]["disable_parallel_tool_use"] = True
    elif body.get("tool_choice") not in (None, "none", "auto"):
        raise TranslationError("tool_choice: given without tools", "tool_choice")

    user = body.get("user")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}

    effort = body.get("reasoning_effort")
    if effort is not None and not isinstance(effort, str):
        raise TranslationError("reasoning_effort: must be a string", "reasoning_effort")
    if effort is not None and effort != "none":
        if effort not in THINKING_BUDGETS:
            raise TranslationError(f"reasoning_effort: expected one of {', '.join(THINKING_BUDGETS)}",
                                   "reasoning_effort")
        if not thinking_supported:
            raise TranslationError("reasoning_effort: this model does not support extended thinking",
                                   "reasoning_effort")
        if out["max_tokens"] <= MIN_THINKING_BUDGET:
            raise TranslationError(f"{name}: must be above {MIN_THINKING_BUDGET} to leave room for reasoning", name)
        out["thinking"] = {"type": "enabled",
                           "budget_tokens": max(MIN_THINKING_BUDGET,
                                                min(THINKING_BUDGETS[effort], out["max_tokens"] - 1))}
        drop_sampling_for_thinking(out)
        if out.get("tool_choice", {}).get("type") in ("any", "tool"):
            raise TranslationError("tool_choice: with reasoning_effort only auto or none are possible",
                                   "tool_choice")

    response_format = body.get("response_format")
    if response_format is not None:
        kind = response_format.get("type") if isinstance(response_format, dict) else None
        if kind == "json_schema":
            spec = response_format.get("json_schema")
            if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
                raise TranslationError("response_format.json_schema.schema is required", "response_format")
            out["output_config"] = {"format": {"type": "json_schema", "schema": spec["schema"]}}
        elif kind == "json_object":
            raise TranslationError(
                "response_format json_object cannot be guaranteed by this upstream; send "
                "response_format {type: json_schema, json_schema: {schema: ...}} instead", "response_format")
        elif kind != "text":
            raise TranslationError("response_format.type: expected text or json_schema", "response_format")
    return out


# -- response -----------------------------------------------------------------------------

def translate_response(message: dict, client_model: str, created: int) -> dict:
    """An Anthropic message -> a chat.completion object."""
    texts, reasoning, calls = [], [], []
    for block in message.get("content") or []:
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text", ""))
        elif kind == "thinking":
            reasoning.append(block.get("thinking", ""))
        elif kind == "tool_use":
            calls.append({"id": block.get("id"), "type": "function",
                          "function": {"name": block.get("name"),
                                       "arguments": json.dumps(block.get("input") or {}, ensure_ascii=False)}})
    out_message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None,
                                   "refusal": None}
    if calls:
        out_message["tool_calls"] = calls
    if reasoning:
        out_message["reasoning_content"] = "".join(reasoning)
    usage = Usage().merged(message.get("usage") or {})
    return {"id": "chatcmpl-" + str(message.get("id", "")), "object": "chat.completion", "created": created,
            "model": client_model, "system_fingerprint": None,
            "choices": [{"index": 0, "message": out_message, "logprobs": None,
                         "finish_reason": finish_reason(message.get("stop_reason"))}],
            "usage": openai_usage(usage)}
