"""The Anthropic Messages adaptor: validate what the gateway must understand, pass
everything else through untouched (new request fields keep appearing)."""

from __future__ import annotations

import json
from typing import Any

from .. import errors
from ..catalog import Catalog, Model
from ..relay import Parsed


def decode_json_object(raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise errors.invalid_request(f"Request body is not valid UTF-8 (byte {exc.start})") from None
    if not text.strip():
        raise errors.invalid_request("Request body is empty; expected a JSON object")
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise errors.invalid_request(f"Request body is not valid JSON: {exc.msg} at line {exc.lineno} "
                                     f"column {exc.colno}") from None
    if not isinstance(body, dict):
        raise errors.invalid_request("Request body must be a JSON object")
    return body


def resolve_model(body: dict[str, Any], catalog: Catalog, endpoint: str) -> Model:
    model_id = body.get("model")
    if model_id is None:
        raise errors.invalid_request("model: Field required", "model")
    if not isinstance(model_id, str) or not model_id.strip():
        raise errors.invalid_request("model: Input should be a non-empty string", "model")
    model = catalog.resolve(model_id)
    if model is None or endpoint not in model.endpoints:
        raise errors.GatewayError(404, f"model: {model_id} is not a model this gateway serves; "
                                       f"GET /v1/models lists them", param="model", code="model_not_found")
    return model


def _messages(body: dict[str, Any]) -> None:
    messages = body.get("messages")
    if messages is None:
        raise errors.invalid_request("messages: Field required", "messages")
    if not isinstance(messages, list) or not messages:
        raise errors.invalid_request("messages: Input should be a non-empty list", "messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise errors.invalid_request(f"messages.{i}: each message needs a role and content", "messages")
        if not isinstance(message.get("content"), (str, list)):
            raise errors.invalid_request(f"messages.{i}.content: Input should be a string or a list of blocks",
                                         "messages")


def _max_tokens(body: dict[str, Any], model: Model) -> int:
    value = body.get("max_tokens")
    if value is None:
        raise errors.invalid_request("max_tokens: Field required", "max_tokens")
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.invalid_request("max_tokens: Input should be a valid integer", "max_tokens")
    if value < 1:
        raise errors.invalid_request("max_tokens: Input should be greater than or equal to 1", "max_tokens")
    if value > model.max_output:
        raise errors.invalid_request(f"max_tokens: {value} > {model.max_output}, which is the maximum allowed "
                                     f"number of output tokens for {model.id}", "max_tokens")
    return value


class AnthropicAdaptor:
    endpoint = "messages"

    def parse(self, raw: bytes, catalog: Catalog) -> Parsed:
        body = decode_json_object(raw)
        model = resolve_model(body, catalog, self.endpoint)
        _messages(body)
        max_tokens = _max_tokens(body, model)
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise errors.invalid_request("stream: Input should be a valid boolean", "stream")
        client_model = body["model"]
        # Pass-through: the client's bytes go upstream untouched unless the model id must change.
        raw_body = raw if client_model == model.upstream_id else None
        body["model"] = model.upstream_id
        return Parsed(body, model, stream, max_tokens, client_model, raw=raw_body)

    def keep_thinking(self, configured: bool) -> bool:
        return configured  # filtered by default: Anthropic clients look blocks up by index

    def error_body(self, error: errors.GatewayError, request_id: str) -> dict:
        return error.anthropic_body(request_id)

    def error_event(self, error: errors.GatewayError, request_id: str) -> bytes:
        return error.anthropic_sse(request_id)

    def render_message(self, upstream_body: bytes, message: dict, parsed: Parsed) -> bytes:
        return upstream_body

    def stream_renderer(self, parsed: Parsed, request_id: str) -> "PassThrough":
        return PassThrough()


class PassThrough:
    """The Anthropic stream goes to the client as the tap produced it."""

    __slots__ = ()

    def render(self, events: list[bytes]) -> bytes:
        return b"".join(events)

    def close(self) -> bytes:
        return b""


def parse_count_tokens(raw: bytes, catalog: Catalog) -> tuple[dict[str, Any], Model]:
    body = decode_json_object(raw)
    model = resolve_model(body, catalog, "messages")
    _messages(body)
    body["model"] = model.upstream_id
    body.pop("max_tokens", None)
    body.pop("stream", None)
    return body, model
