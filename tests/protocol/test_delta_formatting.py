"""Partial charges read the relayed payload, not its bytes: the same stream written
compact, with spaces, with \\u escapes or with raw UTF-8 is estimated the same."""

from __future__ import annotations

import json

import pytest

from proxy.protocol.sse import SSEDecoder
from proxy.protocol.stream_filter import AnthropicStreamTap, delta_tokens

DELTAS = [
    {"type": "text_delta", "text": "abc"},
    {"type": "text_delta", "text": "déjà vu ☃ 日本語 \"quoted\" \\ back"},
    {"type": "input_json_delta", "partial_json": '{"city": "Paris"}'},
    {"type": "thinking_delta", "thinking": "let me think about ü"},
]


def _stream(dumps) -> bytes:
    events = [("message_start", {"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": "m",
        "usage": {"input_tokens": 10, "output_tokens": 1}}})]
    for i, delta in enumerate(DELTAS):
        events.append(("content_block_delta", {"type": "content_block_delta", "index": i, "delta": delta}))
    return b"".join(b"event: %s\ndata: %s\n\n" % (name.encode(), dumps(data).encode()) for name, data in events)


FORMATS = {
    "compact": lambda d: json.dumps(d, separators=(",", ":"), ensure_ascii=False),
    "spaced": lambda d: json.dumps(d),  # ", " and ": ", every non-ASCII character \u-escaped
    "indented-order": lambda d: json.dumps(dict(reversed(list(d.items()))), indent=1).replace("\n", " "),
    "raw-utf8-spaced": lambda d: json.dumps(d, ensure_ascii=False, separators=(" , ", " : ")),
}


def _estimate(data: bytes) -> int:
    tap = AnthropicStreamTap(filter_thinking=False)
    total = 0
    for raw in SSEDecoder().feed(data):
        tap.feed(raw)
        total += tap.last_delta_tokens
    return total


def test_every_formatting_of_one_stream_gets_the_same_estimate():
    estimates = {name: _estimate(_stream(dumps)) for name, dumps in FORMATS.items()}
    # abc: 1; the unicode text is 38 UTF-8 bytes: 10; {"city": "Paris"}: 17 bytes: 5; thinking 21 bytes: 6
    assert estimates == {name: 22 for name in FORMATS}


def test_three_spaced_three_byte_deltas_are_three_tokens():
    # the probe: json.dumps writes '": "', which the byte search missed (48 tokens)
    raws = [b'event: content_block_delta\ndata: %s\n\n' % json.dumps(
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}}).encode()
        for t in ("abc", "def", "ghi")]
    assert sum(delta_tokens(r) for r in raws) == 3


@pytest.mark.parametrize("raw", [b"event: content_block_delta\ndata: {not json\n\n",
                                 b"event: content_block_delta\ndata: []\n\n",
                                 b'event: content_block_delta\ndata: {"delta": {"text": 5}}\n\n'])
def test_an_unreadable_delta_counts_one_token(raw):
    assert delta_tokens(raw) == 1
