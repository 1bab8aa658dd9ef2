"""The one way a JSON answer is written on the Quart side (the bytes: protocol/json_body.py)."""

from __future__ import annotations

from typing import Any, Iterable

from quart import Response

from ..protocol.json_body import JSON_TYPE, json_bytes

__all__ = ["JSON_TYPE", "json_bytes", "json_response"]


def json_response(payload: Any, status: int = 200, headers: Iterable[tuple[str, str]] = ()) -> Response:
    response = Response(json_bytes(payload), status=status, content_type=JSON_TYPE)
    for name, value in headers:
        response.headers[name] = value
    return response
