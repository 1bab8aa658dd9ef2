"""OpenAI Responses request -> Anthropic Messages request. Pure.

What coding agents send (protocol.md section 5): ``input`` as a string or the whole
history as items on every turn, ``instructions``, tools (functions, custom tools,
namespaces of both, hosted tools), ``reasoning`` and the rest. The items of one
assistant turn (reasoning, assistant messages, function and custom tool calls) become
one assistant message, their blocks in the order the items came; tool outputs and user
messages become user messages, tool results first. A reasoning item's
``encrypted_content`` is opened by the caller's ``open_reasoning`` into the exact
signed thinking block it was sealed from; one that does not open is dropped and
counted. What cannot be served honestly is a ``TranslationError`` (a 400); hosted tools
this gateway does not run are dropped and named in ``Translated.dropped_tools``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import orjson

from .translate import MIN_THINKING_BUDGET, TranslationError, _image, copy_sampling, drop_sampling_for_thinking

# reasoning.effort -> thinking budget (clamped below max_tokens); "none" or no effort: no thinking
THINKING_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 32000}
NAMESPACE_SEPARATOR = "__"
CUSTOM_INPUT = "input"  # a custom (freeform) tool's text, as the one property of its Anthropic input
_ASSISTANT_ITEMS = frozenset({"reasoning", "function_call", "custom_tool_call"})
_REFUSED_FIELDS = {
    "previous_response_id": "previous_response_id is not supported: this gateway stores no responses. Send the "
                            "whole conversation in input (with store: false, as Codex does).",
    "conversation": "conversation is not supported: this gateway stores no conversations. Send the whole "
                    "conversation in input.",
    "prompt": "prompt (a stored prompt template) is not supported: send instructions and input instead.",
    "background": "background mode is not supported: this gateway stores no responses.",
}


@dataclass(frozen=True)
class ToolName:
    """How a flattened Anthropic tool name is given back to the client."""

    kind: str                 # function | custom
    name: str                 # the name inside its namespace (or the name)
    namespace: str | None = None


@dataclass
class Translated:
    body: dict[str, Any]
    tools: dict[str, ToolName] = field(default_factory=dict)  # Anthropic tool name -> the client's
    dropped_tools: list[str] = field(default_factory=list)    # hosted tool types not served
    dropped_reasoning: int = 0                                 # reasoning items that did not open
    thinking_note: str | None = None                           # why reasoning was not turned into thinking


def flat_name(name: str, namespace: str | None) -> str:
    return f"{namespace}{NAMESPACE_SEPARATOR}{name}" if namespace else name


# -- content ----------------------------------------------------------------------------------

def _text_part(part: dict, where: str) -> str:
    text = part.get("text")
    if not isinstance(text, str):
        raise TranslationError(f"{where}.text: must be a string", "input")
    return text


def _input_image(part: dict, where: str) -> dict:
    url = part.get("image_url")
    if isinstance(url, dict):
        url = url.get("url")
    if not isinstance(url, str) or not url:
        if part.get("file_id"):
            raise TranslationError(f"{where}: input_image by file_id is not supported (this gateway stores no "
                                   "files); send a data: URL", "input")
        raise TranslationError(f"{where}.image_url: required", "input")
    return _image({"image_url": url}, where)


def _parts(content: Any, where: str, role: str) -> list[dict]:
    """A message's content (string or parts) as Anthropic blocks, empty text dropped."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise TranslationError(f"{where}.content: must be a string or a list of parts", "input")
    blocks = []
    for i, part in enumerate(content):
        at = f"{where}.content.{i}"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text", "summary_text"):
            text = _text_part(part, at)
            if text:
                blocks.append({"type": "text", "text": text})
        elif kind == "input_image" and role == "user":
            blocks.append(_input_image(part, at))
        elif kind == "refusal" and role == "assistant":
            continue  # the model's own refusal, already said in its text
        else:
            raise TranslationError(f"{at}: unsupported content part type {kind!r} in a {role} message", "input")
    return blocks


def _tool_output(output: Any, where: str) -> str | list[dict]:
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        blocks = _parts(output, where, "user")
        return blocks
    raise TranslationError(f"{where}.output: must be a string or a list of input_text / input_image", "input")


