"""The OpenAI Chat Completions adaptor: translate the request to Anthropic Messages,
and the answer (whole or streamed) back; errors in the OpenAI shape."""

from __future__ import annotations

import time

import orjson

from .. import errors
from ..protocol.prompt_cache import with_breakpoints
from ..protocol.stream_a2o import AnthropicToOpenAIStream
from ..protocol.translate import TranslationError, translate_request, translate_response
from .base import (Parsed, RequestRules, cap_output, decode_json_object, note_fallback, openai_model,
                   openai_stream_flag)


class OpenAIAdaptor:
    endpoint = "chat"

    def __init__(self, auto_cache: bool = True) -> None:
        self.auto_cache = auto_cache  # cache breakpoints for requests that mark none (they never can here)

    def parse(self, raw: bytes, rules: RequestRules) -> Parsed:
        body = decode_json_object(raw)
        model_id, model, fell_back = openai_model(body, rules, self.endpoint, 400)  # (the product docs' code)
        stream = openai_stream_flag(body)
        options = body.get("stream_options")
        if options is not None and not isinstance(options, dict):
            raise errors.invalid_request("stream_options: must be an object", "stream_options")
        include_usage = bool((options or {}).get("include_usage")) and stream
        try:
            upstream = translate_request(body, model.upstream_id, model.max_output, model.thinking)
        except TranslationError as exc:
            raise errors.invalid_request(exc.message, exc.param) from None
        if stream:
            upstream["stream"] = True
        if self.auto_cache:
            upstream = with_breakpoints(upstream) or upstream
        parsed = Parsed(upstream, model, stream, upstream["max_tokens"], model_id, include_usage)
        if fell_back:
            note_fallback(parsed)
        cap_output(parsed, rules, "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens")
        return parsed

    def keep_thinking(self, configured: bool) -> bool:
        return True  # thinking becomes reasoning_content, which OpenAI clients simply read or ignore

    def error_body(self, error: errors.GatewayError, request_id: str) -> dict:
        return error.openai_body()

    def error_event(self, error: errors.GatewayError, request_id: str) -> bytes:
        return error.openai_sse()

    def render_message(self, upstream_body: bytes, message: dict, parsed: Parsed) -> bytes:
        return orjson.dumps(translate_response(message, parsed.client_model, int(time.time())))

    def stream_renderer(self, parsed: Parsed, request_id: str) -> AnthropicToOpenAIStream:
        return AnthropicToOpenAIStream(parsed.client_model, int(time.time()), parsed.include_usage, request_id)
