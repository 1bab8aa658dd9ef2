"""One log line per request, as JSON or text: its fields, and never a prompt or a key."""

from __future__ import annotations

import json
import logging

import anthropic
import pytest

from proxy.observe.request_log import REQUESTS, JsonFormatter, request_line
from proxy.outcome import Outcome
from tests.conftest import MESSAGE

SECRET_PROMPT = "the launch code is 0000-SECRET"


async def test_each_request_is_one_line_with_its_outcome_and_never_the_prompt_or_key(alice, caplog):
    client = alice.anthropic()
    with caplog.at_level(logging.INFO, REQUESTS):
        await client.messages.create(model="claude-haiku-4.5", max_tokens=20,
                                     messages=[{"role": "user", "content": SECRET_PROMPT}])
        with pytest.raises(anthropic.NotFoundError):
            await client.messages.create(model="nope-9", max_tokens=20, messages=MESSAGE)
        with pytest.raises(anthropic.AuthenticationError):
            await anthropic.AsyncAnthropic(api_key="sk-cl-wrong" + "x" * 40, base_url=alice.running.url,
                                           max_retries=0).messages.create(
                model="claude-haiku-4.5", max_tokens=20, messages=MESSAGE)
    records = [r for r in caplog.records if r.name == REQUESTS]
    assert len(records) == 3
    lines = [json.loads(JsonFormatter().format(r)) for r in records]
    served, unknown, refused = lines
    rows = await alice.running.gateway.store.usage("alice", 10)
    assert served["event"] == "request" and served["status"] == 200 and served["username"] == "alice"
    assert served["request_id"] == rows[0].request_id and served["cost"] == rows[0].cost > 0
    assert served["output_tokens"] == rows[0].output_tokens and served["ttft_ms"] is not None
    assert served["key_prefix"] == alice.key[:14] and served["endpoint"] == "messages"
    assert (unknown["status"], unknown["error_type"], unknown["username"], unknown["model"]) == (
        404, "not_found_error", "alice", None)
    assert (refused["status"], refused["username"], refused["key_prefix"]) == (401, None, None)
    text = caplog.text + json.dumps(lines)
    assert SECRET_PROMPT not in text and alice.key not in text


def test_the_text_line_names_what_an_operator_needs():
    line = request_line(Outcome("req_1", "chat", 200, "bob", "cheaplm_abcdef", "claude-sonnet-4.5", True, "backup",
                                2, None, False, 10, 0, 5, 0, 7, 123, 45.25, 300.5))
    assert line == ("req_1 user=bob key=cheaplm_abcdef endpoint=chat model=claude-sonnet-4.5 status=200 "
                    "channel=backup attempts=2 tokens=10/5/0/7 cost=0.000123 ttft_ms=45.2 ms=300.5")
