"""The JSON the gateway answers with, on the Quart side and the raw ASGI side alike."""

from __future__ import annotations

import json
from typing import Any

JSON_TYPE = "application/json"


def json_bytes(payload: Any) -> bytes:
    """``payload`` as the JSON the gateway answers with (``json.dumps``' spacing, which
    the transfer API's and the error bodies' consumers have always seen)."""
    return json.dumps(payload).encode()
