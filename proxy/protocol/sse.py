"""Incremental Server-Sent Events decoder and encoder. Pure: bytes in, events out.

The decoder splits a byte stream into events at blank lines (any of ``\\n``,
``\\r\\n``, ``\\r`` line endings, per the SSE spec) and hands back each event's
exact raw bytes, so a relay can pass events through without re-encoding them
and parse only the few it needs (``parse_event``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

# A blank line: two consecutive line terminators.
# "\r" not followed by "\n", so that one "\r\n" is never read as two line ends.
_BLANK_LINE = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(?:\r\n|\r(?!\n)|\n)")
_LINE = re.compile(r"\r\n|\r|\n")
_BOM = b"\xef\xbb\xbf"


class SSEDecoder:
    """Feed bytes; get back complete raw events (each ending in its blank line)."""

    __slots__ = ("_buffer", "_cr_seen", "_started")

    def __init__(self) -> None:
        self._buffer = b""
        self._cr_seen = False
        self._started = False

    def feed(self, chunk: bytes) -> list[bytes]:
        buffer = self._buffer + chunk if self._buffer else chunk
        if not self._started:
            if len(buffer) < 3 and _BOM.startswith(buffer):
                self._buffer = buffer  # maybe a byte-order mark split across chunks
                return []
            self._started = True
            if buffer.startswith(_BOM):
                buffer = buffer[3:]
        if not self._cr_seen and b"\r" in chunk:
            self._cr_seen = True
        events: list[bytes] = []
        start = 0
        if not self._cr_seen:
            # Fast path: plain "\n" line endings, as every Anthropic upstream sends.
            while True:
                end = buffer.find(b"\n\n", start)
                if end < 0:
                    break
                events.append(buffer[start:end + 2])
                start = end + 2
        else:
            while True:
                match = _BLANK_LINE.search(buffer, start)
                if match is None:
                    break
                end = match.end()
                # A trailing "\r" may be the first half of "\r\n": wait for more.
                if end == len(buffer) and buffer[-1:] == b"\r":
                    break
                events.append(buffer[start:end])
                start = end
        self._buffer = buffer[start:] if start else buffer
        return events

    def pending(self) -> bytes:
        """Bytes of an event not yet terminated (a stream cut mid-event leaves these)."""
        return self._buffer

    def close(self) -> list[bytes]:
        """End of stream: a buffered event completed only by a final ``\\r``, if any."""
        buffer, self._buffer = self._buffer, b""
        if buffer.endswith(b"\r") and _BLANK_LINE.search(buffer):
            return [buffer]
        return []


@dataclass(frozen=True, slots=True)
class Event:
    name: str | None
    data: str


def parse_event(raw: bytes) -> Event:
    """Fields of one raw event, per the SSE spec (comments and unknown fields ignored)."""
    name: str | None = None
    data_lines: list[str] = []
    for line in _LINE.split(raw.decode("utf-8", "replace")):
        if not line or line.startswith(":"):
            continue
        field, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if field == "event":
            name = value
        elif field == "data":
            data_lines.append(value)
    return Event(name, "\n".join(data_lines))


def event_name(raw: bytes) -> str | None:
    """The event's name, cheaply when it is on the first line (the usual layout)."""
    if raw.startswith(b"event: "):
        end = raw.find(b"\n", 7)
        if end > 0:
            return raw[7:end].rstrip(b"\r").decode("utf-8", "replace")
    return parse_event(raw).name


def encode_event(name: str | None, data: dict | str) -> bytes:
    """One event, ``event:`` line first when named, compact JSON data."""
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    lines = "".join(f"data: {line}\n" for line in text.split("\n"))
    head = f"event: {name}\n" if name else ""
    return (head + lines + "\n").encode("utf-8")
