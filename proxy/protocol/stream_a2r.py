"""Anthropic stream events -> OpenAI Responses stream events. A pure state machine.

``message_start`` opens the response (``response.created``, ``response.in_progress``);
each content block is one output item between ``response.output_item.added`` and
``response.output_item.done`` (Codex builds its history from the ``done`` items
alone): text with its content part and ``output_text`` deltas, thinking as a
reasoning item (summary deltas only for keys that may see thinking; the sealed block
in ``encrypted_content``), tool_use as a function call with argument deltas or a
custom tool call. ``message_stop`` ends it with ``response.completed`` (its status
``incomplete`` when the output cap cut the answer), an upstream ``error`` event or a
gateway failure with ``response.failed``: every stream ends with one of the two, or
Codex retries it. Every event carries a rising ``sequence_number``.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from .responses_output import (ResponseIds, call_item, custom_input, failure, message_item, reasoning_item,
                               response_object, status_of, tool_name, usage_object)
from .responses_request import ToolName
from .sse import SSEDecoder, event_name, parse_event
from .usage import Usage


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class _Item:
    """An output item being streamed: its kind, id, index and what it gathered."""

    __slots__ = ("kind", "item_id", "index", "parts", "signature", "data", "call_id", "tool")

    def __init__(self, kind: str, item_id: str, index: int) -> None:
        self.kind = kind
        self.item_id = item_id
        self.index = index
        self.parts: list[str] = []
        self.signature = ""
        self.data = ""
        self.call_id = ""
        self.tool: ToolName | None = None


class AnthropicToResponsesStream:
    __slots__ = ("ids", "created", "client_model", "template", "tools", "seal", "show_thinking", "_decoder",
                 "_sequence", "_blocks", "_output", "_started", "usage", "stop_reason", "thinking_chars", "done")

    def __init__(self, ids: ResponseIds, created: int, client_model: str, template: dict[str, Any],
                 tools: dict[str, ToolName], seal: Callable[[dict], str], show_thinking: bool) -> None:
        self.ids = ids
        self.created = created
        self.client_model = client_model
        self.template = template
        self.tools = tools
        self.seal = seal
        self.show_thinking = show_thinking
        self._decoder = SSEDecoder()
        self._sequence = 0
        self._blocks: dict[int, _Item] = {}   # Anthropic block index -> its item
        self._output: list[dict | None] = []  # finished items by output index (None while open)
        self._started = False
        self.usage = Usage()
        self.stop_reason: str | None = None
        self.thinking_chars = 0
        self.done = False

    # -- the renderer interface -----------------------------------------------------------
    def feed(self, data: bytes) -> bytes:
        """Anthropic stream bytes, cut anywhere."""
        return self.render(self._decoder.feed(data))

    def render(self, events: list[bytes]) -> bytes:
        out: list[bytes] = []
        for raw in events:
            if self.done:
                break
            self._event(raw, out)
        return b"".join(out)

    def close(self) -> bytes:
        return b""

    def error_event(self, error: Any) -> bytes:
        """``response.failed`` for a failure of the gateway (a GatewayError: its status,
        error_type, message and headers), once, numbered after what was sent."""
        if self.done:
            return b""
        retry_after = next((v for k, v in getattr(error, "headers", ()) if k.lower() == "retry-after"), None)
        out: list[bytes] = []
        self._fail(failure(error.status, error.error_type, error.message, retry_after), out)
        return b"".join(out)

    # -- events out -----------------------------------------------------------------------
    def _emit(self, out: list[bytes], kind: str, fields: dict[str, Any]) -> None:
        payload = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        out.append(f"event: {kind}\ndata: {_dumps(payload)}\n\n".encode())

    def _response(self, status: str, **extra: Any) -> dict[str, Any]:
        output = [item for item in self._output if item is not None] if status != "in_progress" else []
        return response_object(self.ids, self.created, self.client_model, self.template, status, output, **extra)

    def _open(self, out: list[bytes]) -> None:
        if not self._started:
            self._started = True
            self._emit(out, "response.created", {"response": self._response("in_progress")})
            self._emit(out, "response.in_progress", {"response": self._response("in_progress")})

    def _fail(self, error: dict[str, str], out: list[bytes]) -> None:
        self._open(out)
        self.done = True
        self._emit(out, "response.failed", {"response": self._response(
            "failed", error=error, usage=usage_object(self.usage, self.thinking_chars))})

    # -- events in ------------------------------------------------------------------------
    def _event(self, raw: bytes, out: list[bytes]) -> None:
        name = event_name(raw)
        if name in (None, "ping"):
            return
        try:
            data = json.loads(parse_event(raw).data)
        except ValueError:
            return
        if not isinstance(data, dict):
            return
        if name == "content_block_delta":
            self._delta(data, out)
        elif name == "content_block_start":
            self._open(out)
            self._start(data, out)
        elif name == "content_block_stop":
            self._stop(data, out)
        elif name == "message_start":
            message = data.get("message") or {}
            self.usage = self.usage.merged(message.get("usage") or {})
            self._open(out)
        elif name == "message_delta":
            self.usage = self.usage.merged(data.get("usage") or {})
            self.stop_reason = (data.get("delta") or {}).get("stop_reason") or self.stop_reason
        elif name == "message_stop":
            self._complete(out)
        elif name == "error":
            error = data.get("error") or {}
            self._fail(failure(200, str(error.get("type", "api_error")), str(error.get("message", "Upstream error"))),
                       out)

    def _start(self, data: dict, out: list[bytes]) -> None:
        block = data.get("content_block") or {}
        kind = block.get("type")
        index = len(self._output)
        if kind == "text":
            item = _Item("message", self.ids.item("message", index), index)
            self._emit(out, "response.output_item.added", {"output_index": index,
                                                           "item": message_item(item.item_id, "", "in_progress")})
            self._emit(out, "response.content_part.added", {
                "item_id": item.item_id, "output_index": index, "content_index": 0,
                "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}})
        elif kind in ("thinking", "redacted_thinking"):
            item = _Item(kind, self.ids.item("reasoning", index), index)
            item.data = block.get("data", "") if kind == "redacted_thinking" else ""
            self._emit(out, "response.output_item.added", {"output_index": index,
                                                           "item": reasoning_item(item.item_id, None, None)})
            if kind == "thinking" and self.show_thinking:
                self._emit(out, "response.reasoning_summary_part.added", {
                    "item_id": item.item_id, "output_index": index, "summary_index": 0,
                    "part": {"type": "summary_text", "text": ""}})
        elif kind == "tool_use":
            tool = tool_name(self.tools, str(block.get("name", "")))
            kind_key = "custom_tool_call" if tool.kind == "custom" else "function_call"
            item = _Item(kind_key, self.ids.item(kind_key, index), index)
            item.call_id, item.tool = str(block.get("id", "")), tool
            self._emit(out, "response.output_item.added", {
                "output_index": index, "item": call_item(item.item_id, item.call_id, tool, "", "in_progress")})
        else:
            return  # server tool blocks and the like: this gateway serves no hosted tools
        self._blocks[data.get("index")] = item
        self._output.append(None)
        # a start that already holds content (a thinking block sent whole) counts as its first delta
        if kind == "thinking":
            item.signature = block.get("signature") or ""
            if block.get("thinking"):
                self._delta({"index": data.get("index"), "delta": {"type": "thinking_delta",
                                                                    "thinking": block["thinking"]}}, out)
        elif kind == "text" and block.get("text"):
            self._delta({"index": data.get("index"), "delta": {"type": "text_delta", "text": block["text"]}}, out)

    def _delta(self, data: dict, out: list[bytes]) -> None:
        item = self._blocks.get(data.get("index"))
        delta = data.get("delta") or {}
        if item is None:
            return
        kind = delta.get("type")
        where = {"item_id": item.item_id, "output_index": item.index}
        if kind == "text_delta" and item.kind == "message":
            text = delta.get("text") or ""
            if text:
                item.parts.append(text)
                self._emit(out, "response.output_text.delta", {**where, "content_index": 0, "delta": text,
                                                               "logprobs": []})
        elif kind == "thinking_delta" and item.kind == "thinking":
            text = delta.get("thinking") or ""
            if text:
                item.parts.append(text)
                if self.show_thinking:
                    self._emit(out, "response.reasoning_summary_text.delta", {**where, "summary_index": 0,
                                                                              "delta": text})
        elif kind == "signature_delta" and item.kind == "thinking":
            item.signature += delta.get("signature") or ""
        elif kind == "input_json_delta" and item.tool is not None:
            fragment = delta.get("partial_json") or ""
            if fragment:
                item.parts.append(fragment)
                if item.kind == "function_call":
                    self._emit(out, "response.function_call_arguments.delta", {**where, "delta": fragment})

    def _stop(self, data: dict, out: list[bytes]) -> None:
        item = self._blocks.pop(data.get("index"), None)
        if item is None:
            return
        where = {"item_id": item.item_id, "output_index": item.index}
        text = "".join(item.parts)
        if item.kind == "message":
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            self._emit(out, "response.output_text.done", {**where, "content_index": 0, "text": text, "logprobs": []})
            self._emit(out, "response.content_part.done", {**where, "content_index": 0, "part": part})
            done = message_item(item.item_id, text)
        elif item.kind == "thinking":
            self.thinking_chars += len(text)
            if self.show_thinking:
                self._emit(out, "response.reasoning_summary_text.done", {**where, "summary_index": 0, "text": text})
                self._emit(out, "response.reasoning_summary_part.done", {
                    **where, "summary_index": 0, "part": {"type": "summary_text", "text": text}})
            sealed = self.seal({"type": "thinking", "thinking": text, "signature": item.signature})
            done = reasoning_item(item.item_id, text if self.show_thinking else None, sealed)
        elif item.kind == "redacted_thinking":
            done = reasoning_item(item.item_id, None, self.seal({"type": "redacted_thinking", "data": item.data}))
        else:
            assert item.tool is not None
            arguments = text or "{}"
            if item.kind == "custom_tool_call":
                payload = custom_input(arguments)
                self._emit(out, "response.custom_tool_call_input.done", {**where, "input": payload})
            else:
                payload = arguments
                self._emit(out, "response.function_call_arguments.done", {**where, "arguments": payload,
                                                                          "name": item.tool.name})
            done = call_item(item.item_id, item.call_id, item.tool, payload)
        self._output[item.index] = done
        self._emit(out, "response.output_item.done", {"output_index": item.index, "item": done})

    def _complete(self, out: list[bytes]) -> None:
        self._open(out)
        for index in sorted(self._blocks):  # (a block the upstream never closed)
            self._stop({"index": index}, out)
        self.done = True
        status, incomplete = status_of(self.stop_reason)
        self._emit(out, "response.completed", {"response": self._response(
            status, usage=usage_object(self.usage, self.thinking_chars), incomplete=incomplete)})
