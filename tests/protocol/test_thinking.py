"""Thinking blocks recorded from upstream answers and put back into the next request."""

import copy
import json
import subprocess
import sys
import time
from collections import OrderedDict

import pytest

from proxy.protocol import thinking as thinking_module
from proxy.protocol.sse import SSEDecoder, encode_event, event_name
from proxy.protocol.thinking_memory import ThinkingMemory, ThinkingStore
from proxy.protocol.thinking import (Placeholder, RestoreResult, Turn, TurnRecorder,
                                     disable_thinking, lookup_ids, restore, turn_from_message)
from proxy.protocol.translate import translate_request

from tests.fakes import HandClock
from tests.splits import every_split, golden
from tests.protocol.bodies import TOOL_USE, tool_loop

# -- the two golden answers, as Turns ---------------------------------------------------------

THINKING_1 = {"type": "thinking", "thinking": "Let me think about the weather.",
              "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3h"}
REDACTED_1 = {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4a"}
TURN_1 = Turn((THINKING_1, Placeholder("text"), REDACTED_1, Placeholder("tool_use", "toolu_1")))

REDACTED_2 = {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4a+/=="}
THINKING_2A = {"type": "thinking", "thinking": 'Two files: read "a.txt" first,\nthen b ☃ \U0001F600 \\ done.',
               "signature": "ErUBCkYIBxgCIkDx9+/Qx=="}
THINKING_2B = {"type": "thinking", "thinking": "Now b.", "signature": "EpgBCkYIBxgCIkB2sig=="}
TURN_2 = Turn((REDACTED_2, THINKING_2A, Placeholder("text"), Placeholder("tool_use", "toolu_01A"),
               THINKING_2B, Placeholder("tool_use", "toolu_01B")))

# The same answers as whole (non-streamed) messages' content.
MESSAGE_1 = [
    {"type": "thinking", "thinking": "Let me think about the weather.", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3h"},
    {"type": "text", "text": "Hi ☃ there"},
    {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4a"},
    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"location": "Paris"}},
]
MESSAGE_2 = json.loads(r'''[
    {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4a+/=="},
    {"type": "thinking", "thinking": "Two files: read \"a.txt\" first,\nthen b \u2603 \ud83d\ude00 \\ done.",
     "signature": "ErUBCkYIBxgCIkDx9+/Qx=="},
    {"type": "text", "text": "I'll read both. \"thinking_delta\"", "citations": null},
    {"type": "tool_use", "id": "toolu_01A", "name": "read", "input": {"path": "a.txt"}},
    {"type": "thinking", "thinking": "Now b.", "signature": "EpgBCkYIBxgCIkB2sig=="},
    {"type": "tool_use", "id": "toolu_01B", "name": "read", "input": {"path": "b.txt"}}
]''')

TEXT_1 = {"type": "text", "text": "Hi ☃ there"}
TOOL_1 = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"location": "Paris"}}
TEXT_2 = {"type": "text", "text": "I'll read both."}
TOOL_2A = {"type": "tool_use", "id": "toolu_01A", "name": "read", "input": {"path": "a.txt"}}
TOOL_2B = {"type": "tool_use", "id": "toolu_01B", "name": "read", "input": {"path": "b.txt"}}


def dumps(blocks):
    """Byte-level view of blocks: exactly what would go upstream."""
    return [json.dumps(b, ensure_ascii=False, separators=(",", ":")) for b in blocks]


def layout_dumps(turn):
    return [json.dumps(s, ensure_ascii=False) if isinstance(s, dict) else repr(s) for s in turn.layout]


def record(chunks, named=False):
    decoder, recorder = SSEDecoder(), TurnRecorder()
    for chunk in chunks:
        for raw in decoder.feed(chunk):
            if named:
                recorder.feed_event(event_name(raw), raw)
            else:
                recorder.feed(raw)
    for raw in decoder.close():
        recorder.feed(raw)
    return recorder


# -- TurnRecorder -------------------------------------------------------------------------------

@pytest.mark.parametrize("name, expected", [("thinking_text_tool.sse", TURN_1),
                                            ("redacted_interleaved_two_tools.sse", TURN_2)])
def test_recorder_same_turn_for_every_split(name, expected):
    data = golden(name)
    for chunks in every_split(data):
        recorder = record(chunks)
        turn = recorder.turn()
        assert turn == expected, [len(c) for c in chunks]
        assert layout_dumps(turn) == layout_dumps(expected)
        assert recorder.complete


def test_recorder_tool_use_ids_in_order():
    assert record([golden("redacted_interleaved_two_tools.sse")]).turn().tool_use_ids == ("toolu_01A", "toolu_01B")
    assert record([golden("thinking_text_tool.sse")]).turn().tool_use_ids == ("toolu_1",)


