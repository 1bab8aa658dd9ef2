"""Hostile JSON, generated with Hypothesis, against every endpoint.

For every generated request (sent to the gateway's app in-process through httpx's
ASGITransport, with the simulator's script as the upstream: the socket path is not
what is probed here) the gateway must answer:

* never a 5xx, never an empty body, always a ``request-id`` header;
* in the endpoint's wire shape: Anthropic ``{"type": "error", "error": {"type",
  "message"}, "request_id"}`` on /v1/messages and count_tokens, OpenAI
  ``{"error": {"message", "type", "param", "code"}}`` on /v1/chat/completions, the
  transfer API's ``{"success": false, "error", "message"}`` on /api/user/transfer;
* a body the gateway's own parser (orjson) refuses is a 400;
* afterwards no hold is open, and the balance is unchanged unless the request
  succeeded with 200: then it went down by exactly what the ledger charged for this
  request id, which is the usage row's cost (and the ``x-cheaplm-cost-usd`` header for
  a whole answer), or by exactly the amount of a transfer; the ledger always sums to
  the balance.

What is sent: for each endpoint, requests whose every field (model, max_tokens,
messages, content blocks, tools, tool_choice, thinking, stream, system, metadata,
temperature...; OpenAI messages, tool_calls and their arguments, response_format,
reasoning_effort, stop, n...; transfer toUsername and amount) now and then holds any
JSON value, a wrong type, a huge, negative, float or boolean number, an empty string,
an unknown role; clean requests with exactly one node, at any depth, replaced or
removed; and bodies broken at the byte level: NaN/Infinity, lone surrogate escapes,
invalid UTF-8, nesting up to 5000 deep, duplicate keys, trailing garbage, a BOM,
truncation, non-objects, random bytes. /v1/models gets hostile ids and query values.
With ``pytest -s`` each property test prints what the gateway answered (status counts,
known bugs met; ``CHEAPLM_HOSTILE_VERBOSE=1`` adds every error message).

How it runs: pytest-trio would set up every trio fixture again for each Hypothesis
example (a new gateway, and the same ``alice`` created twice in one database), so
each test starts one gateway through the usual fixtures and runs a plain, synchronous
``@given`` function in a worker thread (``trio.to_thread``); each example sends its
request and reads the store in the gateway's trio loop (``trio.from_thread.run``)
and asserts in the thread, where Hypothesis shrinks a failure and prints the
request's bytes. ``derandomize=True`` and ``database=None``: the same examples on
every run. ``CHEAPLM_HOSTILE_EXAMPLES=N`` multiplies the example counts and
``CHEAPLM_HOSTILE_RANDOM=1`` draws fresh examples, for a longer hunt.

Bugs found are registered in ``KNOWN_BUGS``: each one's reproduction is a strict
xfail in ``test_known_bug``, and the property tests accept only that bug's exact
symptom for requests matching its predicate (and still check the money). When a bug
is fixed its xfail passes, strict, and fails the suite: delete its entry.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from types import SimpleNamespace
from typing import Any, Callable
from urllib.parse import quote, unquote

import httpx
import orjson
import pytest
import trio
from hypothesis import HealthCheck, currently_in_test_context, given, note, settings
from hypothesis import strategies as st

from proxy.money import parse_usd
from proxy.protocol.translate import translate_request
from proxy.simulator import script as sim_script

from tests.conftest import in_process_config, make_account, serve_in_process

MESSAGES = "/v1/messages"
COUNT = "/v1/messages/count_tokens"
CHAT = "/v1/chat/completions"
TRANSFER = "/api/user/transfer"
POST_PATHS = (MESSAGES, COUNT, CHAT, TRANSFER)
START = 10_000_000  # alice's credit, micro-USD; topped up again when below half

SCALE = int(os.environ.get("CHEAPLM_HOSTILE_EXAMPLES", "1"))
VERBOSE = os.environ.get("CHEAPLM_HOSTILE_VERBOSE") == "1"  # with pytest -s: every error message seen
SETTINGS = dict(deadline=None, database=None, derandomize=os.environ.get("CHEAPLM_HOSTILE_RANDOM") != "1",
                print_blob=False, suppress_health_check=list(HealthCheck))


@pytest.fixture
async def alice(nursery, ledger):
    """alice on the gateway in-process (the relay and the Quart app through ASGITransport,
    the simulator's script at the Upstream cut), with room for many transfers a minute
    (the rate limit is tested in test_transfer.py; here every example must reach the
    body checks)."""
    config = replace(in_process_config(ledger), transfers_per_minute=1_000_000)
    return await make_account(await nursery.start(serve_in_process, config))


# -- JSON text with hostile pieces ---------------------------------------------------------

@dataclass(frozen=True)
class Raw:
    """Bytes emitted verbatim: literals and escapes no JSON encoder would write."""

    data: bytes


@dataclass(frozen=True)
class Dup:
    """An object written from (key, value) pairs, repeated keys allowed; a key may be Raw."""

    pairs: tuple


def encode(value: Any) -> bytes:
    if isinstance(value, Raw):
        return value.data
    if isinstance(value, (dict, Dup)):
        pairs = value.pairs if isinstance(value, Dup) else value.items()
        return b"{" + b",".join(encode(k) + b":" + encode(v) for k, v in pairs) + b"}"
    if isinstance(value, list):
        return b"[" + b",".join(encode(v) for v in value) + b"]"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return json.dumps(value).encode()  # None, bool, int, float (finite)


def deep(depth: int, kind: str = "[") -> Raw:
    if kind == "[":
        return Raw(b"[" * depth + b"1" + b"]" * depth)
    return Raw(b'{"a":' * depth + b"1" + b"}" * depth)


# Valid JSON that is still odd: orjson accepts these.
ODD_VALID = [Raw(b"-0"), Raw(b"1E2"), Raw(b"0.0"), Raw(b"5e-324"), Raw(b"1.7976931348623157e308"),
             Raw(b"18446744073709551615"), Raw(b"-9223372036854775808"), Raw(b"18446744073709551616"),
             Raw(b'"\\ud83d\\ude00"'), Raw(b'"\\u0000"'), Raw(b'""'), Raw(b'" "'), Raw(b'"\\n"'), Raw(b"[]"),
             Raw(b"{}"), Raw(b'"\xe2\x80\xae\xef\xbb\xbf"')]
# Pieces that make the whole document invalid for orjson (the gateway must say 400).
BREAKERS = [Raw(b"NaN"), Raw(b"Infinity"), Raw(b"-Infinity"), Raw(b"nan"), Raw(b"1e400"), Raw(b"-1e999"),
            Raw(b"9" * 400), Raw(b'"\\ud800"'), Raw(b'"\\udfff x"'), Raw(b'"a\\ud800\\u0041"'), Raw(b'"\xff\xfe"'),
            Raw(b'"\xc3\x28"'), Raw(b'"\xed\xa0\x80"'), Raw(b'"\xc0\xaf"'), Raw(b"[1,]"), Raw(b"'x'"),
            Raw(b"undefined"), Raw(b"0x10"), Raw(b"01"), Raw(b".5"), Raw(b"+1"), Raw(b"1."), Raw(b'"\\x41"'),
            Raw(b'"tab\there"'), Raw(b"tru"), Raw(b'"unterminated')]
VALID_DEPTHS = [3, 50, 200, 300, 700]         # nested inside a request: still under orjson's 1024
BREAKING_DEPTHS = [1000, 1024, 1030, 5000]    # over 1024 once inside a request


def texts(max_size: int = 12, min_size: int = 0) -> st.SearchStrategy[str]:
    # A "[sim ...]" directive would make the simulator fault on purpose.
    return st.text(min_size=min_size, max_size=max_size).filter(lambda s: "[sim" not in s)


def weighted(good: st.SearchStrategy, bad: st.SearchStrategy, ratio: int) -> st.SearchStrategy:
    """``good`` ``ratio`` times as often as ``bad`` (and shrinking towards ``good``).
    Repeating a strategy in ``st.one_of`` does not weigh it: repeats are merged."""
    return st.sampled_from(range(ratio + 1)).flatmap(lambda i: bad if i == ratio else good)


scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-2**64, 2**64),
                    st.floats(allow_nan=False, allow_infinity=False), texts())
keys = weighted(texts(6), st.sampled_from([Raw(b'"type"'), Raw(b'""'), Raw(b'"\\u0000"'), Raw(b'"\\ud83d\\ude00"')]),
                3)
# Pieces that break the document: one of them anywhere makes the body a 400.
breaking = st.one_of(st.sampled_from(BREAKERS), st.builds(deep, st.sampled_from(BREAKING_DEPTHS),
                                                          st.sampled_from("[{")),
                     st.just(Dup(((Raw(b'"\\ud800"'), 1),))), st.just(Dup(((Raw(b"1"), 1),))))


def _objects(children):
    return st.one_of(st.dictionaries(texts(6), children, max_size=3),
                     st.lists(st.tuples(keys, children), max_size=3).map(lambda p: Dup(tuple(p))))


# Any valid JSON value: mostly plain, sometimes odd, sometimes deep (up to 700 levels).
json_values = st.recursive(
    weighted(scalars, st.one_of(st.sampled_from(ODD_VALID),
                                st.builds(deep, st.sampled_from(VALID_DEPTHS), st.sampled_from("[{"))), 4),
    lambda c: st.one_of(st.lists(c, max_size=3), _objects(c)), max_leaves=6)
ints_hostile = st.one_of(
    st.integers(-3, 3), st.sampled_from([2**31, 2**53 + 1, 2**63 - 1, 2**64 - 1, -2**63, 65536, 200_000]),
    st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([10.0, 1.5, -0.0, 1e300]), st.booleans(),
    st.sampled_from(["100", "", "1e3", " 5"]),
    st.sampled_from([Raw(b"100.0"), Raw(b"1E2"), Raw(b"-0"), Raw(b"9" * 19), Raw(b"18446744073709551616")]))


def hostile(good: st.SearchStrategy, *extra: st.SearchStrategy) -> st.SearchStrategy:
    """Usually ``good``; now and then any JSON value, or one of ``extra``."""
    return weighted(good, st.one_of(json_values, *extra), 10)


ABSENT = Raw(b"<absent>")  # a value that drops its key (fields may be left out)


def fields(required: dict, optional: dict) -> st.SearchStrategy[dict]:
    """A request object: ``required`` keys present (unless drawn ABSENT), ``optional``
    maybe, sometimes an unknown one."""
    unknown = weighted(st.just({}), st.dictionaries(texts(8), json_values, min_size=1, max_size=1), 4)
    return st.tuples(st.fixed_dictionaries(required, optional=optional), unknown).map(
        lambda t: {k: v for k, v in {**t[1], **t[0]}.items() if v is not ABSENT})


# -- requests: hostile fields, or clean ones to mutate once -----------------------------------

MODEL_IDS = ["claude-sonnet-4.5", "claude-sonnet-4-5-20250929", "claude-haiku-4.5", "claude-haiku-4-5-20251001",
             "claude-opus-4-6", "claude-opus-4.6", "claude-opus-4-8", "claude-3-5-haiku", " CLAUDE-SONNET-4.5 ",
             "claude-sonnet-4-5-latest", "claude-opus-4", "sonnet"]
ODD_MODELS = ["gpt-4o", "", " ", "claude-sonnet-4.5\u0000", "claude-\u0130", "x" * 300]
ROLES = ["user", "assistant", "system", "tool", "developer", "", "USER", "model", "function"]
AMOUNTS = [0.01, 0.5, 1, "0.25", "1e-2", 0.000001, "0.000001", 2.5, "3", 0, -1, -0.5, 1e-7, "1e-7", "abc", "NaN",
           "Infinity", "-Infinity", "sNaN", "1e999999999", "1e5000", "1e-999999999", "1_0", " 2 ", "0x10",
           "\u0661", "$1", "1,5", "", True, False, None, [], {}, 9.999999, 10.000001, 1e308, 2**63 - 1,
           "-0", -0.0, "0.0000001", "1e+2", "+1"]
ODD_ARGUMENTS = ["", "null", "[1]", '{"a": NaN}', '{"a": Infinity}', '{"a": 1e400}', '{"a":1,"a":2}',
                 '{"a": "\\ud83d\\ude00"}', '{"a": 1} trailing', '{"a": "\\udc00"}', "{'a': 1}"]


def _json_text(value) -> str:
    return encode(value).decode("utf-8", "replace")


def _requests(hostile_fields: bool) -> SimpleNamespace:
    """Request strategies for every endpoint. With ``hostile_fields`` any field, at any
    depth, may now and then hold a wrong value; without, requests the gateway should
    accept (the base that ``mutated`` breaks in exactly one place)."""

    def h(good, *extra):
        return hostile(good, *extra) if hostile_fields else good

    def w(good, bad, ratio):
        return weighted(good, bad, ratio) if hostile_fields else good

    models = h(st.sampled_from(MODEL_IDS), st.sampled_from(ODD_MODELS))
    max_tokens = w(st.integers(1, 400), st.one_of(ints_hostile, json_values), 5)
    streams = w(st.sampled_from([True, False, ABSENT]),
                st.one_of(json_values, st.sampled_from([None, 0, 1, "true", "false", [], {}])), 8)
    cache_control = h(st.fixed_dictionaries({"type": h(st.just("ephemeral"))},
                                            optional={"ttl": h(st.sampled_from(["5m", "1h"]), st.just("2h"))}))
    sources = h(st.fixed_dictionaries({
        "type": h(st.sampled_from(["base64", "url", "text"]), st.sampled_from(["file", "bogus"])),
        "media_type": h(st.sampled_from(["image/png", "application/pdf", "text/plain"]), st.just("")),
        "data": h(texts(20)), "url": h(st.sampled_from(["https://example.com/a.png", "ftp://x", ""]))}))
    text_blocks = st.fixed_dictionaries({"type": h(st.just("text")), "text": h(texts(20, 1), st.just(""))},
                                        optional={"cache_control": cache_control})
    blocks = w(st.one_of(
        text_blocks,
        st.fixed_dictionaries({"type": h(st.sampled_from(["image", "document"])), "source": sources},
                              optional={"cache_control": cache_control}),
        st.fixed_dictionaries({"type": st.just("tool_use"), "id": h(texts(8, 1)), "name": h(texts(8, 1)),
                               "input": h(st.dictionaries(texts(6), json_values, max_size=3))}),
        st.fixed_dictionaries({"type": st.just("tool_result"), "tool_use_id": h(texts(8, 1))},
                              optional={"content": h(st.one_of(texts(), st.lists(text_blocks, max_size=2))),
                                        "is_error": h(st.booleans())}),
        st.fixed_dictionaries({"type": st.sampled_from(["thinking", "redacted_thinking"]),
                               "thinking": h(texts()), "signature": h(texts()), "data": h(texts())})),
        st.one_of(st.fixed_dictionaries({"type": texts(10)}, optional={"text": json_values}), json_values), 6)
    contents = w(st.one_of(texts(40, 1), st.lists(blocks, min_size=1, max_size=3)),
                 st.one_of(json_values, st.just([]), st.just("")), 6)
    anthropic_message = w(
        fields({"role": w(st.sampled_from(ROLES[:3]), st.one_of(st.sampled_from(ROLES), json_values), 8),
                "content": contents}, {"name": json_values}),
        st.one_of(json_values, fields({"role": json_values}, {"content": contents}), fields({"content": contents}, {})),
        10)
    anthropic_messages = w(st.lists(anthropic_message, min_size=1, max_size=3),
                           st.one_of(json_values, st.just([]), st.lists(anthropic_message, max_size=3)), 6)
    schemas = h(st.fixed_dictionaries({"type": h(st.just("object")), "properties": h(
        st.dictionaries(texts(6), h(st.fixed_dictionaries(
            {"type": h(st.sampled_from(["string", "integer", "number", "boolean", "array", "object"]))},
            optional={"enum": h(st.lists(scalars, min_size=1, max_size=3))})), max_size=2))},
        optional={"required": h(st.lists(texts(6), max_size=2))}))
    anthropic_tools = h(st.lists(fields({"name": h(texts(10, 1)), "input_schema": schemas},
                                        {"description": h(texts()), "cache_control": cache_control,
                                         "type": h(st.just("custom"), st.just("web_search_20250305"))}),
                                 max_size=2))
    anthropic_optional = {
        "system": h(st.one_of(texts(), st.lists(text_blocks, max_size=2))),
        "tools": anthropic_tools,
        "tool_choice": h(st.fixed_dictionaries(
            {"type": h(st.sampled_from(["auto", "any", "none", "tool"]), st.just("bogus"))},
            optional={"name": h(texts(8)), "disable_parallel_tool_use": h(st.booleans())})),
        "thinking": h(st.fixed_dictionaries(
            {"type": h(st.sampled_from(["enabled", "disabled", "adaptive"]), st.just("bogus"))},
            optional={"budget_tokens": w(st.integers(1024, 40_000), ints_hostile, 3)})),
        "metadata": h(st.fixed_dictionaries({}, optional={"user_id": h(texts())})),
        "temperature": h(st.floats(0, 1), ints_hostile),
        "top_p": h(st.floats(0, 1)),
        "top_k": w(st.integers(1, 500), ints_hostile, 2),
        "stop_sequences": h(st.lists(texts(4), max_size=3)),
        "service_tier": h(st.sampled_from(["auto", "standard_only"])),
        "output_config": h(st.fixed_dictionaries({}, optional={"effort": h(st.sampled_from(["low", "high"])),
                                                               "format": h(st.fixed_dictionaries(
                                                                   {"type": st.just("json_schema"),
                                                                    "schema": schemas}))})),
        "cache_control": cache_control,
    }
    messages = fields({"model": models, "messages": anthropic_messages, "max_tokens": max_tokens,
                       "stream": streams}, anthropic_optional)
    count = fields({"model": models, "messages": anthropic_messages, "stream": streams},
                   {**anthropic_optional, "max_tokens": max_tokens})

    # OpenAI Chat Completions
    arguments = w(st.dictionaries(texts(6), json_values, max_size=3).map(_json_text), st.one_of(
        json_values.map(_json_text), st.one_of(breaking, json_values).map(_json_text), texts(),
        st.sampled_from(ODD_ARGUMENTS), json_values), 2)
    tool_calls = h(st.lists(h(fields(
        {"id": h(texts(8, 1)), "function": h(fields({"name": h(texts(8, 1)), "arguments": arguments}, {}))},
        {"type": h(st.just("function"), st.just("custom"))})), min_size=1, max_size=2))
    image_urls = h(st.sampled_from(["data:image/png;base64,iVBORw0KGgo=", "https://example.com/a.png"]),
                   st.sampled_from(["ftp://x/y", "data:;base64,xx", "data:image/png,raw", "", "http://", "data:"]))
    chat_parts = w(st.one_of(
        st.fixed_dictionaries({"type": h(st.just("text")), "text": h(texts(20, 1), st.just(""))}),
        st.fixed_dictionaries({"type": st.just("image_url"), "image_url": h(
            st.fixed_dictionaries({"url": image_urls}, optional={"detail": h(st.sampled_from(["low", "auto"]))}),
            image_urls)})),
        st.one_of(st.fixed_dictionaries({"type": st.sampled_from(["refusal", "input_audio", "file"]),
                                         "refusal": h(texts())}), json_values), 6)
    chat_content = w(st.one_of(texts(40, 1), st.lists(chat_parts, min_size=1, max_size=3)),
                     st.one_of(json_values, st.none(), st.just(""), st.just([])), 6)
    chat_message = w(st.one_of(
        fields({"role": h(st.sampled_from(["user", "system", "developer"])), "content": chat_content},
               {"name": h(texts(6))}),
        fields({"role": st.just("assistant")}, {"content": chat_content, "refusal": h(st.none(), texts())}),
        fields({"role": st.just("assistant"), "tool_calls": tool_calls}, {"content": chat_content}),
        fields({"role": st.just("tool"), "tool_call_id": h(texts(8, 1))}, {"content": chat_content})),
        st.one_of(fields({"role": st.sampled_from(ROLES), "content": chat_content}, {}), json_values), 10)
    user_message = fields({"role": st.just("user"), "content": chat_content}, {})
    tool_round = st.tuples(user_message, fields({"role": st.just("assistant"), "tool_calls": tool_calls},
                                                {"content": chat_content}),
                           st.lists(fields({"role": st.just("tool"), "tool_call_id": h(texts(8, 1))},
                                           {"content": chat_content}), min_size=1, max_size=2),
                           st.lists(user_message, max_size=1)).map(lambda t: [t[0], t[1], *t[2], *t[3]])
    chat_messages = w(st.one_of(
        st.tuples(st.lists(chat_message, max_size=2), user_message).map(lambda t: [*t[0], t[1]]), tool_round),
        st.one_of(st.lists(chat_message, max_size=3), json_values), 6)
    chat_tools = h(st.lists(fields(
        {"type": h(st.just("function")), "function": h(fields(
            {"name": h(texts(10, 1))},
            {"description": h(texts()), "parameters": schemas, "strict": h(st.booleans())}))}, {}),
        max_size=2))
    chat = fields({"model": models, "messages": chat_messages, "stream": streams}, {
        "max_tokens": max_tokens, "max_completion_tokens": max_tokens,
        "stop": h(st.one_of(texts(4), st.lists(texts(4), max_size=3))),
        "n": h(st.just(1), st.sampled_from([2, 0, -1, 1.0, True]), ints_hostile),
        "temperature": h(st.floats(0, 2), ints_hostile), "top_p": h(st.floats(0, 1), ints_hostile),
        "tools": chat_tools,
        "tool_choice": h(st.sampled_from(["auto", "required", "none"]), st.just("bogus"), st.fixed_dictionaries(
            {"type": h(st.just("function")), "function": h(st.fixed_dictionaries({"name": h(texts(8))}))})),
        "parallel_tool_calls": h(st.booleans()),
        "response_format": h(st.one_of(st.just({"type": "text"}), st.fixed_dictionaries(
            {"type": st.just("json_schema"), "json_schema": h(st.fixed_dictionaries(
                {"name": h(texts(6)), "schema": schemas}))})),
            st.fixed_dictionaries({"type": st.sampled_from(["json_object", "bogus", "json_schema"])},
                                  optional={"json_schema": json_values})),
        "reasoning_effort": h(st.sampled_from(["minimal", "low", "medium", "high", "none"]),
                              st.sampled_from(["max", "", "LOW", [], {}, ["low"], {"effort": "low"}])),
        "stream_options": h(st.fixed_dictionaries({}, optional={"include_usage": h(st.booleans())})),
        "user": h(texts()), "seed": w(st.integers(0, 1000), ints_hostile, 3), "logprobs": h(st.booleans()),
        "frequency_penalty": h(st.floats(-2, 2)), "logit_bias": w(st.just({}), json_values, 3),
        "metadata": w(st.dictionaries(texts(6), texts(), max_size=2), json_values, 3),
    })

    transfer = fields(
        {"toUsername": h(st.just("bob"), st.sampled_from(["alice", "nobody", "", "BOB", "bob ", " bob", "bob\u0000"]),
                         texts()),
         "amount": w(st.one_of(st.decimals(Decimal("0.000001"), 3, places=6).map(float),
                               st.decimals(Decimal("0.000001"), 3, places=6).map(str),
                               st.sampled_from([0.01, 0.5, 1, "0.25", "1e-2", 0.000001, 2])),
                     st.one_of(st.sampled_from(AMOUNTS), st.decimals(0, 3, places=7).map(str), st.floats(),
                               st.integers(), texts(), ints_hostile, json_values), 1)}, {})
    return SimpleNamespace(messages=messages, count=count, chat=chat, transfer=transfer)


HOSTILE = _requests(hostile_fields=True)
CLEAN = _requests(hostile_fields=False)
# What replaces one node of a clean request: wrong types, odd numbers, empties, deep.
TYPE_CONFUSION = [5, -1, 0, 1.5, True, False, None, "", "x", [], {}, [1], ["x"], {"a": 1}, [{}], [None]]
ODD_REPLACEMENTS = [" ", [[]], {"": {}}, 2**64 - 1, -2**63, "\u0000", Raw(b"-0"), Raw(b"1E40"), Raw(b"1e-400"),
                    deep(300), deep(700, "{"), deep(1000)]
REPLACEMENTS = st.one_of(st.sampled_from(TYPE_CONFUSION), st.sampled_from(TYPE_CONFUSION + ODD_REPLACEMENTS),
                         json_values, ints_hostile)


def _paths(value: Any) -> list[list[tuple]]:
    """Every (container, key) below the root of a request, by depth (iterative)."""
    levels: list[list[tuple]] = []
    stack = [(value, 0)]
    while stack:
        item, level = stack.pop()
        children = item.items() if isinstance(item, dict) else enumerate(item) if isinstance(item, list) else ()
        for key, child in children:
            while len(levels) <= level:
                levels.append([])
            levels[level].append((item, key))
            stack.append((child, level + 1))
    return levels


def _mutate(args) -> dict:
    """A depth first, then a node at that depth: a top-level field is as likely to be hit
    as, say, one of a tool call's fields."""
    request, level, index, delete, value = args
    request = copy.deepcopy(request)
    levels = _paths(request)
    if levels:
        nodes = levels[level % len(levels)]
        container, key = nodes[index % len(nodes)]
        if delete:
            del container[key]
        else:
            container[key] = value
    return request


def mutated(clean: st.SearchStrategy[dict]) -> st.SearchStrategy[dict]:
    """A clean request with exactly one node, at any depth, replaced (or removed)."""
    return st.tuples(clean, st.sampled_from(range(64)), st.sampled_from(range(4096)),
                     weighted(st.just(False), st.just(True), 3), REPLACEMENTS).map(_mutate)


# -- whole documents ------------------------------------------------------------------------

TRAILERS = [b" x", b"}", b"]", b",", b"\x00", b"\n{}", b"garbage", b"\xff", b" \n\t ", b"//c", b"\r\n"]
PREFIXES = [b"\xef\xbb\xbf", b" \n", b"\x00", b"[", b"\xfe\xff", b")]}'\n"]
DUP_KEYS = ["model", "messages", "max_tokens", "stream", "toUsername", "amount", "tools", "reasoning_effort"]


def _break_one(args) -> bytes:
    request, index, value = args
    pairs = list(request.items())
    if pairs:
        key = pairs[index % len(pairs)][0]
        pairs[index % len(pairs)] = (key, value)
    return encode(Dup(tuple(pairs)))


def _dup_top(args) -> bytes:
    request, key, value, after = args
    pairs = [(k, v) for k, v in request.items()]
    extra = (key, value)
    return encode(Dup(tuple([*pairs, extra] if after else [extra, *pairs])))


def documents(kind: str) -> st.SearchStrategy[bytes]:
    """Request bodies for one endpoint: a request with hostile fields, a clean one with one
    node replaced or removed, or a clean one; sometimes broken (a field replaced by a
    piece orjson refuses, trailing garbage, a prefix, truncation), with a duplicate key,
    or not a request at all."""
    clean = getattr(CLEAN, kind)
    requests = st.one_of(getattr(HOSTILE, kind), mutated(clean), mutated(clean), clean)
    encoded = requests.map(encode)
    return weighted(encoded, st.one_of(
        st.tuples(encoded, st.sampled_from(TRAILERS)).map(lambda t: t[0] + t[1]),
        st.tuples(st.sampled_from(PREFIXES), encoded).map(lambda t: t[0] + t[1]),
        st.tuples(encoded, st.integers(0, 2**20)).map(lambda t: t[0][:t[1] % max(1, len(t[0]))]),
        st.tuples(requests, st.integers(0, 20), breaking).map(_break_one),
        st.tuples(requests, st.sampled_from(DUP_KEYS), st.one_of(json_values, breaking), st.booleans()).map(_dup_top),
        st.one_of(json_values, breaking).map(encode), st.binary(max_size=40),
        st.sampled_from([b"", b" ", b"null", b"{}", b"[]", b'""', b"\xef\xbb\xbf{}"])), 3)


# -- what the gateway's parser sees; the known bugs -----------------------------------------

_NOT_PARSED = object()


def parse(content: bytes) -> Any:
    """The body as the gateway decodes it (orjson), or _NOT_PARSED."""
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return _NOT_PARSED


def depth(value: Any) -> int:
    """Container levels (iterative: bodies nest up to 1024 deep)."""
    best, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (list, dict)):
            best = max(best, level)
            stack.extend((v, level + 1) for v in (item.values() if isinstance(item, dict) else item))
    return best


