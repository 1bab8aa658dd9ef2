"""The OpenAI Responses adaptor (``POST /v1/responses``): translate the request to
Anthropic Messages, and the answer (whole or streamed) back; errors in the OpenAI
shape before the stream, ``response.failed`` inside it.

Stateless: nothing of a response is kept. Thinking blocks travel sealed in reasoning
items (proxy/protocol/reasoning_seal.py), so ``previous_response_id`` is refused.

Hosted tools (``web_search``, ``file_search``, ...) are dropped, named in the
``x-cheaplm-dropped-tools`` header and logged: Anthropic's web search server tool
would be charged per search ($10 per 1,000) on the operator's account, and the
gateway meters tokens only, so mapping it would hand out searches unbilled.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from .. import errors
from ..protocol.prompt_cache import with_breakpoints
from ..protocol.reasoning_seal import ReasoningSeal
from ..protocol.responses_output import ResponseIds, failure, output_items, request_echo, response_object, \
    status_of, usage_object
from ..protocol.responses_request import ToolName, translate_responses_request
from ..protocol.stream_a2r import AnthropicToResponsesStream
from ..protocol.translate import TranslationError
from ..protocol.usage import Usage
from .base import Parsed, RequestRules, cap_output, decode_json_object, note_fallback, openai_model, openai_stream_flag

log = logging.getLogger("cheaplm.responses")


@dataclass
class ResponsesParsed(Parsed):
    tools: dict[str, ToolName] = field(default_factory=dict)  # Anthropic tool name -> the client's
    echo: dict[str, Any] = field(default_factory=dict)        # what the response object repeats


def _retry_after(error: errors.GatewayError) -> str | None:
    return next((value for name, value in error.headers if name.lower() == "retry-after"), None)


class ResponsesAdaptor:
    endpoint = "responses"

    def __init__(self, seal: ReasoningSeal, auto_cache: bool = True) -> None:
        self.seal = seal
        self.auto_cache = auto_cache

    def parse(self, raw: bytes, rules: RequestRules) -> ResponsesParsed:
        body = decode_json_object(raw)
        model_id, model, fell_back = openai_model(body, rules, self.endpoint, "model_not_found")
        stream = openai_stream_flag(body)
        try:
            translated = translate_responses_request(body, model.upstream_id, model.max_output, model.thinking,
                                                     self.seal.open)
        except TranslationError as exc:
            raise errors.invalid_request(exc.message, exc.param) from None
        upstream = translated.body
        if stream:
            upstream["stream"] = True
        if self.auto_cache:
            upstream = with_breakpoints(upstream) or upstream
        parsed = ResponsesParsed(upstream, model, stream, upstream["max_tokens"], model_id,
                                 tools=translated.tools, echo=request_echo(body))
        if fell_back:
            note_fallback(parsed)
        if translated.dropped_tools:
            dropped = ",".join(sorted(set(translated.dropped_tools)))
            log.info("responses: hosted tools not served by this gateway, dropped: %s", dropped)
            parsed.notes.append((b"x-cheaplm-dropped-tools", dropped.encode()))
        if translated.dropped_reasoning:
            parsed.notes.append((b"x-cheaplm-reasoning-dropped", str(translated.dropped_reasoning).encode()))
        if translated.thinking_note:
            parsed.notes.append((b"x-cheaplm-thinking", f"off ({translated.thinking_note})".encode()))
        cap_output(parsed, rules, "max_output_tokens")
        return parsed

    def keep_thinking(self, configured: bool) -> bool:
        return True  # every block is needed: thinking is sealed into reasoning items for every key

    def error_body(self, error: errors.GatewayError, request_id: str) -> dict:
        body = error.openai_body()
        coded = failure(error.status, error.error_type, error.message, _retry_after(error))
        if coded["code"] in ("insufficient_quota", "context_length_exceeded", "rate_limit_exceeded"):
            body["error"]["code"], body["error"]["message"] = coded["code"], coded["message"]
        return body

    def error_event(self, error: errors.GatewayError, request_id: str) -> bytes:
        """``response.failed`` when no renderer numbered the stream yet (the relay asks the
        renderer first)."""
        renderer = AnthropicToResponsesStream(ResponseIds.for_request(request_id), int(time.time()), "", {}, {},
                                              self.seal.seal, False)
        return renderer.error_event(error)

    def render_message(self, upstream_body: bytes, message: dict, parsed: Parsed) -> bytes:
        assert isinstance(parsed, ResponsesParsed)
        ids = ResponseIds(str(message.get("id") or "response").removeprefix("msg_"))
        items, thinking_chars = output_items(message.get("content") or [], ids, parsed.tools, self.seal.seal,
                                             parsed.pass_thinking)
        status, incomplete = status_of(message.get("stop_reason"))
        usage = Usage().merged(message.get("usage") or {})
        return orjson.dumps(response_object(ids, int(time.time()), parsed.client_model, parsed.echo, status, items,
                                            usage_object(usage, thinking_chars), incomplete=incomplete))

    def stream_renderer(self, parsed: Parsed, request_id: str) -> AnthropicToResponsesStream:
        assert isinstance(parsed, ResponsesParsed)
        return AnthropicToResponsesStream(ResponseIds.for_request(request_id), int(time.time()), parsed.client_model,
                                          parsed.echo, parsed.tools, self.seal.seal, parsed.pass_thinking)