@pytest.mark.parametrize("name, expected", [("thinking_text_tool.sse", TURN_1),
                                            ("redacted_interleaved_two_tools.sse", TURN_2)])
def test_recorder_crlf_stream_same_turn(name, expected):
    """Events not in the usual layout take the SSE-spec parse: same turn."""
    data = golden(name).replace(b"\n", b"\r\n")
    for chunks in ([data], [data[i:i + 1] for i in range(len(data))], [data[:777], data[777:]]):
        assert layout_dumps(record(chunks).turn()) == layout_dumps(expected)


def test_recorder_feed_event_with_known_name():
    assert record([golden("redacted_interleaved_two_tools.sse")], named=True).turn() == TURN_2


@pytest.mark.parametrize("name", ["text_only.sse", "two_tools_no_args.sse", "error_mid.sse"])
def test_recorder_no_turn_without_thinking_or_tool_use(name):
    assert record([golden(name)]).turn() is None


def test_recorder_no_turn_for_thinking_without_tool_use():
    events = [
        encode_event("content_block_start", {"type": "content_block_start", "index": 0,
                                             "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
        encode_event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                             "delta": {"type": "thinking_delta", "thinking": "hm"}}),
        encode_event("content_block_stop", {"type": "content_block_stop", "index": 0}),
        encode_event("content_block_start", {"type": "content_block_start", "index": 1,
                                             "content_block": {"type": "text", "text": ""}}),
        encode_event("content_block_stop", {"type": "content_block_stop", "index": 1}),
    ]
    recorder = TurnRecorder()
    for raw in events:
        recorder.feed(raw)
    assert recorder.turn() is None


def test_recorder_cut_stream_is_no_turn():
    data = golden("redacted_interleaved_two_tools.sse")
    cut = data.rindex(b'event: content_block_stop\ndata: {"type":"content_block_stop","index":5}')
    recorder = record([data[:cut]])
    assert recorder.turn() is None and not recorder.complete
    # the same stream whole is a turn
    assert record([data]).turn() == TURN_2


def test_recorder_parses_only_block_starts_stops_and_thinking_deltas(monkeypatch):
    parsed = []
    real_loads = json.loads

    class CountingJson:
        @staticmethod
        def loads(payload):
            parsed.append(payload)
            return real_loads(payload)

        dumps = staticmethod(json.dumps)

    monkeypatch.setattr(thinking_module, "json", CountingJson)
    recorder = record([golden("redacted_interleaved_two_tools.sse")])
    assert recorder.turn() == TURN_2
    kinds = [real_loads(p)["type"] for p in parsed]
    # 6 starts, 6 stops, 3 thinking deltas; no message_start, ping, text/input_json deltas, message_delta
    assert sorted(kinds) == sorted(["content_block_start"] * 6 + ["content_block_stop"] * 6
                                   + ["content_block_delta"] * 3)
    assert all(b"text_delta" not in (p if isinstance(p, bytes) else p.encode()) for p in parsed)


def test_recorder_thinking_in_start_and_split_signature_concatenated():
    recorder = TurnRecorder()
    for raw in [
        encode_event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {
            "type": "thinking", "thinking": "Already ", "signature": "AB"}}),
        encode_event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                             "delta": {"type": "thinking_delta", "thinking": "here."}}),
        encode_event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                             "delta": {"type": "signature_delta", "signature": "CD"}}),
        encode_event("content_block_stop", {"type": "content_block_stop", "index": 0}),
        encode_event("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {
            "type": "tool_use", "id": "toolu_x", "name": "f", "input": {}}}),
        encode_event("content_block_stop", {"type": "content_block_stop", "index": 1}),
    ]:
        recorder.feed(raw)
    assert recorder.turn() == Turn(({"type": "thinking", "thinking": "Already here.", "signature": "ABCD"},
                                    Placeholder("tool_use", "toolu_x")))


def test_recorder_survives_malformed_and_stray_events():
    recorder = TurnRecorder()
    for raw in [b"event: content_block_start\ndata: {not json\n\n",
                b"event: content_block_stop\ndata: []\n\n",
                b'event: content_block_delta\ndata: {"type":"content_block_delta","index":9,'
                b'"delta":{"type":"thinking_delta","thinking":"x"}}\n\n',
                b"data: no event name\n\n"]:
        recorder.feed(raw)
    assert recorder.turn() is None
    for raw in SSEDecoder().feed(golden("thinking_text_tool.sse")):
        recorder.feed(raw)
    # a delta for a text block that claims to be thinking does not leak into the thinking
    recorder.feed(b'event: content_block_delta\ndata: {"type":"content_block_delta","index":1,'
                  b'"delta":{"type":"thinking_delta","thinking":"LEAK"}}\n\n')
    assert recorder.turn() == TURN_1


