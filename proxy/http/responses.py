"""The one way a JSON answer is written, on the Quart side and the raw ASGI side alike."""

from __future__ import annotations

import json
from typing import Any, Iterable

from quart import Response

JSON_TYPE = "application/json"


def json_bytes(payload: Any) -> bytes:
    """``payload`` as the JSON the gateway answers with (``json.dumps``' spacing, which
    the transfer API's and the error bodies' consumers have always seen)."""
    return json.dumps(payload).encode()


def json_response(payload: Any, status: int = 200, headers: Iterable[tuple[str, str]] = ()) -> Response:
    response = Response(json_bytes(payload), status=status, content_type=JSON_TYPE)
    for name, value in headers:
        response.headers[name] = value
    return response