def _arguments(arguments: Any, where: str) -> dict:
    if arguments is None or arguments == "":
        return {}
    try:
        value = orjson.loads(arguments) if isinstance(arguments, str) else arguments
    except orjson.JSONDecodeError:
        raise TranslationError(f"{where}.arguments: not valid JSON", "input") from None
    if not isinstance(value, dict):
        raise TranslationError(f"{where}.arguments: must be a JSON object", "input")
    return value


def _call_id(item: dict, where: str) -> str:
    call_id = item.get("call_id")
    if not isinstance(call_id, str) or not call_id:
        raise TranslationError(f"{where}.call_id: required", "input")
    return call_id


# -- the conversation -------------------------------------------------------------------------

class _Conversation:
    """Anthropic messages built item by item: same-role neighbours merge, tool results
    lead their user message."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.system: list[str] = []
        self.seen_user = False

    def add(self, role: str, blocks: list[dict]) -> None:
        if not blocks:
            return
        if role == "user":
            self.seen_user = True
        if self.messages and self.messages[-1]["role"] == role:
            previous = self.messages[-1]["content"]
            if role == "user" and blocks[0]["type"] == "tool_result":
                results = [b for b in previous if b["type"] == "tool_result"]
                others = [b for b in previous if b["type"] != "tool_result"]
                self.messages[-1]["content"] = results + blocks + others
            else:
                previous.extend(blocks)
        else:
            self.messages.append({"role": role, "content": list(blocks)})


def _item(conversation: _Conversation, item: Any, where: str, open_reasoning: Callable[[Any], dict | None],
          translated: Translated) -> None:
    if not isinstance(item, dict):
        raise TranslationError(f"{where}: must be an object", "input")
    kind = item.get("type")
    if kind is None and "role" in item:
        kind = "message"
    if kind == "message":
        role = item.get("role")
        if role in ("system", "developer"):
            blocks = _parts(item.get("content"), where, "user")
            if not conversation.seen_user:
                # only text can go into system; an image before the first user turn is refused below
                if any(b["type"] != "text" for b in blocks):
                    raise TranslationError(f"{where}: a {role} message may hold text only", "input")
                conversation.system.extend(b["text"] for b in blocks)
            else:  # the system prompt is fixed by now: later instructions are the user's words
                conversation.add("user", blocks)
        elif role in ("user", "assistant"):
            conversation.add(role, _parts(item.get("content"), where, role))
        else:
            raise TranslationError(f"{where}.role: unsupported role {role!r}", "input")
    elif kind == "reasoning":
        block = open_reasoning(item.get("encrypted_content"))
        if block is None:
            translated.dropped_reasoning += 1
        else:
            conversation.add("assistant", [block])
    elif kind == "function_call":
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise TranslationError(f"{where}.name: required", "input")
        namespace = item.get("namespace") if isinstance(item.get("namespace"), str) else None
        conversation.add("assistant", [{"type": "tool_use", "id": _call_id(item, where),
                                        "name": flat_name(name, namespace),
                                        "input": _arguments(item.get("arguments"), where)}])
    elif kind == "custom_tool_call":
        name = item.get("name")
        text = item.get("input")
        if not isinstance(name, str) or not name or not isinstance(text, str):
            raise TranslationError(f"{where}: a custom_tool_call needs name and input (a string)", "input")
        namespace = item.get("namespace") if isinstance(item.get("namespace"), str) else None
        conversation.add("assistant", [{"type": "tool_use", "id": _call_id(item, where),
                                        "name": flat_name(name, namespace), "input": {CUSTOM_INPUT: text}}])
    elif kind in ("function_call_output", "custom_tool_call_output"):
        conversation.add("user", [{"type": "tool_result", "tool_use_id": _call_id(item, where),
                                   "content": _tool_output(item.get("output"), where)}])
    elif kind == "item_reference":
        raise TranslationError(f"{where}: item_reference is not supported (this gateway stores no items); send "
                               "the item itself", "input")
    else:
        raise TranslationError(f"{where}.type: unsupported input item type {kind!r}", "input")


def translate_input(value: Any, open_reasoning: Callable[[Any], dict | None],
                    translated: Translated) -> _Conversation:
    conversation = _Conversation()
    if isinstance(value, str):
        conversation.add("user", [{"type": "text", "text": value}] if value else [])
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _item(conversation, item, f"input.{i}", open_reasoning, translated)
    else:
        raise TranslationError("input: required, a string or a list of items", "input")
    if not conversation.messages:
        raise TranslationError("input: at least one user or assistant message with content is required", "input")
    return conversation


# -- tools ------------------------------------------------------------------------------------

def _function_tool(tool: dict, where: str, namespace: str | None, context: str | None) -> tuple[dict, ToolName]:
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise TranslationError(f"{where}.name: required", "tools")
    description = tool.get("description") if isinstance(tool.get("description"), str) else None
    if context:
        description = f"{description}\n\n({context})" if description else f"({context})"
    if tool.get("type") == "custom":
        fmt = tool.get("format")
        if isinstance(fmt, dict) and fmt.get("type") == "grammar" and isinstance(fmt.get("definition"), str):
            rule = f"The input must follow this {fmt.get('syntax', '')} grammar:\n{fmt['definition']}"
            description = f"{description}\n\n{rule}" if description else rule
        schema = {"type": "object", "properties": {CUSTOM_INPUT: {"type": "string", "description":
                                                                 "The tool's input, as free text"}},
                  "required": [CUSTOM_INPUT]}
        kind = "custom"
    else:
        parameters = tool.get("parameters")
        schema = dict(parameters) if isinstance(parameters, dict) else {"type": "object", "properties": {}}
        schema.setdefault("type", "object")
        kind = "function"
    entry: dict[str, Any] = {"name": flat_name(name, namespace), "input_schema": schema}
    if description:
        entry["description"] = description
    if kind == "function" and tool.get("strict") is True:
        entry["strict"] = True
    return entry, ToolName(kind, name, namespace)


def translate_tools(tools: Any, translated: Translated) -> list[dict]:
    if not isinstance(tools, list):
        raise TranslationError("tools: must be a list", "tools")
    out: list[dict] = []
    for i, tool in enumerate(tools):
        where = f"tools.{i}"
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind in ("function", "custom"):
            pairs = [_function_tool(tool, where, None, None)]
        elif kind == "namespace":
            namespace = tool.get("name")
            inner = tool.get("tools")
            if not isinstance(namespace, str) or not namespace or not isinstance(inner, list):
                raise TranslationError(f"{where}: a namespace needs a name and a list of tools", "tools")
            about = tool.get("description")
            context = f"in {namespace}: {about}" if isinstance(about, str) and about else None
            pairs = []
            for j, member in enumerate(inner):
                if not isinstance(member, dict) or member.get("type") not in ("function", "custom"):
                    raise TranslationError(f"{where}.tools.{j}: a namespace holds function and custom tools",
                                           "tools")
                pairs.append(_function_tool(member, f"{where}.tools.{j}", namespace, context))
        elif isinstance(kind, str):
            translated.dropped_tools.append(kind)  # hosted tools (web_search, file_search, ...): not served here
            continue
        else:
            raise TranslationError(f"{where}.type: required", "tools")
        for entry, name in pairs:
            if entry["name"] in translated.tools:
                raise TranslationError(f"{where}: tool name {entry['name']!r} is given twice (a namespace's tools "
                                       f"are named namespace{NAMESPACE_SEPARATOR}name)", "tools")
            translated.tools[entry["name"]] = name
            out.append(entry)
    return out


def _tool_choice(choice: Any, tools: dict[str, ToolName]) -> dict | None:
    if choice in (None, "auto"):
        return {"type": "auto"}
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    if isinstance(choice, dict):
        kind = choice.get("type")
        if kind in ("function", "custom") and isinstance(choice.get("name"), str):
            namespace = choice.get("namespace") if isinstance(choice.get("namespace"), str) else None
            name = flat_name(choice["name"], namespace)
            if name not in tools:
                raise TranslationError(f"tool_choice: no tool named {choice['name']!r}", "tool_choice")
            return {"type": "tool", "name": name}
        if kind == "allowed_tools":
            return {"type": "any"} if choice.get("mode") == "required" else {"type": "auto"}
        if isinstance(kind, str) and kind not in ("function", "custom"):
            return None  # a hosted tool forced: it is not served here
    raise TranslationError("tool_choice: expected auto, required, none or {type: function, name}", "tool_choice")


# -- the request ------------------------------------------------------------------------------

def _refuse_stateful(body: dict) -> None:
    for name, message in _REFUSED_FIELDS.items():
        if body.get(name) not in (None, False):
            raise TranslationError(message, name)


def _object(body: dict, name: str) -> dict | None:
    value = body.get(name)
    if value is not None and not isinstance(value, dict):
        raise TranslationError(f"{name}: must be an object", name)
    return value


def _text_format(body: dict, out: dict) -> None:
    text = _object(body, "text")
    if text is None:
        return
    fmt = text.get("format")
    if fmt is None:
        return
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "json_schema":
        if not isinstance(fmt.get("schema"), dict):
            raise TranslationError("text.format.schema: required for json_schema", "text")
        out["output_config"] = {"format": {"type": "json_schema", "schema": fmt["schema"]}}
    elif kind == "json_object":
        raise TranslationError("text.format json_object cannot be guaranteed by this upstream; send "
                               "text.format {type: json_schema, schema: ...} instead", "text")
    elif kind != "text":
        raise TranslationError("text.format.type: expected text or json_schema", "text")


def _thinking(body: dict, out: dict, thinking_supported: bool, translated: Translated) -> None:
    reasoning = _object(body, "reasoning")
    if reasoning is None:
        return
    effort = reasoning.get("effort")
    if effort is None or effort == "none":
        return
    if effort not in THINKING_BUDGETS:
        raise TranslationError(f"reasoning.effort: expected one of none, {', '.join(THINKING_BUDGETS)}", "reasoning")
    # Clients send an effort to every model: where thinking cannot be served the request
    # is served without it (and says so in a header) rather than refused.
    if not thinking_supported:
        translated.thinking_note = "unsupported"
        return
    if out["max_tokens"] <= MIN_THINKING_BUDGET:
        translated.thinking_note = "max_output_tokens"
        return
    if out.get("tool_choice", {}).get("type") in ("any", "tool"):
        translated.thinking_note = "tool_choice"
        return
    # at most half the output cap (Codex sends none, so the cap is the model's): room is left for the answer
    budget = max(MIN_THINKING_BUDGET, min(THINKING_BUDGETS[effort], out["max_tokens"] // 2))
    out["thinking"] = {"type": "enabled", "budget_tokens": min(budget, out["max_tokens"] - 1)}
    drop_sampling_for_thinking(out)


def translate_responses_request(body: dict, upstream_model: str, max_output: int, thinking_supported: bool,
                                open_reasoning: Callable[[Any], dict | None]) -> Translated:
    """A Responses body -> an Anthropic Messages body (``max_output`` is the default
    ``max_tokens``: Codex sends no ``max_output_tokens``)."""
    _refuse_stateful(body)
    translated = Translated({})
    conversation = translate_input(body.get("input"), open_reasoning, translated)
    out: dict[str, Any] = {"model": upstream_model, "messages": conversation.messages}
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise TranslationError("instructions: must be a string", "instructions")
    system = [instructions] if instructions else []
    system += [text for text in conversation.system if text]
    if system:
        out["system"] = "\n\n".join(system)

    limit = body.get("max_output_tokens")
    if limit is None:
        limit = max_output
    elif isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise TranslationError("max_output_tokens: must be a positive integer", "max_output_tokens")
    out["max_tokens"] = limit

    copy_sampling(body, out)

    if body.get("tools"):
        tools = translate_tools(body["tools"], translated)
        choice = _tool_choice(body.get("tool_choice"), translated.tools) if tools else None
        if tools:
            out["tools"] = tools
            out["tool_choice"] = choice or {"type": "auto"}
            if body.get("parallel_tool_calls") is False and out["tool_choice"]["type"] != "none":
                out["tool_choice"]["disable_parallel_tool_use"] = True
    elif body.get("tool_choice") not in (None, "none", "auto"):
        raise TranslationError("tool_choice: given without tools", "tool_choice")

    user = body.get("safety_identifier") or body.get("user")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}
    _thinking(body, out, thinking_supported, translated)
    _text_format(body, out)
    translated.body = out
    return translated