# -- turn_from_message ----------------------------------------------------------------------------

@pytest.mark.parametrize("name, content", [("thinking_text_tool.sse", MESSAGE_1),
                                           ("redacted_interleaved_two_tools.sse", MESSAGE_2)])
def test_turn_from_message_equals_streamed_turn(name, content):
    streamed = record([golden(name)]).turn()
    whole = turn_from_message(content)
    assert whole == streamed
    assert whole.to_json() == streamed.to_json()
    assert whole.tool_use_ids == streamed.tool_use_ids and whole.size == streamed.size


def test_turn_from_message_none_cases():
    assert turn_from_message([TEXT_1, TOOL_1]) is None                       # no thinking
    assert turn_from_message([THINKING_1, TEXT_1]) is None                   # no tool_use
    assert turn_from_message(None) is None and turn_from_message("text") is None
    assert turn_from_message([THINKING_1, {"type": "tool_use", "name": "f", "input": {}}]) is None  # no id


def test_turn_json_round_trip_is_byte_exact():
    for turn in (TURN_1, TURN_2):
        back = Turn.from_json(turn.to_json())
        assert back == turn and layout_dumps(back) == layout_dumps(turn)
        assert back.tool_use_ids == turn.tool_use_ids


def test_turn_size_tracks_utf8_bytes():
    def turn(text):
        return Turn(({"type": "thinking", "thinking": text, "signature": "s"}, Placeholder("tool_use", "t")))
    assert turn("é" * 1000).size - turn("e" * 1000).size == 1000
    assert turn("e" * 2000).size - turn("e" * 1000).size == 1000
    assert TURN_2.size > TURN_1.size > 0


# -- restore --------------------------------------------------------------------------------------

def body_with(assistant_content, thinking=None, results=("toolu_1",), **extra):
    return {
        "model": "claude-sonnet-4-5-20250929", "max_tokens": 8192,
        "thinking": thinking if thinking is not None else {"type": "enabled", "budget_tokens": 2048},
        "messages": [
            {"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "content": assistant_content},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": r, "content": "sunny"}
                                         for r in results]},
        ],
        **extra,
    }


class Recorded:
    """A lookup that answers from a dict and records what it was asked."""

    def __init__(self, turns):
        self.turns = turns
        self.asked = []

    def __call__(self, tool_use_id):
        self.asked.append(tool_use_id)
        return self.turns.get(tool_use_id)


def check_unchanged(body, snapshot):
    assert body == snapshot
    assert json.dumps(body, ensure_ascii=False) == json.dumps(snapshot, ensure_ascii=False)


def test_restore_anthropic_echo_text_and_tool_use():
    store = ThinkingStore()
    store.put(7, TURN_1)
    body = body_with([TEXT_1, TOOL_1])
    snapshot = copy.deepcopy(body)
    result = restore(body, store.lookup_for(7))
    assert result.status == "restored" and result.restored == 1
    content = result.body["messages"][1]["content"]
    assert dumps(content) == dumps([THINKING_1, TEXT_1, REDACTED_1, TOOL_1])
    assert content[1] is body["messages"][1]["content"][0] and content[3] is body["messages"][1]["content"][1]
    check_unchanged(body, snapshot)                                  # the caller's body is untouched
    assert result.body is not body and result.body["messages"] is not body["messages"]
    assert result.body["messages"][0] is body["messages"][0]         # unchanged messages are shared
    assert result.body["messages"][2] is body["messages"][2]
    assert result.body["thinking"] is body["thinking"]


def test_restored_blocks_are_copies():
    result = restore(body_with([TEXT_1, TOOL_1]), {"toolu_1": TURN_1}.get)
    result.body["messages"][1]["content"][0]["thinking"] = "changed"
    assert TURN_1.layout[0]["thinking"] == "Let me think about the weather."


def test_restore_interleaved_thinking_at_original_positions():
    body = body_with([TEXT_2, TOOL_2A, TOOL_2B], results=("toolu_01A", "toolu_01B"))
    result = restore(body, {"toolu_01A": TURN_2, "toolu_01B": TURN_2}.get)
    assert result.status == "restored"
    assert dumps(result.body["messages"][1]["content"]) == dumps(
        [REDACTED_2, THINKING_2A, TEXT_2, TOOL_2A, THINKING_2B, TOOL_2B])


