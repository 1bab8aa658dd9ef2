"""The first steps every keyed route with a body shares (relay/flow.checked_request): the
key, the body, its parse and the key's restrictions, for the metered routes and for
count_tokens alike, each refusal recorded with what was known of the request."""

from __future__ import annotations

import logging

import pytest

from proxy.observe.request_log import REQUESTS
from tests.conftest import make_account

COUNT = {"model": "claude-sonnet-4.5", "messages": [{"role": "user", "content": "Hello"}]}


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens"])
async def test_a_key_fenced_to_one_model_is_refused_another_before_the_upstream(app_gateway, caplog, path):
    fenced = await make_account(app_gateway, "fen", models=["claude-haiku-4.5"])
    caplog.set_level(logging.INFO, REQUESTS)
    async with fenced.http() as http:
        refused = await http.post(path, json={**COUNT, "max_tokens": 16})
        allowed = await http.post(path, json={**COUNT, "model": "claude-haiku-4.5", "max_tokens": 16})
    assert refused.status_code == 403 and refused.json()["error"]["type"] == "permission_error"
    assert allowed.status_code == 200
    assert len(app_gateway.upstream.seen(path)) == 1  # only the allowed one went upstream
    lines = [r.getMessage() for r in caplog.records if r.name == REQUESTS]
    assert len(lines) == 2 and "model=claude-sonnet-4.5 status=403" in lines[0] and "user=fen" in lines[0]


async def test_count_tokens_of_a_key_that_may_not_stream_is_not_a_stream(app_gateway):
    """count_tokens never streams: a key without streaming counts all the same."""
    plain = await make_account(app_gateway, "pia", allow_stream=False)
    async with plain.http() as http:
        counted = await http.post("/v1/messages/count_tokens", json=COUNT)
        streamed = await http.post("/v1/messages", json={**COUNT, "max_tokens": 16, "stream": True})
    assert counted.status_code == 200 and counted.json()["input_tokens"] > 0
    assert streamed.status_code == 403 and streamed.json()["error"]["type"] == "permission_error"