def text_depth(text: str) -> int:
    """Bracket nesting of JSON text, strings skipped."""
    best = level = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            escaped, in_string = (False, True) if escaped else (ch == "\\", ch != '"')
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            level += 1
            best = max(best, level)
        elif ch in "]}":
            level -= 1
    return best


def _chat_arguments(body: dict) -> list[str]:
    out = []
    for message in body.get("messages") if isinstance(body.get("messages"), list) else []:
        calls = message.get("tool_calls") if isinstance(message, dict) else None
        for call in calls if isinstance(calls, list) else []:
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                out.append(function["arguments"])
    return out


def _dicts(value: Any):
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _has_int_beyond_64_bits(arguments: str) -> bool:
    try:
        value = json.loads(arguments)
    except (ValueError, RecursionError):
        return False
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, int) and not isinstance(item, bool) and not -2**63 <= item < 2**64:
            return True
        if isinstance(item, (list, dict)):
            stack.extend(item.values() if isinstance(item, dict) else item)
    return False


def _decimal(amount: Any) -> Decimal | None:
    if isinstance(amount, bool) or not isinstance(amount, (int, float, str)):
        return None
    try:
        value = Decimal(str(amount))
    except (InvalidOperation, ValueError):
        return None
    return value if value.is_finite() and value > 0 else None


