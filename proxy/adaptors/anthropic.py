"""The Anthropic Messages adaptor: validate what the gateway must understand, pass
everything else through untouched (new request fields keep appearing)."""

from __future__ import annotations

import json
import re
from typing import Any

from .. import errors
from ..catalog import Model
from ..protocol.prompt_cache import with_breakpoints
from ..protocol.sse import encode_event, event_name, parse_event
from .base import Parsed, RequestRules, cap_output, decode_json_object, find_model, note_fallback


def resolve_model(body: dict[str, Any], rules: RequestRules, endpoint: str = "messages") -> tuple[Model, bool]:
    model, fell_back = find_model(body, rules, endpoint)
    if model is None:
        raise errors.GatewayError(404, f"model: {body['model']} is not a model this gateway serves; "
                                       f"GET /v1/models lists them", param="model", code="model_not_found")
    return model, fell_back


def _messages(body: dict[str, Any]) -> None:
    messages = body.get("messages")
    if messages is None:
        raise errors.invalid_request("messages: Field required", "messages")
    if not isinstance(messages, list) or not messages:
        raise errors.invalid_request("messages: Input should be a non-empty list", "messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise errors.invalid_request(f"messages.{i}: each message needs a role and content", "messages")
        content = message.get("content")
        if not isinstance(content, (str, list)):
            raise errors.invalid_request(f"messages.{i}.content: Input should be a string or a list of blocks",
                                         "messages")
        if isinstance(content, list):
            for j, block in enumerate(content):
                if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                    raise errors.invalid_request(f"messages.{i}.content.{j}: each block needs a string type",
                                                 "messages")


def _max_tokens(body: dict[str, Any]) -> int:
    value = body.get("max_tokens")
    if value is None:
        raise errors.invalid_request("max_tokens: Field required", "max_tokens")
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.invalid_request("max_tokens: Input should be a valid integer", "max_tokens")
    if value < 1:
        raise errors.invalid_request("max_tokens: Input should be greater than or equal to 1", "max_tokens")
    return value


class AnthropicAdaptor:
    endpoint = "messages"

    def __init__(self, auto_cache: bool = False) -> None:
        self.auto_cache = auto_cache  # cache breakpoints for requests that mark none ([auto_cache_messages])

    def parse(self, raw: bytes, rules: RequestRules) -> Parsed:
        body = decode_json_object(raw)
        model, fell_back = resolve_model(body, rules, self.endpoint)
        _messages(body)
        max_tokens = _max_tokens(body)
        thinking = body.get("thinking")
        if thinking is not None and not (isinstance(thinking, dict) and isinstance(thinking.get("type"), str)):
            raise errors.invalid_request("thinking: Input should be an object with a type", "thinking")
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise errors.invalid_request("stream: Input should be a valid boolean", "stream")
        client_model = body["model"]
        # Pass-through: the client's bytes go upstream untouched unless something must change
        # (the upstream names the model otherwise, a field is clamped, thinking restored).
        # A body with a checked or billed field twice is written anew: a parser that takes
        # the first one must not see another model, max_tokens, stream or prompt than the
        # ones checked and held for here (a key spelled with a \u escape is the same key).
        raw_body = raw if _unambiguous(raw) else None
        parsed = Parsed(body, model, stream, max_tokens, client_model, raw=raw_body)
        if fell_back:
            note_fallback(parsed)
        if self.auto_cache and (cached := with_breakpoints(body)) is not None:
            parsed.body = cached
            parsed.changed()
        cap_output(parsed, rules)
        return parsed

    def keep_thinking(self, configured: bool) -> bool:
        return configured  # filtered by default: Anthropic clients look blocks up by index

    def error_body(self, error: errors.GatewayError, request_id: str) -> dict:
        return error.anthropic_body(request_id)

    def error_event(self, error: errors.GatewayError, request_id: str) -> bytes:
        return error.anthropic_sse(request_id)

    def render_message(self, upstream_body: bytes, message: dict, parsed: Parsed) -> bytes:
        if message.get("model") == parsed.client_model:
            return upstream_body
        return json.dumps({**message, "model": parsed.client_model}, ensure_ascii=False,
                          separators=(",", ":")).encode()

    def stream_renderer(self, parsed: Parsed, request_id: str) -> "PassThrough":
        return PassThrough(parsed.client_model)


class PassThrough:
    """The Anthropic stream goes to the client as the tap produced it, but for the model
    ``message_start`` names: the one the client asked for, as it spelled it. Claude Code
    sends a turn's thinking blocks back only while that turn's ``message.model`` equals
    the model it now requests, so an upstream's dated id (claude-sonnet-4-5-20250929 for
    claude-sonnet-4.5) would cost a --pass-thinking key its thinking in tool loops."""

    __slots__ = ("client_model", "_started")

    def __init__(self, client_model: str) -> None:
        self.client_model = client_model
        self._started = False

    def render(self, events: list[bytes]) -> bytes:
        if not self._started:
            events = [self._named(raw) for raw in events]
        return b"".join(events)

    def _named(self, raw: bytes) -> bytes:
        if self._started or event_name(raw) != "message_start":
            return raw
        self._started = True
        try:
            data = json.loads(parse_event(raw).data)
        except ValueError:
            return raw
        message = data.get("message") if isinstance(data, dict) else None
        if not isinstance(message, dict) or message.get("model") == self.client_model:
            return raw
        data["message"] = {**message, "model": self.client_model}
        return encode_event("message_start", data)

    def close(self) -> bytes:
        return b""


# The fields the gateway checks, holds for or bills by: each at most once in a body
# passed through as the client sent it.
_CHECKED_FIELDS = (b'"model"', b'"max_tokens"', b'"stream"', b'"messages"', b'"system"', b'"tools"',
                   b'"thinking"')


# A \\u escape of a letter or "_" (U+0050-U+007F): how a key could spell one of them again
# unseen by a byte count (encoders escape control and non-ASCII characters, not letters).
_ESCAPED_LETTER = re.compile(rb"\\u00[5-7][0-9a-fA-F]")


def _unambiguous(raw: bytes) -> bool:
    """Whether every parser reads the same checked fields from ``raw``: none of them
    repeated, literally or through an escaped letter."""
    if b"\\u00" in raw and _ESCAPED_LETTER.search(raw):
        return False
    return all(raw.count(name) <= 1 for name in _CHECKED_FIELDS)


def parse_count_tokens(raw: bytes, rules: RequestRules) -> tuple[dict[str, Any], Model]:
    """(the body to forward, its model); the upstream sets the model id it knows."""
    body = decode_json_object(raw)
    model, _ = resolve_model(body, rules)
    _messages(body)
    body.pop("max_tokens", None)
    body.pop("stream", None)
    return body, model