def openai_request(assistant):
    return {
        "model": "claude-sonnet-4-5", "reasoning_effort": "medium",
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object", "properties": {"location": {"type": "string"}}}}}],
        "messages": [
            {"role": "user", "content": "What is the weather in Paris?"},
            assistant,
            {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
        ],
    }


def openai_call(call_id="toolu_1", name="get_weather", arguments='{"location": "Paris"}'):
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def test_restore_openai_translated_echo_without_text():
    body = translate_request(openai_request({"role": "assistant", "content": None, "tool_calls": [openai_call()]}),
                             "claude-sonnet-4-5-20250929", 64000, True)
    assert body["thinking"]["type"] == "enabled"
    assert body["messages"][1]["content"] == [TOOL_1]
    result = restore(body, {"toolu_1": TURN_1}.get)
    assert result.status == "restored"
    # one client block for two recorded ones: thinking first, then the client's blocks
    assert dumps(result.body["messages"][1]["content"]) == dumps([THINKING_1, REDACTED_1, TOOL_1])


def test_restore_openai_translated_echo_with_text():
    body = translate_request(openai_request({"role": "assistant", "content": "Hi ☃ there",
                                             "tool_calls": [openai_call()]}),
                             "claude-sonnet-4-5-20250929", 64000, True)
    result = restore(body, {"toolu_1": TURN_1}.get)
    assert dumps(result.body["messages"][1]["content"]) == dumps([THINKING_1, TEXT_1, REDACTED_1, TOOL_1])


def test_restore_openai_two_calls_no_text_thinking_first():
    body = body_with([TOOL_2A, TOOL_2B], results=("toolu_01A", "toolu_01B"))
    result = restore(body, {"toolu_01A": TURN_2}.get)
    assert dumps(result.body["messages"][1]["content"]) == dumps(
        [REDACTED_2, THINKING_2A, THINKING_2B, TOOL_2A, TOOL_2B])


@pytest.mark.parametrize("client, expected", [
    ([TOOL_1, TEXT_1], [THINKING_1, REDACTED_1, TOOL_1, TEXT_1]),                 # same count, other order
    ([TEXT_1, TEXT_2, TOOL_1], [THINKING_1, REDACTED_1, TEXT_1, TEXT_2, TOOL_1]),   # more blocks
    ([TOOL_1], [THINKING_1, REDACTED_1, TOOL_1]),                                  # fewer blocks
])
def test_restore_mismatched_blocks_thinking_first(client, expected):
    result = restore(body_with(client), {"toolu_1": TURN_1}.get)
    assert result.status == "restored"
    assert dumps(result.body["messages"][1]["content"]) == dumps(expected)


def test_restore_replaces_client_thinking_that_is_not_first():
    stray = {"type": "thinking", "thinking": "made up", "signature": ""}
    result = restore(body_with([TEXT_1, stray, TOOL_1]), {"toolu_1": TURN_1}.get)
    assert dumps(result.body["messages"][1]["content"]) == dumps([THINKING_1, TEXT_1, REDACTED_1, TOOL_1])


def test_apply_string_content():
    assert dumps(TURN_1.apply("Hi ☃ there")) == dumps([THINKING_1, REDACTED_1, TEXT_1])
    text_turn = Turn((THINKING_1, Placeholder("text")))
    assert dumps(text_turn.apply("Hi ☃ there")) == dumps([THINKING_1, TEXT_1])
    assert dumps(text_turn.apply("")) == dumps([THINKING_1])


def test_restore_string_content_assistant_is_missing():
    """A string has no tool_use id to find the turn by (and upstream would refuse its
    tool_result anyway): the thinking requirement cannot be met."""
    lookup = Recorded({"toolu_1": TURN_1})
    result = restore(body_with("Hi ☃ there"), lookup)
    assert result.status == "missing" and "no tool_use" in result.reason
    assert lookup.asked == []


def test_restore_adaptive_thinking_counts_as_on():
    result = restore(body_with([TEXT_1, TOOL_1], thinking={"type": "adaptive"}), {"toolu_1": TURN_1}.get)
    assert result.status == "restored"


def _no_assistant(body):
    body["messages"] = [body["messages"][0], body["messages"][2]]
    return body


def _only_results(body):
    body["messages"] = [body["messages"][2]]
    return body


def _assistant_last(body):
    body["messages"] = body["messages"][:2]
    return body


def _no_thinking(body):
    del body["thinking"]
    return body


@pytest.mark.parametrize("change", [
    _no_thinking,
    lambda b: {**b, "thinking": {"type": "disabled"}},
    lambda b: {**b, "thinking": "enabled"},
    lambda b: b["messages"][1].update(content=[THINKING_1, TEXT_1, TOOL_1]) or b,      # already starts with it
    lambda b: b["messages"][1].update(content=[REDACTED_1, TOOL_1]) or b,
    lambda b: b["messages"][2].update(content="sunny, thanks") or b,                    # no tool_result
    lambda b: b["messages"][2].update(content=[{"type": "text", "text": "go on"}]) or b,
    _no_assistant,
    _only_results,
    _assistant_last,
], ids=["absent", "disabled", "malformed", "starts-thinking", "starts-redacted", "string-user",
        "text-user", "no-assistant", "only-results", "assistant-last"])
def test_restore_not_needed(change):
    body = change(body_with([TEXT_1, TOOL_1]))
    snapshot = copy.deepcopy(body)
    lookup = Recorded({"toolu_1": TURN_1})
    result = restore(body, lookup, scope="last")
    assert result.status == "not_needed" and result.restored == 0 and result.reason
    assert result.body is body
    assert lookup.asked == []
    check_unchanged(body, snapshot)


def test_restore_missing_unknown_ids():
    body = body_with([TEXT_1, TOOL_1])
    store = ThinkingStore()
    store.put(1, TURN_2)
    result = restore(body, store.lookup_for(1))
    assert result == RestoreResult("missing", body, 0, "messages.1: no recorded turn for its tool_use ids")
    assert result.body is body


def test_restore_missing_for_another_keys_turn():
    store = ThinkingStore()
    store.put(1, TURN_1)
    body = body_with([TEXT_1, TOOL_1])
    assert restore(body, store.lookup_for(2)).status == "missing"
    assert restore(body, store.lookup_for(1)).status == "restored"


def test_restore_missing_when_ids_span_two_turns():
    other = Turn((THINKING_2B, Placeholder("tool_use", "toolu_2")))
    tool_2 = {"type": "tool_use", "id": "toolu_2", "name": "f", "input": {}}
    body = body_with([TOOL_1, tool_2], results=("toolu_1", "toolu_2"))
    result = restore(body, {"toolu_1": TURN_1, "toolu_2": other}.get)
    assert result.status == "missing" and "not all from one" in result.reason
    # an id the turn does not know is just as wrong
    tool_x = {"type": "tool_use", "id": "toolu_x", "name": "f", "input": {}}
    assert restore(body_with([TOOL_1, tool_x], results=("toolu_1", "toolu_x")),
                   {"toolu_1": TURN_1}.get).status == "missing"


def test_restore_uses_first_id_that_is_found():
    lookup = Recorded({"toolu_01B": TURN_2})  # e.g. a networked memory lost one index entry
    body = body_with([TEXT_2, TOOL_2A, TOOL_2B], results=("toolu_01A", "toolu_01B"))
    result = restore(body, lookup, scope="last")
    assert result.status == "restored" and lookup.asked == ["toolu_01A", "toolu_01B"]
    lookup = Recorded({"toolu_01A": TURN_2, "toolu_01B": TURN_2})
    restore(body, lookup, scope="last")
    assert lookup.asked == ["toolu_01A"]


# A conversation of two user turns: the first a tool loop (a1) ending in a text answer (a2),
# the second a tool loop still running (a3, a4).
def conversation():
    def asst(call_id, text=None):
        blocks = [{"type": "text", "text": text}] if text else []
        return {"role": "assistant", "content": blocks + [{"type": "tool_use", "id": call_id, "name": "f",
                                                           "input": {}}]}

    def result(call_id):
        return {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call_id, "content": "ok"}]}

    return {"model": "m", "max_tokens": 4096, "thinking": {"type": "enabled", "budget_tokens": 1024}, "messages": [
        {"role": "user", "content": "first"}, asst("t1", "Looking."), result("t1"),
        {"role": "assistant", "content": "Done."}, {"role": "user", "content": "second"},
        asst("t3"), result("t3"), asst("t4"), result("t4"),
    ]}