def simulator_crashes(path: str, body: dict) -> bool:
    """Whether the simulated upstream (a test double) fails on this body (for chat: on its
    translation, which passes tool schemas on) with an exception other than the
    ValueError it answers with a 400: it then drops the connection, and the gateway
    rightly answers 502."""
    try:
        if path == CHAT:
            body = translate_request(body, "claude-sim", 8192, True)
    except Exception:
        return False
    try:
        if path == COUNT:
            sim_script.estimate_tokens(body)
        else:
            script = sim_script.plan(body, sim_script.Knobs(), 0)
            sim_script.stream_events(script)
            sim_script.message_body(script)
    except ValueError:
        return False
    except Exception:
        return True
    return False


# Symptoms a known bug may show (anything else is still a failure).
def empty_500(o: "Outcome") -> bool:
    """An exception escaped into hypercorn: bare 500, no body, no request-id."""
    return o.status == 500 and o.body == b""


def transfer_500(o: "Outcome") -> bool:
    """An exception in the Quart route, rendered by its 500 handler."""
    return o.status == 500 and o.json() == {"success": False, "error": "Server error",
                                            "message": "Internal error; the request was not applied"}


def html_redirect(o: "Outcome") -> bool:
    return o.status == 308 and o.headers.get("content-type", "").startswith("text/html")


