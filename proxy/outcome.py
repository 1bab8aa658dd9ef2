"""What one request came to: the record every outcome passes through once (metered or
refused before any hold), for the metrics and the request log. Pure."""

from __future__ import annotations

from dataclasses import asdict, dataclass

LANES = ("input_tokens", "cache_write_5m", "cache_write_1h", "cache_read", "output_tokens")


@dataclass(frozen=True)
class Outcome:
    request_id: str
    endpoint: str                 # messages | chat | count_tokens
    status: int
    username: str | None = None
    key_prefix: str | None = None
    model: str | None = None
    stream: bool = False
    channel: str | None = None    # the upstream channel that answered
    attempts: int = 0             # upstream attempts it took (0: the upstream was not contacted)
    error_type: str | None = None
    partial: bool = False
    input_tokens: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    cache_read: int = 0
    output_tokens: int = 0
    cost: int = 0                 # micro-USD charged
    ttft_ms: float | None = None
    duration_ms: float | None = None
    server_tool_use: str | None = None  # server tool uses by kind, as JSON ({"web_search":3})

    def as_log(self) -> dict:
        """The JSON log line's fields: never a prompt, never a key (only its prefix)."""
        return asdict(self)