def _turn(call_id, text=False):
    block = {"type": "thinking", "thinking": f"about {call_id}", "signature": f"sig-{call_id}"}
    return Turn((block, *([Placeholder("text")] if text else []), Placeholder("tool_use", call_id)))


TURNS = {"t1": _turn("t1", text=True), "t3": _turn("t3"), "t4": _turn("t4")}


@pytest.mark.parametrize("scope, restored", [("last", [7]), ("loop", [5, 7]), ("all", [1, 5, 7])])
def test_restore_scope(scope, restored):
    body = conversation()
    snapshot = copy.deepcopy(body)
    result = restore(body, TURNS.get, scope=scope)
    assert result.status == "restored" and result.restored == len(restored)
    changed = [i for i, (a, b) in enumerate(zip(body["messages"], result.body["messages"])) if a is not b]
    assert changed == restored
    for i in restored:
        content = result.body["messages"][i]["content"]
        call_id = content[-1]["id"]
        assert content[0] == {"type": "thinking", "thinking": f"about {call_id}", "signature": f"sig-{call_id}"}
    assert lookup_ids(body, scope) == [body["messages"][i]["content"][-1]["id"] for i in restored]
    check_unchanged(body, snapshot)


def test_restore_earlier_turns_even_when_the_last_needs_nothing():
    body = conversation()
    body["messages"] = body["messages"][:5]  # ends with the user text "second"
    result = restore(body, TURNS.get)
    assert result.status == "restored" and result.restored == 1
    assert result.body["messages"][1]["content"][0]["signature"] == "sig-t1"
    assert restore(body, TURNS.get, scope="loop").status == "not_needed"


