"""Anthropic stream events -> OpenAI chat.completion.chunk lines. A pure state machine.

What the OpenAI SDKs enforce (protocol.md section 2): the role once, in the first
chunk; each tool call's ``id``, ``type`` and ``function.name`` only in its first
delta; tool indices contiguous from 0 on their own counter (not the Anthropic
block index); arguments as fragments, ``"{}"`` for a tool that got none;
``finish_reason`` on the last choice chunk; a usage chunk with ``choices: []``
only when asked; then ``data: [DONE]``. An upstream ``error`` event becomes
``data: {"error": {...}}`` and ends the stream.
"""

from __future__ import annotations

import json

from .sse import SSEDecoder, event_name, parse_event
from .translate import finish_reason, openai_usage
from .usage import Usage

DONE = b"data: [DONE]\n\n"
_NULL_FINISH = b',"finish_reason":null}]}\n\n'


def _dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def error_line(error_type: str, message: str, code: str | None = None) -> bytes:
    return ("data: " + _dumps({"error": {"message": message, "type": error_type, "param": None,
                                         "code": code if code is not None else error_type}}) + "\n\n").encode()


class AnthropicToOpenAIStream:
    __slots__ = ("client_model", "created", "include_usage", "_fallback_id", "_decoder", "_prefix", "_head",
                 "_tools", "_tool_args", "_next_tool", "usage", "stop_reason", "done")

    def __init__(self, client_model: str, created: int, include_usage: bool, fallback_id: str) -> None:
        self.client_model = client_model
        self.created = created
        self.include_usage = include_usage
        self._fallback_id = fallback_id
        self._decoder = SSEDecoder()
        self._prefix = b""
        self._head = ""
        self._tools: dict[int, int] = {}       # Anthropic block index -> OpenAI tool index
        self._tool_args: dict[int, bool] = {}  # OpenAI tool index -> any arguments sent
        self._next_tool = 0
        self.usage = Usage()
        self.stop_reason: str | None = None
        self.done = False

    def feed(self, data: bytes) -> bytes:
        """Anthropic stream bytes, cut anywhere."""
        return self.render(self._decoder.feed(data))

    def render(self, events: list[bytes]) -> bytes:
        """Whole raw Anthropic events (as the relay's stream tap hands them over)."""
        out = []
        for raw in events:
            if self.done:
                break
            chunk = self._event(raw)
            if chunk:
                out.append(chunk)
        return b"".join(out)

    def close(self) -> bytes:
        return b""

    # -- chunk builders -------------------------------------------------------------------
    def _start(self, message_id: str) -> None:
        self._head = (f'{{"id":{_dumps("chatcmpl-" + message_id)},"object":"chat.completion.chunk",'
                      f'"created":{self.created},"model":{_dumps(self.client_model)}')
        self._prefix = ("data: " + self._head + ',"choices":[{"index":0,"delta":').encode()

    def _delta(self, delta: dict) -> bytes:
        if not self._prefix:
            self._start(self._fallback_id)
        return self._prefix + _dumps(delta).encode() + _NULL_FINISH

    # -- events ---------------------------------------------------------------------------
    def _event(self, raw: bytes) -> bytes:
        name = event_name(raw)
        if name == "ping" or name is None:
            return b""
        try:
            data = json.loads(parse_event(raw).data)
        except ValueError:
            return b""
        if name == "content_block_delta":
            return self._block_delta(data)
        if name == "message_start":
            message = data.get("message") or {}
            self.usage = self.usage.merged(message.get("usage") or {})
            self._start(str(message.get("id") or self._fallback_id))
            return self._delta({"role": "assistant", "content": ""})
        if name == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") == "tool_use":
                tool = self._next_tool
                self._next_tool += 1
                self._tools[data.get("index")] = tool
                self._tool_args[tool] = False
                return self._delta({"tool_calls": [{"index": tool, "id": block.get("id"), "type": "function",
                                                    "function": {"name": block.get("name"), "arguments": ""}}]})
            return b""
        if name == "content_block_stop":
            tool = self._tools.get(data.get("index"))
            if tool is not None and not self._tool_args[tool]:
                self._tool_args[tool] = True
                return self._delta({"tool_calls": [{"index": tool, "function": {"arguments": "{}"}}]})
            return b""
        if name == "message_delta":
            self.usage = self.usage.merged(data.get("usage") or {})
            self.stop_reason = (data.get("delta") or {}).get("stop_reason") or self.stop_reason
            return b""
        if name == "message_stop":
            return self._finish()
        if name == "error":
            error = data.get("error") or {}
            self.done = True
            return error_line(str(error.get("type", "api_error")), str(error.get("message", "Upstream error")))
        return b""

    def _block_delta(self, data: dict) -> bytes:
        delta = data.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta.get("text")
            return self._delta({"content": text}) if text else b""
        if kind == "thinking_delta":
            text = delta.get("thinking")
            return self._delta({"reasoning_content": text}) if text else b""
        if kind == "input_json_delta":
            tool = self._tools.get(data.get("index"))
            fragment = delta.get("partial_json")
            if tool is None or not fragment:
                return b""
            self._tool_args[tool] = True
            return self._delta({"tool_calls": [{"index": tool, "function": {"arguments": fragment}}]})
        return b""  # signature_delta, citations_delta: nothing to say in this protocol

    def _finish(self) -> bytes:
        self.done = True
        if not self._prefix:
            self._start(self._fallback_id)
        out = self._prefix + b'{},"finish_reason":' + _dumps(finish_reason(self.stop_reason)).encode() + b"}]}\n\n"
        if self.include_usage:
            out += ("data: " + self._head + ',"choices":[],"usage":' + _dumps(openai_usage(self.usage))
                    + "}\n\n").encode()
        return out + DONE
