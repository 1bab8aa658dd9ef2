"""The adaptor contract (``Parsed``, ``Adaptor``, ``StreamRenderer``) and the request
rules every adaptor applies: JSON decoding that refuses what the upstream cannot take,
model resolution (with the newest-of-family fallback) and the output cap. Pure: no
I/O, nothing above this package imported."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from .. import errors
from ..catalog import Catalog, Model
from ..protocol.output_cap import CapResult, OutputCapExceeded, apply_output_cap


@dataclass(frozen=True)
class RequestRules:
    """What a gateway's configuration says about requests."""

    catalog: Catalog
    max_tokens_policy: str = "clamp"   # clamp | reject (a model's own setting wins)
    model_fallback: bool = True        # unknown id of a known family -> newest model of it

    def policy_for(self, model: Model) -> str:
        return model.max_tokens_policy or self.max_tokens_policy


@dataclass
class Parsed:
    """A validated request, already in the upstream's (Anthropic) shape but for its
    ``model``, which the upstream channel sets when it sends (``encoded``)."""

    body: dict[str, Any]
    model: Model
    stream: bool
    max_tokens: int
    client_model: str            # the id the answer names: the client's own, as sent (Claude Code keeps a
                                 # turn's thinking only while its model equals the one it asks for)
    include_usage: bool = False  # OpenAI stream_options.include_usage
    raw: bytes | None = None     # the client's exact bytes, while nothing in them had to change
    notes: list[tuple[bytes, bytes]] = field(default_factory=list)  # x-cheaplm-* response headers
    pass_thinking: bool = False  # the key may see thinking text (set by the relay once the key is known)

    def encoded(self, model_id: str) -> bytes:
        """The body for an upstream that calls this model ``model_id``: the client's own
        bytes when they already say so and nothing else changed, else written anew."""
        if self.raw is not None and self.body.get("model") == model_id:
            return self.raw
        return with_model(self.body, model_id)

    def changed(self) -> None:
        """The body was edited: the client's bytes can no longer go upstream as they are."""
        self.raw = None


class StreamRenderer(Protocol):
    def render(self, events: list[bytes]) -> bytes: ...  # whole raw Anthropic events in, client bytes out
    def close(self) -> bytes: ...


class Adaptor(Protocol):
    endpoint: str

    def parse(self, raw: bytes, rules: RequestRules) -> Parsed: ...
    def keep_thinking(self, configured: bool) -> bool: ...
    def error_body(self, error: errors.GatewayError, request_id: str) -> dict: ...
    def error_event(self, error: errors.GatewayError, request_id: str) -> bytes: ...
    def render_message(self, upstream_body: bytes, message: dict, parsed: Parsed) -> bytes: ...
    def stream_renderer(self, parsed: Parsed, request_id: str) -> StreamRenderer: ...


def encode_json(body: Any) -> bytes:
    """A body the gateway changed, as JSON; a 400 for what cannot be written back (nesting
    deeper than orjson writes, 254 levels, though it reads 1024)."""
    try:
        return orjson.dumps(body)
    except orjson.JSONEncodeError as exc:
        raise errors.invalid_request(f"Request body cannot be forwarded: {exc}") from None


def with_model(body: dict[str, Any], model_id: str) -> bytes:
    """``body`` naming ``model_id``, as JSON (``body`` itself is left as it is)."""
    return encode_json({**body, "model": model_id})


def decode_json_object(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 that says why not. orjson refuses what
    an upstream could not take either: invalid UTF-8, lone surrogates (``"\\ud800"``),
    NaN/Infinity, nesting deeper than 1024."""
    if not raw.strip():
        raise errors.invalid_request("Request body is empty; expected a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise errors.invalid_request(f"Request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise errors.invalid_request("Request body must be a JSON object")
    return body


def find_model(body: dict[str, Any], rules: RequestRules, endpoint: str) -> tuple[Model | None, bool]:
    """(the model serving ``body["model"]`` on ``endpoint``, whether it is a family
    fallback). A 400 when the field is missing or not a string."""
    model_id = body.get("model")
    if model_id is None:
        raise errors.invalid_request("model: Field required", "model")
    if not isinstance(model_id, str) or not model_id.strip():
        raise errors.invalid_request("model: Input should be a non-empty string", "model")
    model = rules.catalog.resolve(model_id)
    if model is not None and endpoint in model.endpoints:
        return model, False
    if model is None and rules.model_fallback:
        fallback = rules.catalog.newest_of_family(model_id, endpoint)
        if fallback is not None:
            return fallback, True
    return None, False


def openai_model(body: dict[str, Any], rules: RequestRules, endpoint: str,
                 code: str | int) -> tuple[str, Model, bool]:
    """(the id the client sent, the model serving it, whether by fallback) on an OpenAI
    endpoint; an unknown model is the product docs' 400 'Model "x" is not available.'."""
    model_id = body.get("model")
    if not isinstance(model_id, str) or not model_id.strip():
        raise errors.invalid_request("model: a model id is required", "model")
    model, fell_back = find_model(body, rules, endpoint)
    if model is None:
        raise errors.GatewayError(400, f'Model "{model_id}" is not available.', param="model", code=code)
    return model_id, model, fell_back


def openai_stream_flag(body: dict[str, Any]) -> bool:
    stream = body.get("stream", False)
    if stream is None:
        return False
    if not isinstance(stream, bool):
        raise errors.invalid_request("stream: must be a boolean", "stream")
    return stream


def cap_output(parsed: Parsed, rules: RequestRules, param: str = "max_tokens") -> CapResult:
    """Apply the model's output cap to ``parsed.body`` (a 400 under ``reject``), noting
    a change in the response headers."""
    try:
        result = apply_output_cap(parsed.body, parsed.model.max_output, rules.policy_for(parsed.model), param)
    except OutputCapExceeded as exc:
        raise errors.invalid_request(str(exc), param) from None
    if result.changed:
        parsed.max_tokens = result.max_tokens
        parsed.changed()
        parsed.notes.append((b"x-cheaplm-max-tokens", str(result.max_tokens).encode()))
        if result.thinking_budget is not None:
            parsed.notes.append((b"x-cheaplm-thinking-budget", str(result.thinking_budget).encode()))
        elif result.thinking_dropped:
            parsed.notes.append((b"x-cheaplm-thinking-budget", b"0"))
    return result


def note_fallback(parsed: Parsed) -> None:
    parsed.notes.append((b"x-cheaplm-model", parsed.model.id.encode()))