def upstream_dropped_502(o: "Outcome") -> bool:
    data = o.json()
    return o.status == 502 and isinstance(data, dict) and data.get("error", {}).get("type") == "api_error" \
        and "Upstream connection failed" in data["error"].get("message", "")


@dataclass(frozen=True)
class Bug:
    reason: str
    path: str
    example: bytes | None                          # the reproduction's body (strict xfail)
    applies: Callable[[str, Any], bool]            # (path, parsed body) -> may show the symptom
    symptom: Callable[["Outcome"], bool]
    method: str = "POST"


def _deep_alias_messages() -> bytes:
    return (b'{"model":"claude-sonnet-4.5","max_tokens":10,"messages":[{"role":"user","content":"hi"}],'
            b'"metadata":{"x":' + b"[" * 300 + b"]" * 300 + b"}}")


# Bugs these tests found, each fixed: its reproduction must pass (a regression test).
FIXED_BUGS: dict[str, Bug] = {
    "messages-orjson-dumps-depth": Bug(
        "proxy/adaptors/base.py Parsed.encoded: orjson.dumps refuses more than 254 levels of nesting while "
        "decode_json_object (orjson.loads) accepts 1024; a re-serialised body (model alias, clamped max_tokens) "
        "nested 255..1024 deep raises TypeError('Recursion limit reached') -> bare 500, empty body",
        MESSAGES, _deep_alias_messages(),
        lambda path, b: path == MESSAGES and depth(b) >= 255, empty_500),
    "chat-orjson-dumps-depth": Bug(
        "chat: the translated body always goes through orjson.dumps (recursion limit 254): tool parameters, "
        "response_format schema or tool-call arguments nested 255+ deep -> bare 500, empty body",
        CHAT, b'{"model":"claude-sonnet-4.5","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function",'
              b'"function":{"name":"f","parameters":{"a":' + b"[" * 300 + b"]" * 300 + b"}}}]}",
        lambda path, b: path == CHAT and (depth(b) >= 250 or any(text_depth(a) >= 245 for a in _chat_arguments(b))),
        empty_500),
    "count-tokens-json-dumps-recursion": Bug(
        "proxy/app.py _count_tokens re-encodes the body with json.dumps, which raises RecursionError near 1000 "
        "levels (orjson.loads accepted up to 1024) -> bare 500, empty body",
        COUNT, b'{"model":"claude-sonnet-4.5","messages":[{"role":"user","content":"hi"}],"metadata":'
               + b"[" * 1000 + b"]" * 1000 + b"}",
        lambda path, b: path == COUNT and depth(b) >= 900, empty_500),
    "messages-estimate-json-dumps-recursion": Bug(
        "proxy/billing.py estimate_input_tokens json.dumps(tool_use input) raises RecursionError for an input "
        "nested ~1000 deep, even when the body goes upstream unchanged (upstream model id) -> bare 500",
        MESSAGES, b'{"model":"claude-sonnet-4-5-20250929","max_tokens":10,"messages":[{"role":"user","content":'
                  b'[{"type":"tool_use","id":"t","name":"f","input":' + b'{"a":' * 1000 + b"1" + b"}" * 1000
                  + b"}]}]}",
        lambda path, b: path == MESSAGES and any(d.get("type") == "tool_use" and depth(d.get("input")) >= 900
                                                 for d in _dicts(b)), empty_500),
    "chat-reasoning-effort-unhashable": Bug(
        "proxy/protocol/translate.py: `effort not in THINKING_BUDGETS` with a list/object reasoning_effort "
        "raises TypeError: unhashable type -> bare 500, empty body",
        CHAT, b'{"model":"claude-sonnet-4.5","messages":[{"role":"user","content":"hi"}],"reasoning_effort":[]}',
        lambda path, b: path == CHAT and isinstance(b.get("reasoning_effort"), (list, dict)), empty_500),
    "chat-tool-calls-not-iterable": Bug(
        "proxy/protocol/translate.py _assistant_blocks: enumerate(message.get('tool_calls') or []) with a number "
        "or true raises TypeError: object is not iterable -> bare 500, empty body",
        CHAT, b'{"model":"claude-sonnet-4.5","messages":[{"role":"assistant","content":"hi","tool_calls":5},'
              b'{"role":"user","content":"x"}]}',
        lambda path, b: path == CHAT and any(
            isinstance(m, dict) and m.get("role") == "assistant" and isinstance(m.get("tool_calls"), (int, float))
            and m["tool_calls"] for m in (b.get("messages") if isinstance(b.get("messages"), list) else [])),
        empty_500),
    "chat-arguments-deep": Bug(
        "proxy/protocol/translate.py _assistant_blocks: json.loads(arguments) raises RecursionError (not "
        "ValueError) for arguments nested ~1000+ deep -> bare 500, empty body",
        CHAT, b'{"model":"claude-sonnet-4.5","messages":[{"role":"assistant","content":"hi","tool_calls":[{"id":"a",'
              b'"function":{"name":"f","arguments":"' + b"[" * 5000 + b"]" * 5000 + b'"}}]},'
              b'{"role":"user","content":"x"}]}',
        lambda path, b: path == CHAT and any(text_depth(a) >= 900 for a in _chat_arguments(b)), empty_500),
    "chat-arguments-lone-surrogate": Bug(
        "proxy/protocol/translate.py: json.loads(arguments) accepts a lone surrogate escape that orjson refuses "
        "in the outer body; orjson.dumps of the translated body then raises TypeError -> bare 500, empty body",
        CHAT, b'{"model":"claude-sonnet-4.5","messages":[{"role":"assistant","content":"hi","tool_calls":[{"id":"a",'
              b'"function":{"name":"f","arguments":"{\\"a\\":\\"\\\\ud800\\"}"}}]},{"role":"user","content":"x"}]}',
        lambda path, b: path == CHAT and any(re.search(r"\\u[dD][89a-fA-F]", a) for a in _chat_arguments(b)),
        empty_500),
    "chat-arguments-int-beyond-64-bit": Bug(
        "proxy/protocol/translate.py: json.loads(arguments) keeps an integer outside 64 bits as a Python int "
        "(orjson reads such a number in the outer body as a float); orjson.dumps of the translated body then "
        "raises TypeError('Integer exceeds 64-bit range') -> bare 500, empty body",
        CHAT, b'{"model":"claude-sonnet-4.5","messages":[{"role":"assistant","tool_calls":[{"id":"0","function":'
              b'{"name":"0","arguments":"{\\"a\\":-9223372036854775809}"}}]},{"role":"tool","tool_call_id":"0"}]}',
        lambda path, b: path == CHAT and any(_has_int_beyond_64_bits(a) for a in _chat_arguments(b)), empty_500),
    "transfer-decimal-overflow": Bug(
        "proxy/transfer.py _amount: Decimal(amount) * 1_000_000 raises decimal.Overflow (only InvalidOperation "
        "is caught) for an amount string with a huge exponent -> 500 'Server error'",
        TRANSFER, b'{"toUsername":"bob","amount":"1e999999999"}',
        lambda path, b: path == TRANSFER and isinstance(b.get("amount"), str)
        and (_decimal(b["amount"]) or Decimal(0)).adjusted() >= 999_990, transfer_500),
    "transfer-huge-amount-message": Bug(
        "proxy/transfer.py lets an amount of 1e5000 dollars through to the store; its InsufficientBalance "
        "(storage/base.py) formats the needed micro-USD, an int of more than 4300 digits, and str() raises "
        "ValueError (and format_usd in the 400 message would too) -> 500 'Server error'",
        TRANSFER, b'{"toUsername":"bob","amount":"1e5000"}',
        lambda path, b: path == TRANSFER and (_decimal(b.get("amount")) or Decimal(0)).adjusted() >= 4290,
        transfer_500),
    "simulator-crash": Bug(
        "test double, not the gateway: proxy/upstream/sim_script.plan iterates tools/stop_sequences and reads "
        "input_schema without type checks; on e.g. tools: 5, or (also through chat) a tool schema with "
        "properties: {\"a\": 5}, it raises TypeError, drops the connection and the gateway (correctly) answers "
        "502 api_error, where Anthropic would answer 400",
        MESSAGES, b'{"model":"claude-sonnet-4-5-20250929","max_tokens":10,"messages":[{"role":"user","content":"hi"}],'
                  b'"tools":5}',
        lambda path, b: path in (MESSAGES, COUNT, CHAT) and simulator_crashes(path, b), upstream_dropped_502),
    "models-merged-slashes-redirect": Bug(
        "Quart/werkzeug routing merges repeated slashes with a 308 redirect whose body is an HTML page "
        "(text/html, no JSON error shape): GET /v1/models//claude-opus-4.6, or an id with a %2F",
        "/v1/models//claude-opus-4.6", None,
        lambda path, b: path.startswith("/v1/models") and "//" in unquote(path.split("?")[0]), html_redirect, "GET"),
}
# Bugs found and not fixed yet: the property tests let exactly their symptom through
# (checking that no money moved), and test_known_bug reproduces each as a strict xfail.
KNOWN_BUGS: dict[str, Bug] = {}