def test_restore_earlier_turns_skipped_when_unknown_and_nothing_when_last_is_missing():
    body = conversation()
    result = restore(body, {"t4": TURNS["t4"]}.get)
    assert result.status == "restored" and result.restored == 1
    lookup = Recorded({"t1": TURNS["t1"], "t3": TURNS["t3"]})
    result = restore(body, lookup)
    assert result.status == "missing" and result.body is body
    assert lookup.asked == ["t4"]  # the required message is tried first


def test_lookup_ids_empty_when_thinking_off():
    body = conversation()
    del body["thinking"]
    assert lookup_ids(body) == []
    assert lookup_ids(conversation()) == ["t1", "t3", "t4"]


# -- disable_thinking -----------------------------------------------------------------------------

def test_disable_thinking_keeps_everything_else():
    body = body_with([TEXT_1, TOOL_1], temperature=1, top_p=0.99, tool_choice={"type": "auto"},
                     output_config={"effort": "high"})
    snapshot = copy.deepcopy(body)
    out = disable_thinking(body)
    assert "thinking" not in out
    assert {k: v for k, v in snapshot.items() if k != "thinking"} == out
    assert out["messages"] is body["messages"]
    check_unchanged(body, snapshot)


def test_disable_thinking_drops_clear_thinking_edits():
    clear_tools = {"type": "clear_tool_uses_20250919", "keep": {"type": "tool_uses", "value": 3}}
    clear_thinking = {"type": "clear_thinking_20251015", "keep": "all"}
    body = body_with([TOOL_1], context_management={"edits": [clear_thinking, clear_tools]})
    snapshot = copy.deepcopy(body)
    assert disable_thinking(body)["context_management"] == {"edits": [clear_tools]}
    check_unchanged(body, snapshot)
    body = body_with([TOOL_1], context_management={"edits": [clear_thinking]})
    assert "context_management" not in disable_thinking(body)
    body = body_with([TOOL_1], context_management={"edits": [clear_tools]})
    assert disable_thinking(body)["context_management"] is body["context_management"]


def test_disable_thinking_without_thinking_is_a_copy():
    body = _no_thinking(body_with([TOOL_1]))
    out = disable_thinking(body)
    assert out == body and out is not body


# -- ThinkingStore --------------------------------------------------------------------------------

def small_turn(call_id, text="x"):
    return Turn(({"type": "thinking", "thinking": text, "signature": "s"}, Placeholder("tool_use", call_id)))


def test_store_indexes_a_turn_by_each_tool_use_id_once():
    store = ThinkingStore(clock=HandClock())
    store.put(3, TURN_2)
    assert store.get(3, "toolu_01A") is TURN_2 and store.get(3, "toolu_01B") is TURN_2
    assert len(store) == 1 and store.bytes == TURN_2.size
    assert store.get(3, "toolu_1") is None and store.get(4, "toolu_01A") is None


def test_store_ttl_is_sliding():
    clock = HandClock()
    store = ThinkingStore(ttl=3600, clock=clock)
    store.put(1, TURN_1)
    store.put(1, TURN_2)
    clock.now += 3599
    assert store.get(1, "toolu_1") is TURN_1       # found: its hour starts again
    clock.now += 2
    assert store.get(1, "toolu_01A") is None       # untouched for 3601 s: gone
    assert store.get(1, "toolu_01B") is None and len(store) == 1 and store.bytes == TURN_1.size
    clock.now += 3597                               # 3599 s since TURN_1 was found
    assert store.get(1, "toolu_1") is TURN_1
    clock.now += 3600
    assert store.get(1, "toolu_1") is None and len(store) == 0 and store.bytes == 0


def test_store_expiry_also_on_put():
    clock = HandClock()
    store = ThinkingStore(ttl=10, clock=clock)
    store.put(1, small_turn("a"))
    clock.now += 11
    store.put(1, small_turn("b"))
    assert len(store) == 1 and store.bytes == small_turn("b").size


