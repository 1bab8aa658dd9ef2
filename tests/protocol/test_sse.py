import pytest

from proxy.protocol.sse import SSEDecoder, encode_event, event_name, parse_event

from tests.splits import every_split, golden


def decode(chunks):
    decoder = SSEDecoder()
    out = []
    for chunk in chunks:
        out.extend(decoder.feed(chunk))
    pending = decoder.pending()
    out.extend(decoder.close())
    return out, pending if not out or pending not in out[-1:] else b""


@pytest.mark.parametrize("name", ["thinking_text_tool.sse", "text_only.sse", "error_mid.sse"])
def test_every_split_yields_the_same_raw_events(name):
    data = golden(name)
    expected, rest = decode([data])
    assert b"".join(expected) == data and rest == b""
    assert len(expected) == data.count(b"\n\n")
    for chunks in every_split(data):
        events, rest = decode(chunks)
        assert events == expected, [len(c) for c in chunks]
        assert rest == b""


@pytest.mark.parametrize("ending", [b"\r\n", b"\r"])
def test_other_line_endings_every_split(ending):
    data = golden("text_only.sse").replace(b"\n", ending)
    expected_fields = [parse_event(e) for e in decode([golden("text_only.sse")])[0]]
    for chunks in every_split(data):
        events, _ = decode(chunks)
        assert [parse_event(e) for e in events] == expected_fields


def test_mixed_line_endings_and_comments():
    data = b": keep-alive\r\n\r\nevent: a\rdata: 1\n\ndata: x\r\ndata: y\r\n\r\n"
    events, rest = decode([data])
    assert [parse_event(e) for e in events][1:] == [
        parse_event(b"event: a\ndata: 1\n\n"), parse_event(b"data: x\ndata: y\n\n")]
    assert parse_event(events[2]).data == "x\ny"
    assert rest == b""


def test_cut_mid_event_leaves_pending():
    data = golden("text_only.sse")
    events, rest = decode([data[:-30]])
    assert rest and data.startswith(b"".join(events) + rest)


def test_bom_is_dropped():
    events, _ = decode([b"\xef\xbb", b"\xbfevent: x\ndata: 1\n\n"])
    assert event_name(events[0]) == "x"


def test_parse_event_fields():
    event = parse_event(b"event: message_delta\ndata: {\"a\":1}\nid: 7\nretry: 5\n: comment\n\n")
    assert event.name == "message_delta" and event.data == '{"a":1}'
    assert parse_event(b"data:nospace\n\n").data == "nospace"
    assert parse_event(b"data\n\n").data == ""


def test_event_name_fast_and_slow_paths():
    assert event_name(b"event: ping\ndata: {}\n\n") == "ping"
    assert event_name(b"event: ping\r\ndata: {}\r\n\r\n") == "ping"
    assert event_name(b"data: {}\nevent: late\n\n") == "late"
    assert event_name(b"data: {}\n\n") is None


def test_encode_round_trip():
    raw = encode_event("content_block_delta", {"type": "x", "text": "a\nb ☃"})
    assert raw.startswith(b"event: content_block_delta\ndata: {")
    assert parse_event(raw).data == '{"type":"x","text":"a\\nb ☃"}'
    assert encode_event(None, "line1\nline2") == b"data: line1\ndata: line2\n\n"