# -- one exchange and its checks ------------------------------------------------------------

@dataclass
class Outcome:
    method: str
    path: str
    content: bytes
    status: int
    headers: dict[str, str]
    body: bytes
    before: Any                # alice's Account before
    after: Any                 # ... and after (every hold settled or released)
    new_ledger: list           # alice's ledger entries this exchange added
    ledger_total: int          # the sum of all of alice's ledger deltas
    usage: Any = None          # the usage row of this response's request id
    bob_delta: int = 0
    settled_in_time: bool = True
    _json: Any = field(default=None, repr=False)

    def json(self) -> Any:
        if self._json is None:
            try:
                self._json = json.loads(self.body)
            except ValueError:
                self._json = _NOT_PARSED
        return self._json

    def describe(self) -> str:
        content = self.content if len(self.content) <= 600 else \
            self.content[:300] + b"...<%d bytes>..." % len(self.content) + self.content[-200:]
        return (f"{self.method} {self.path} {content!r}\n-> {self.status} {dict(self.headers)}\n"
                f"{self.body[:1500]!r}\nalice before={self.before} after={self.after} new ledger={self.new_ledger} "
                f"usage={self.usage}")


class Runner:
    """Sends one request and reads the store, in the gateway's trio loop."""

    def __init__(self, alice, http: httpx.AsyncClient) -> None:
        self.alice = alice
        self.http = http
        self.store = alice.running.gateway.store

    async def exchange(self, method: str, path: str, content: bytes | None, headers: dict | None = None) -> Outcome:
        account = await self.alice.account()
        if account.balance < START // 2:
            await self.store.credit("alice", START - account.balance, "credit")
        before = await self.alice.account()
        ledger_before = len(await self.store.ledger("alice"))
        bob_before = (await self.store.get_account("bob")).balance
        response = await self.http.request(method, path, content=content, headers=headers or {})
        request_id = response.headers.get("request-id")
        metered_200 = response.status_code == 200 and path in (MESSAGES, CHAT) and method == "POST"
        usage, settled = None, False
        with trio.move_on_after(10):  # a stream settles just after its response, in the after-response nursery
            while True:
                after = await self.alice.account()
                if metered_200:
                    usage = next((r for r in await self.store.usage("alice", 20) if r.request_id == request_id),
                                 None)
                if after.held == 0 and (usage is not None or not metered_200):
                    settled = True
                    break
                await trio.sleep(0.005)
        after = await self.alice.account()
        ledger = await self.store.ledger("alice")
        return Outcome(method, path, content or b"", response.status_code, dict(response.headers), response.content,
                       before, after, ledger[ledger_before:], sum(e.delta for e in ledger), usage,
                       (await self.store.get_account("bob")).balance - bob_before, settled)