def test_store_lru_by_count_evicts_all_ids_of_a_turn():
    store = ThinkingStore(max_turns=2, clock=HandClock())
    store.put(1, TURN_1)
    store.put(1, TURN_2)
    store.put(1, small_turn("c"))                   # TURN_1 is the least recent
    assert store.get(1, "toolu_1") is None
    assert store.get(1, "toolu_01A") is TURN_2      # now TURN_2 is the most recent
    store.put(1, small_turn("d"))                   # "c" goes
    assert store.get(1, "c") is None and store.get(1, "d") is not None
    store.put(2, small_turn("e"))                   # TURN_2 goes, with both its ids
    assert store.get(1, "toolu_01A") is None and store.get(1, "toolu_01B") is None
    assert len(store) == 2 and store.bytes == small_turn("d").size + small_turn("e").size


def test_one_key_cannot_evict_every_other_keys_turns():
    """The probe's finding: one key looping through thousands of tool turns evicted
    another key's conversation from a shared LRU. Each key now has its own share."""
    store = ThinkingStore(max_turns=100, max_turns_per_key=10, clock=HandClock())
    store.put(1, small_turn("carol"))
    for i in range(1_000):
        store.put(2, small_turn(f"dave-{i}"))
    assert store.get(1, "carol") is not None
    assert store.get(2, "dave-999") is not None and store.get(2, "dave-989") is None
    assert len(store) == 11 and store.bytes == small_turn("carol").size + 10 * small_turn("dave-999").size


def test_a_keys_byte_share_is_bounded_too():
    a, b = small_turn("a", "a" * 1000), small_turn("b", "b" * 1000)
    store = ThinkingStore(max_bytes_per_key=a.size + b.size - 1, clock=HandClock())
    store.put(7, a)
    store.put(7, b)
    store.put(8, small_turn("other"))
    assert store.get(7, "a") is None and store.get(7, "b") is b and store.get(8, "other") is not None


def test_store_byte_budget():
    a, b, c = small_turn("a", "a" * 1000), small_turn("b", "b" * 1000), small_turn("c", "c" * 1000)
    store = ThinkingStore(max_bytes=a.size + b.size + c.size - 1, clock=HandClock())
    store.put(1, a)
    store.put(1, b)
    assert store.get(1, "a") is a                   # b is now the least recent
    store.put(1, c)
    assert store.get(1, "b") is None and store.get(1, "a") is a and store.get(1, "c") is c
    assert store.bytes == a.size + c.size <= store.max_bytes


def test_store_skips_a_turn_larger_than_the_budget():
    small = small_turn("a")
    store = ThinkingStore(max_bytes=small.size * 3, clock=HandClock())
    store.put(1, small)
    store.put(1, small_turn("big", "z" * (small.size * 3)))
    assert store.get(1, "big") is None and store.get(1, "a") is small and store.bytes == small.size


def test_store_re_put_replaces():
    store = ThinkingStore(clock=HandClock())
    store.put(1, TURN_2)
    store.put(1, TURN_2)
    assert len(store) == 1 and store.bytes == TURN_2.size
    newer = small_turn("toolu_01A", "again")
    store.put(1, newer)                             # overlaps TURN_2: TURN_2 goes entirely
    assert store.get(1, "toolu_01A") is newer and store.get(1, "toolu_01B") is None
    assert len(store) == 1 and store.bytes == newer.size
    store.put(2, TURN_2)                            # another key's copy is separate
    assert store.get(1, "toolu_01A") is newer and store.get(2, "toolu_01A") is TURN_2


def test_store_lookup_for_is_per_key():
    store = ThinkingStore(clock=HandClock())
    store.put(5, TURN_1)
    assert store.lookup_for(5)("toolu_1") is TURN_1
    assert store.lookup_for(6)("toolu_1") is None


def test_stores_share_nothing():
    first, second = ThinkingStore(), ThinkingStore()
    first.put(1, TURN_1)
    assert first.get(1, "toolu_1") is TURN_1 and second.get(1, "toolu_1") is None and len(second) == 0
    mutable = (dict, list, set, OrderedDict, bytearray)
    module_state = [name for name, value in vars(thinking_module).items()
                    if not name.startswith("__") and isinstance(value, mutable)]
    assert module_state == []


