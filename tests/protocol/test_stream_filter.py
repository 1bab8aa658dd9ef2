import json

import pytest

from proxy.protocol.sse import SSEDecoder, event_name, parse_event
from proxy.protocol.stream_filter import AnthropicStreamTap
from proxy.protocol.usage import Usage

from tests.splits import every_split, golden


def run(chunks, filter_thinking=True):
    tap = AnthropicStreamTap(filter_thinking=filter_thinking)
    out = b"".join(tap.feed(c) for c in chunks) + tap.close()
    return out, tap


def test_thinking_filtered_and_renumbered_for_every_split():
    data = golden("thinking_text_tool.sse")
    expected = golden("thinking_text_tool.filtered.sse")
    for chunks in every_split(data):
        out, tap = run(chunks)
        assert out == expected, [len(c) for c in chunks]
        assert tap.usage == Usage(input_tokens=472, cache_write_5m=60, cache_write_1h=40, cache_read=2000,
                                  output_tokens=89)
        assert tap.saw_message_stop and not tap.truncated and tap.stop_reason == "tool_use"


def test_filtered_indices_contiguous_and_every_delta_has_a_block():
    out, _ = run([golden("thinking_text_tool.sse")])
    decoder = SSEDecoder()
    opened, seen_starts = set(), []
    for raw in decoder.feed(out):
        name = event_name(raw)
        data = json.loads(parse_event(raw).data)
        if name == "content_block_start":
            seen_starts.append(data["index"])
            opened.add(data["index"])
            assert data["content_block"]["type"] not in ("thinking", "redacted_thinking")
        elif name in ("content_block_delta", "content_block_stop"):
            assert data["index"] in opened
            assert data["delta"]["type"] not in ("thinking_delta", "signature_delta") if "delta" in data else True
    assert seen_starts == list(range(len(seen_starts)))


@pytest.mark.parametrize("name", ["thinking_text_tool.sse", "text_only.sse", "error_mid.sse"])
def test_pass_through_is_byte_identical_for_every_split(name):
    data = golden(name)
    for chunks in every_split(data):
        out, _ = run(chunks, filter_thinking=False)
        assert out == data


def test_text_only_stream_is_untouched_even_with_filter_on():
    data = golden("text_only.sse")
    for chunks in every_split(data):
        out, tap = run(chunks)
        assert out == data
        assert tap.usage.input_tokens == 12 and tap.usage.output_tokens == 5


def test_error_mid_stream_recorded_and_passed_on():
    out, tap = run([golden("error_mid.sse")])
    assert out == golden("error_mid.sse")
    assert tap.error == {"type": "overloaded_error", "message": "Overloaded"}
    assert tap.truncated and tap.saw_message_start
    assert tap.usage.input_tokens == 30 and tap.usage.output_tokens == 1


def test_nothing_after_message_stop():
    data = golden("text_only.sse") + b"event: content_block_delta\ndata: {\"index\":0}\n\n"
    out, _ = run([data])
    assert out == golden("text_only.sse")


def test_delivered_token_estimate_counts_only_deltas_in_output():
    tap = AnthropicStreamTap(filter_thinking=True)
    data = golden("thinking_text_tool.sse")
    total = 0
    for raw in SSEDecoder().feed(data):
        tap.feed(raw)
        total += tap.last_delta_tokens
    # "Hi ☃ there" (12 bytes: 3) + "" (1) + '{"loc' (2) + 'ation": "Paris"}' (16 bytes: 4)
    assert total == 10


def test_delta_tokens():
    from proxy.protocol.stream_filter import delta_tokens
    event = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,' \
            b'"delta":{"type":"text_delta","text":"abcdefghijklmnop"}}\n\n'
    assert delta_tokens(event) == 4
    assert delta_tokens(event.replace(b"abcdefghijklmnop", b"a\\\":\\\"b")) == 2  # a":"b: 5 bytes


def test_cut_stream_is_truncated():
    data = golden("text_only.sse")
    out, tap = run([data[: data.index(b"event: message_delta")]])
    assert tap.truncated and tap.usage.output_tokens == 1
    assert out == data[: data.index(b"event: message_delta")]


def test_usage_merge_rules():
    usage = Usage().merged({"input_tokens": 10, "cache_creation_input_tokens": 7, "cache_read_input_tokens": 3,
                            "output_tokens": 1})
    assert usage == Usage(10, 7, 0, 3, 1)
    # cumulative message_delta: later figures replace, null keeps
    usage = usage.merged({"output_tokens": 50, "input_tokens": None})
    assert usage.output_tokens == 50 and usage.input_tokens == 10
    split = Usage().merged({"cache_creation_input_tokens": 10,
                            "cache_creation": {"ephemeral_5m_input_tokens": 4, "ephemeral_1h_input_tokens": 5}})
    assert (split.cache_write_5m, split.cache_write_1h) == (5, 5)  # unexplained rest -> 5m lane
    assert split.prompt_tokens == 10
    assert Usage(output_tokens=5).with_output_at_least(3).output_tokens == 5
    assert Usage(output_tokens=5).with_output_at_least(9).output_tokens == 9