HEADERS = {"content-type": "application/json", "anthropic-version": "2023-06-01"}


def post(runner: Runner, path: str, content: bytes) -> Outcome:
    return trio.from_thread.run(runner.exchange, "POST", path, content, HEADERS)


def _note(text: str) -> None:
    if currently_in_test_context():
        note(text)


STATS: Counter = Counter()  # outcomes of the current property test, printed at its end (pytest -s)


def _event(text: str) -> None:
    STATS[text] += 1


def check(o: Outcome, tolerate_known: bool = True) -> None:
    _note(o.describe())
    assert o.after.held == 0 and o.settled_in_time, f"hold left open\n{o.describe()}"
    assert o.ledger_total == o.after.balance, f"ledger does not sum to the balance\n{o.describe()}"
    body = parse(o.content) if o.method == "POST" else _NOT_PARSED
    parsed_object = isinstance(body, dict)
    _event(f"{o.path} {o.status}" + ("" if parsed_object else " (not an object)")
           + (" stream" if parsed_object and body.get("stream") is True else ""))
    if VERBOSE and o.status != 200:
        _event(f"    {o.body[:90]!r}")
    if tolerate_known and parsed_object:
        for name, bug in KNOWN_BUGS.items():
            if bug.method == o.method and bug.applies(o.path, body) and bug.symptom(o):
                _note(f"known bug {name}")
                _event(f"known bug {name}")
                _check_no_money_moved(o)
                return
    assert o.status < 500, f"5xx\n{o.describe()}"
    assert o.body, f"empty body\n{o.describe()}"
    assert o.headers.get("request-id", "").startswith("req_"), f"no request-id header\n{o.describe()}"
    if o.method == "POST" and not parsed_object:
        assert o.status == 400, f"a body orjson refuses, or not an object, must be a 400\n{o.describe()}"
    if o.status != 200:
        _check_error_shape(o)
        _check_no_money_moved(o)
        return
    if o.path in (MESSAGES, CHAT):
        _check_metered_success(o, body)
    elif o.path == COUNT:
        data = o.json()
        assert isinstance(data, dict) and isinstance(data.get("input_tokens"), int) and data["input_tokens"] > 0, \
            o.describe()
        _check_no_money_moved(o)
    elif o.path == TRANSFER:
        _check_transfer_success(o, body)
    else:
        _check_no_money_moved(o)