async def test_store_is_a_thinking_memory():
    store = ThinkingStore(clock=HandClock())
    memory: ThinkingMemory = store
    await memory.remember(9, TURN_2)
    found = await memory.recall(9, ["toolu_01A", "toolu_01B", "toolu_zz"])
    assert found == {"toolu_01A": TURN_2, "toolu_01B": TURN_2}
    assert await memory.recall(8, ["toolu_01A"]) == {}
    body = body_with([TEXT_2, TOOL_2A, TOOL_2B], results=("toolu_01A", "toolu_01B"))
    found = await memory.recall(9, lookup_ids(body))
    assert restore(body, found.get).status == "restored"


# -- purity ---------------------------------------------------------------------------------------

def test_importing_the_module_loads_no_io_library():
    code = ("import sys, proxy.protocol.thinking; "
            "bad = {'trio', 'quart', 'quart_trio', 'httpx', 'hypercorn', 'sqlite3', 'socket'} & set(sys.modules); "
            "print(sorted(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- micro-benchmark ------------------------------------------------------------------------------

def claude_code_body():
    """About 120 KB: a long system prompt, 24 tools, 41 messages of a tool loop."""
    words = "the quick brown fox jumps over the lazy dog while reading files and running tests "
    tools = [{"name": f"Tool{i}", "description": (words * 22)[:1800],
              "input_schema": {"type": "object", "properties": {
                  f"arg{j}": {"type": "string", "description": (words * 2)[:120]} for j in range(4)},
                  "required": ["arg0"], "additionalProperties": False}} for i in range(24)]
    messages = [{"role": "user", "content": [{"type": "text", "text": "Fix the failing test. " + words * 10}]}]
    for i in range(20):
        messages.append({"role": "assistant", "content": [
            {"type": "text", "text": f"Step {i}: " + words * 2},
            {"type": "tool_use", "id": f"toolu_{i:024d}", "name": f"Tool{i % 24}",
             "input": {"arg0": f"/src/file_{i}.py", "arg1": words}}]})
        messages.append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": f"toolu_{i:024d}", "content": (words * 30)[:2300]}]})
    return {"model": "claude-sonnet-4-5-20250929", "max_tokens": 32000, "stream": True,
            "thinking": {"type": "enabled", "budget_tokens": 16000},
            "system": [{"type": "text", "text": (words * 160)[:12000], "cache_control": {"type": "ephemeral"}}],
            "tools": tools, "messages": messages}


def test_restore_micro_benchmark():
    body = claude_code_body()
    size = len(json.dumps(body))
    store = ThinkingStore()
    for i in range(20):
        store.put(1, Turn(({"type": "thinking", "thinking": "I should look at the file. " * 60,
                            "signature": "E" * 400}, Placeholder("text"), Placeholder("tool_use", f"toolu_{i:024d}"))))
    lookup = store.lookup_for(1)

    def per_call(fn, n=400):
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(n):
                fn()
            best = min(best, (time.perf_counter() - start) / n)
        return best * 1e6

    assert restore(body, lookup).restored == 20 and restore(body, lookup, "last").restored == 1
    figures = {
        "restore scope=all (20 turns put back)": per_call(lambda: restore(body, lookup)),
        "restore scope=loop": per_call(lambda: restore(body, lookup, "loop")),
        "restore scope=last": per_call(lambda: restore(body, lookup, "last")),
        "restore, thinking off": per_call(lambda: restore({**body, "thinking": {"type": "disabled"}}, lookup)),
        "lookup_ids scope=all": per_call(lambda: lookup_ids(body)),
        "json.dumps of the restored body (for scale)":
            per_call(lambda: json.dumps(restore(body, lookup).body, ensure_ascii=False), n=40),
    }
    print(f"\nrestore() micro-benchmark, body {size / 1024:.0f} KiB, {len(body['tools'])} tools, "
          f"{len(body['messages'])} messages:")
    for name, micros in figures.items():
        print(f"  {name}: {micros:.1f} µs/call")


# -- restore on malformed bodies (was a 500 with an empty body, no request-id) -----------------

@pytest.mark.parametrize("kind", [[], ["enabled"], {"a": 1}])
def test_lookup_ids_survives_unhashable_thinking_type(kind):
    assert lookup_ids(tool_loop([TOOL_USE], thinking={"type": kind})) == []


@pytest.mark.parametrize("kind", [["thinking"], {"x": 1}])
def test_lookup_ids_survives_unhashable_block_type(kind):
    lookup_ids(tool_loop([{"type": kind}, TOOL_USE]))


def test_restore_survives_unhashable_block_type_in_client_content():
    turn = Turn(({"type": "thinking", "thinking": "t", "signature": "s"}, Placeholder("tool_use", "toolu_1")))
    result = restore(tool_loop([TOOL_USE, {"type": ["x"]}]), {"toolu_1": turn}.get)
    assert result.status == "restored"
