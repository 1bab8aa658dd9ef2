"""The model listing: GET /v1/models (shared by Anthropic and OpenAI clients, each
answered in its own shape and narrowed to a presented key's allowlist), one model by
id or alias, and /v1/models/info (ids, limits and the five price lanes; no key)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from quart import Blueprint, Response, request

from .. import errors
from ..catalog import Model
from .context import current_gateway, presented_record
from .params import int_arg
from .responses import json_response

MAX_PAGE = 1000


def blueprint() -> Blueprint:
    bp = Blueprint("models", __name__)
    bp.get("/v1/models")(list_models)
    bp.get("/v1/models/info")(models_info)
    bp.get("/v1/models/<path:model_id>")(one_model)
    return bp


def model_item(model: Model) -> dict[str, Any]:
    created = int(datetime.fromisoformat(model.created_at.replace("Z", "+00:00")).timestamp())
    return {"id": model.id, "object": "model", "created": created, "owned_by": "anthropic",
            "type": "model", "display_name": model.display_name, "created_at": model.created_at}


def model_info(model: Model) -> dict[str, Any]:
    return {"id": model.id, "display_name": model.display_name, "upstream_id": model.upstream_id,
            "aliases": sorted({model.id.replace(".", "-"), model.upstream_id, *model.aliases} - {model.id}),
            "max_input_tokens": model.max_input, "max_output_tokens": model.max_output,
            "thinking": model.thinking, "vision": model.vision, "endpoints": list(model.endpoints),
            "pricing": {"unit": "USD per 1M tokens", **model.prices.as_usd()}}


async def listed_models() -> list[Model]:
    """Models for the asking client's protocol (the Anthropic SDK sends
    anthropic-version; OpenAI clients do not), narrowed to a key's allowlist."""
    endpoint = "messages" if "anthropic-version" in request.headers else "chat"
    models = list(current_gateway().catalog.for_endpoint(endpoint))
    record = await presented_record()
    if record is not None and record.models is not None:
        models = [m for m in models if m.id in record.models]
    return models


def page(items: list[dict[str, Any]], args) -> dict[str, Any]:
    """One page of a listing: after_id / before_id / limit, as the Anthropic API pages."""
    ids = [m["id"] for m in items]
    after, before = args.get("after_id"), args.get("before_id")
    if after in ids:
        items = items[ids.index(after) + 1:]
    elif before in ids:
        items = items[:ids.index(before)]
    limit = max(1, min(MAX_PAGE, int_arg("limit", MAX_PAGE, -10**18, 10**18, args,  # clamped, as Anthropic's
                                         "limit: Input should be a valid integer")))
    has_more = len(items) > limit
    items = items[:limit]
    return {"object": "list", "data": items, "has_more": has_more,
            "first_id": items[0]["id"] if items else None, "last_id": items[-1]["id"] if items else None}


async def list_models() -> Response:
    return json_response(page([model_item(m) for m in await listed_models()], request.args))


async def models_info() -> Response:
    return json_response({"object": "list", "data": [model_info(m) for m in current_gateway().catalog.models]})


async def one_model(model_id: str) -> Response:
    record = await presented_record()
    found = current_gateway().catalog.resolve(model_id)
    if found is not None and record is not None and record.models is not None and found.id not in record.models:
        found = None  # as /v1/models does not list it for this key
    if found is None:
        raise errors.GatewayError(404, f"model: {model_id} is not a model this gateway serves",
                                  code="model_not_found")
    return json_response(model_item(found))
