"""Anthropic stream tap: usage reader and thinking-block filter. Pure: bytes in, bytes out.

``AnthropicStreamTap.feed(chunk)`` returns the bytes to relay for that chunk:
upstream events passed through as raw bytes, except that

* ``thinking`` / ``redacted_thinking`` blocks are removed when filtering is on,
  and later blocks renumbered so indices stay contiguous from 0 (only events
  whose index changes are re-encoded);
* nothing is relayed after ``message_stop``.

Along the way it records usage (``message_start`` and the cumulative
``message_delta``), a mid-stream ``error`` event, and an estimate of output
tokens in the delta events it produced, for partial charges on disconnect.
"""

from __future__ import annotations

import json
from typing import Callable

from .sse import SSEDecoder, encode_event, event_name, parse_event
from .usage import Usage

_THINKING_BLOCKS = frozenset({"thinking", "redacted_thinking"})
_BYTES_PER_TOKEN = 4


# The string fields of a content_block_delta's ``delta`` that carry generated output.
_DELTA_PAYLOADS = ("text", "thinking", "partial_json")


def delta_tokens(raw: bytes) -> int:
    """Estimated output tokens in one content_block_delta event: its decoded payload (the
    text, thinking or partial_json string, escapes resolved) at four UTF-8 bytes a token,
    at least one a delta. The event is parsed, so the upstream's JSON formatting (spaces,
    escapes, key order) does not change the figure."""
    try:
        data = json.loads(parse_event(raw).data)
    except ValueError:
        return 1
    delta = data.get("delta") if isinstance(data, dict) else None
    size = 0
    if isinstance(delta, dict):
        for name in _DELTA_PAYLOADS:
            value = delta.get(name)
            if isinstance(value, str):
                size += len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass"))
    return max(1, -(-size // _BYTES_PER_TOKEN))


class AnthropicStreamTap:
    __slots__ = ("filter_thinking", "observer", "_decoder", "_dropped", "_index_map", "_next_index",
                 "usage", "saw_message_start", "saw_message_stop", "error", "stop_reason",
                 "last_delta_tokens")

    def __init__(self, filter_thinking: bool, observer: Callable[[bytes], None] | None = None) -> None:
        self.filter_thinking = filter_thinking
        self.observer = observer  # sees every upstream event as it came, before any filtering
        self._decoder = SSEDecoder()
        self._dropped: set[int] = set()
        self._index_map: dict[int, int] = {}
        self._next_index = 0
        self.usage = Usage()
        self.saw_message_start = False
        self.saw_message_stop = False
        self.error: dict | None = None
        self.stop_reason: str | None = None
        # Estimated output tokens in the delta events of the last feed()'s output.
        self.last_delta_tokens = 0

    def events(self, chunk: bytes) -> list[bytes]:
        """The raw events to relay for this chunk (a renderer takes them as they are,
        so nothing downstream splits the stream into events a second time)."""
        self.last_delta_tokens = 0
        return self._kept(self._decoder.feed(chunk))

    def close_events(self) -> list[bytes]:
        return self._kept(self._decoder.close())

    def _kept(self, raws: list[bytes]) -> list[bytes]:
        if self.observer is not None:
            for raw in raws:
                if not self.saw_message_stop:
                    self.observer(raw)
        return [kept for raw in raws if (kept := self._event(raw))]

    def feed(self, chunk: bytes) -> bytes:
        return b"".join(self.events(chunk))

    def close(self) -> bytes:
        return b"".join(self.close_events())

    @property
    def truncated(self) -> bool:
        """The stream ended without message_stop (or mid-event)."""
        return not self.saw_message_stop

    def _event(self, raw: bytes) -> bytes:
        if self.saw_message_stop:
            return b""
        name = event_name(raw)
        if name == "content_block_delta":
            if self._dropped:
                raw = self._block_event(raw, name)
            if raw:
                self.last_delta_tokens += delta_tokens(raw)
            return raw
        if name in ("content_block_start", "content_block_stop"):
            return self._block_event(raw, name) if self.filter_thinking else raw
        if name == "message_start":
            self.saw_message_start = True
            message = self._data(raw).get("message") or {}
            self.usage = self.usage.merged(message.get("usage") or {})
        elif name == "message_delta":
            data = self._data(raw)
            self.usage = self.usage.merged(data.get("usage") or {})
            self.stop_reason = (data.get("delta") or {}).get("stop_reason") or self.stop_reason
        elif name == "message_stop":
            self.saw_message_stop = True
        elif name == "error":
            self.error = self._data(raw).get("error") or {"type": "api_error", "message": "upstream error"}
        return raw

    def _block_event(self, raw: bytes, name: str) -> bytes:
        data = self._data(raw)
        index = data.get("index")
        if not isinstance(index, int):
            return raw
        if name == "content_block_start":
            block_type = (data.get("content_block") or {}).get("type")
            if self.filter_thinking and block_type in _THINKING_BLOCKS:
                self._dropped.add(index)
                return b""
            self._index_map[index] = self._next_index
            self._next_index += 1
        elif index in self._dropped:
            return b""
        new_index = self._index_map.get(index, index)
        if new_index == index:
            return raw
        data["index"] = new_index
        return encode_event(name, data)

    @staticmethod
    def _data(raw: bytes) -> dict:
        try:
            data = json.loads(parse_event(raw).data)
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}