ANTHROPIC_TYPES = {400: "invalid_request_error", 402: "billing_error", 404: "not_found_error",
                   405: "invalid_request_error", 413: "request_too_large"}
OPENAI_TYPES = {400: "invalid_request_error", 402: "insufficient_quota", 404: "not_found_error",
                405: "invalid_request_error", 413: "invalid_request_error"}
TRANSFER_WORDS = {400: {"Invalid request", "Invalid amount", "Cannot transfer to yourself", "Insufficient balance"},
                  404: {"User not found"}, 413: {"Request too large"}}
STATUSES = {MESSAGES: {400, 402, 404, 413}, COUNT: {400, 404, 413}, CHAT: {400, 402, 413}, TRANSFER: {400, 404, 413}}


def _check_error_shape(o: Outcome) -> None:
    data = o.json()
    assert isinstance(data, dict), f"error body is not a JSON object\n{o.describe()}"
    assert o.headers.get("content-type", "").startswith("application/json"), o.describe()
    if o.path == TRANSFER:
        assert o.status in STATUSES[TRANSFER], o.describe()
        assert set(data) == {"success", "error", "message"} and data["success"] is False, o.describe()
        assert data["error"] in TRANSFER_WORDS[o.status] and isinstance(data["message"], str) and data["message"], \
            o.describe()
    elif o.path == CHAT:
        assert o.status in STATUSES[CHAT], o.describe()
        assert set(data) == {"error"} and isinstance(data["error"], dict), o.describe()
        error = data["error"]
        assert set(error) == {"message", "type", "param", "code"}, o.describe()
        assert isinstance(error["message"], str) and error["message"], o.describe()
        assert error["type"] == OPENAI_TYPES[o.status], o.describe()
        assert error["param"] is None or isinstance(error["param"], str), o.describe()
    else:
        assert o.status in STATUSES[o.path], o.describe()
        assert set(data) == {"type", "error", "request_id"} and data["type"] == "error", o.describe()
        assert isinstance(data["error"], dict) and set(data["error"]) == {"type", "message"}, o.describe()
        assert data["error"]["type"] == ANTHROPIC_TYPES[o.status], o.describe()
        assert isinstance(data["error"]["message"], str) and data["error"]["message"], o.describe()
        assert data["request_id"] == o.headers["request-id"], o.describe()


def _check_no_money_moved(o: Outcome) -> None:
    assert o.after.balance == o.before.balance, f"balance changed without a 200\n{o.describe()}"
    assert not [e for e in o.new_ledger if e.delta], f"ledger moved money without a 200\n{o.describe()}"
    assert o.bob_delta == 0, o.describe()


def _check_metered_success(o: Outcome, body: dict) -> None:
    # A 200 means the gateway validated what it must understand.
    assert isinstance(body.get("model"), str) and body["model"].strip(), o.describe()
    assert isinstance(body.get("messages"), list) and body["messages"], o.describe()
    stream = body.get("stream") is True
    if o.path == MESSAGES:
        assert type(body.get("max_tokens")) is int and body["max_tokens"] >= 1, o.describe()
        assert "stream" not in body or isinstance(body["stream"], bool), o.describe()
        assert all(isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), (str, list))
                   for m in body["messages"]), o.describe()
    charged = -sum(e.delta for e in o.new_ledger if e.kind == "charge" and e.ref == o.headers["request-id"])
    assert o.usage is not None, f"no usage row for a 200\n{o.describe()}"
    assert o.before.balance - o.after.balance == charged == o.usage.cost, f"charge mismatch\n{o.describe()}"
    assert all(e.kind in ("charge", "release") for e in o.new_ledger), o.describe()
    assert o.bob_delta == 0, o.describe()
    if stream:
        assert o.headers.get("content-type", "").startswith("text/event-stream"), o.describe()
        text = o.body.decode()
        if o.path == MESSAGES:
            assert text.startswith("event: message_start"), o.describe()
            assert "event: message_stop" in text or "event: error" in text, o.describe()
        else:
            assert text.rstrip().endswith("data: [DONE]") or '"error"' in text, o.describe()
    else:
        assert o.before.balance - o.after.balance == parse_usd(o.headers["x-cheaplm-cost-usd"]), o.describe()
        data = o.json()
        if o.path == MESSAGES:
            assert data["type"] == "message" and data["role"] == "assistant", o.describe()
        else:
            assert data["object"] == "chat.completion" and data["choices"], o.describe()


def _check_transfer_success(o: Outcome, body: dict) -> None:
    data = o.json()
    assert data.get("success") is True and data["from"] == "alice" and data["to"] == "bob", o.describe()
    amount = _decimal(body.get("amount"))
    assert amount is not None and isinstance(body.get("toUsername"), str), o.describe()
    micro = amount * 1_000_000
    assert micro == micro.to_integral_value(), o.describe()
    assert o.before.balance - o.after.balance == int(micro) == o.bob_delta, f"transfer mismatch\n{o.describe()}"
    assert [(e.kind, e.delta) for e in o.new_ledger] == [("transfer_out", -int(micro))], o.describe()


# -- the property tests ---------------------------------------------------------------------

async def run_property(alice, prop, *args) -> None:
    await make_account(alice.running, "bob", credit_micro=0)
    async with alice.http() as http:
        runner = Runner(alice, http)
        STATS.clear()
        try:
            await trio.to_thread.run_sync(prop, runner, *args)
        finally:
            print(f"\n{prop.__name__}:\n  " + "\n  ".join(f"{k}: {v}" for k, v in sorted(STATS.items())))


@settings(max_examples=110 * SCALE, **SETTINGS)
@given(content=documents("messages"))
def messages_property(runner: Runner, content: bytes) -> None:
    check(post(runner, MESSAGES, content))


@settings(max_examples=50 * SCALE, **SETTINGS)
@given(content=documents("count"))
def count_tokens_property(runner: Runner, content: bytes) -> None:
    check(post(runner, COUNT, content))


@settings(max_examples=110 * SCALE, **SETTINGS)
@given(content=documents("chat"))
def chat_property(runner: Runner, content: bytes) -> None:
    check(post(runner, CHAT, content))


@settings(max_examples=60 * SCALE, **SETTINGS)
@given(content=documents("transfer"))
def transfer_property(runner: Runner, content: bytes) -> None:
    check(post(runner, TRANSFER, content))


@settings(max_examples=40 * SCALE, **SETTINGS)
@given(path=st.sampled_from(POST_PATHS),
       content=st.one_of(json_values.map(encode), breaking.map(encode), st.binary(max_size=64),
                         st.builds(lambda r, n: r.data[:n], st.sampled_from(BREAKERS + ODD_VALID), st.integers(0, 9))))
def any_document_property(runner: Runner, path: str, content: bytes) -> None:
    check(post(runner, path, content))


async def test_messages_hostile_json(alice):
    await run_property(alice, messages_property)


async def test_count_tokens_hostile_json(alice):
    await run_property(alice, count_tokens_property)


async def test_chat_completions_hostile_json(alice):
    await run_property(alice, chat_property)


async def test_transfer_hostile_json(alice):
    await run_property(alice, transfer_property)


async def test_any_document_on_every_endpoint(alice):
    await run_property(alice, any_document_property)


# /v1/models takes no body: hostile query values and model ids instead, in both shapes.
RAW_PIECES = {"%ff", "%FF", "%ED%A0%80", "%00"}  # sent as they are: invalid UTF-8 and NUL, percent-encoded
query_values = st.one_of(texts(8), st.sampled_from(["NaN", "1e400", "-1", "0", "99999999999999999999", "1_0", "",
                                                    "\u0661", "9" * 5000, "claude-opus-4.6", "%ff", "%ED%A0%80"]))


@settings(max_examples=40 * SCALE, **SETTINGS)
@given(anthropic=st.booleans(), method=st.sampled_from(["GET", "GET", "GET", "POST"]),
       query=st.dictionaries(st.sampled_from(["limit", "after_id", "before_id", "x"]), query_values, max_size=3),
       model=st.one_of(st.none(), texts(12), st.sampled_from(["claude-opus-4.6", "%ED%A0%80", "%FF", "..", "a/b",
                                                              "info", "%00"])))
def models_property(runner: Runner, anthropic: bool, method: str, query: dict, model: str | None) -> None:
    path = "/v1/models" + ("" if model is None else "/" + (model if model in RAW_PIECES else quote(model, safe="")))
    if query:
        path += "?" + "&".join(f"{k}={v if v in RAW_PIECES else quote(v, safe='')}" for k, v in query.items())
    headers = {"anthropic-version": "2023-06-01"} if anthropic else {}
    o = trio.from_thread.run(runner.exchange, method, path, b"{}" if method == "POST" else None, headers)
    note(o.describe())
    _event(f"{method} /v1/models{'' if model is None else '/{id}'} {o.status}")
    check_models(o, anthropic)


def check_models(o: Outcome, anthropic: bool, tolerate_known: bool = True) -> None:
    if tolerate_known:
        for name, bug in KNOWN_BUGS.items():
            if bug.method == o.method and bug.applies(o.path, None) and bug.symptom(o):
                _event(f"known bug {name}")
                return
    assert o.status in (200, 400, 404, 405) and o.body and o.headers.get("request-id"), o.describe()
    data = o.json()
    assert isinstance(data, dict), o.describe()
    if o.status == 200:
        assert data.get("object") == "list" or data.get("object") == "model", o.describe()
    elif anthropic:
        assert set(data) == {"type", "error", "request_id"} and data["type"] == "error", o.describe()
        assert data["error"]["type"] == ANTHROPIC_TYPES[o.status] and data["error"]["message"], o.describe()
        assert data["request_id"] == o.headers["request-id"], o.describe()
    else:
        assert set(data) == {"error"} and set(data["error"]) == {"message", "type", "param", "code"}, o.describe()
        assert data["error"]["type"] == OPENAI_TYPES[o.status] and data["error"]["message"], o.describe()
    _check_no_money_moved(o)
    assert o.after.held == 0, o.describe()


async def test_models_hostile_queries(alice):
    await run_property(alice, models_property)


# -- the bugs found, each reproduced on its own ---------------------------------------------

@pytest.mark.parametrize("name", [
    *(pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=bug.reason), id=name)
      for name, bug in KNOWN_BUGS.items()),
    *(pytest.param(name, id=f"fixed-{name}") for name in FIXED_BUGS)])
async def test_known_bug(alice, name):
    """Each bug's reproduction, checked like any generated request: a known one is a
    strict xfail (fixed: this passes, the suite fails, and its entry moves to FIXED_BUGS),
    a fixed one must pass."""
    bug = KNOWN_BUGS.get(name) or FIXED_BUGS[name]
    await make_account(alice.running, "bob", credit_micro=0)
    async with alice.http() as http:
        outcome = await Runner(alice, http).exchange(bug.method, bug.path, bug.example,
                                                     HEADERS if bug.method == "POST" else {})
    assert not bug.symptom(outcome), f"still {name}:\n{outcome.describe()}"
    if bug.method == "POST":
        check(outcome, tolerate_known=False)
    else:
        check_models(outcome, anthropic=False, tolerate_known=False)


def test_known_bug_predicates_match_their_symptoms():
    """Each reproduction's parsed body matches its bug's predicate (else the property
    tests would not accept the symptom where it occurs)."""
    for name, bug in {**KNOWN_BUGS, **FIXED_BUGS}.items():
        assert bug.applies(bug.path, parse(bug.example) if bug.example is not None else None), name
