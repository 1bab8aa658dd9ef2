"""Web searches through the gateway and the simulator: billed per search, held for max_uses,
shown in the usage rows, /api/usage, the CSV and the request log."""

from __future__ import annotations

import json
import logging

import pytest

from proxy.billing import usage_cost
from proxy.protocol.usage import Usage

from tests.conftest import make_account

pytestmark = pytest.mark.both_stores  # the ledger fixture: SQLite and PostgreSQL

SEARCH = {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}


def _body(stream: bool, searches: int, tools=(SEARCH,)) -> dict:
    return {"model": "claude-haiku-4.5", "max_tokens": 100, "stream": stream, "tools": list(tools),
            "messages": [{"role": "user", "content": f"news today [sim searches={searches} deltas=4]"}]}


@pytest.mark.parametrize("stream", [False, True])
async def test_each_search_is_billed_and_shown(gateway, caplog, stream):
    alice = await make_account(gateway, "alice")
    caplog.set_level(logging.INFO, "cheaplm.requests")
    async with alice.http() as http:
        response = await http.post("/v1/messages", json=_body(stream, 2))
        assert response.status_code == 200, response.text
        await alice.settled(1)
        [row] = await gateway.gateway.store.usage("alice", 10)
        assert row.server_tool_use == '{"web_search":2}' and row.server_tool_cost == 20_000
        tokens = Usage(input_tokens=row.input_tokens, output_tokens=row.output_tokens)
        prices = gateway.gateway.catalog.resolve("claude-haiku-4.5").prices
        assert row.cost == usage_cost(tokens, prices) + 20_000
        assert await alice.balance() == 10_000_000 - row.cost
        listed = (await http.get("/api/usage")).json()["data"][0]
        assert listed["server_tool_use"] == {"web_search": 2} and listed["server_tool_cost_usd"] == "0.020000"
        csv = (await http.get("/api/usage.csv")).text.splitlines()
        assert csv[0].endswith(",server_tool_use,server_tool_cost_usd")
        assert csv[1].endswith(",web_search=2,0.020000")
    assert any('server_tools={"web_search":2}' in r.getMessage() for r in caplog.records)


async def test_searches_are_bounded_by_max_uses_in_the_simulator(gateway):
    alice = await make_account(gateway, "alice")
    async with alice.http() as http:
        answer = (await http.post("/v1/messages", json=_body(False, 9))).json()
    assert answer["usage"]["server_tool_use"] == {"web_search_requests": 3}
    async with alice.http() as http:
        plain = (await http.post("/v1/messages", json=_body(False, 9, tools=()))).json()
    assert "server_tool_use" not in plain["usage"]


async def test_the_hold_covers_the_allowed_searches(gateway):
    # $0.02 covers the prompt and 100 output tokens of haiku, not three searches at $0.01
    poor = await make_account(gateway, "poor", credit_micro=20_000)
    async with poor.http() as http:
        refused = await http.post("/v1/messages", json=_body(False, 1))
        assert refused.status_code == 402, refused.text
        assert refused.json()["error"]["type"] == "billing_error"
        one = dict(SEARCH, max_uses=1)
        allowed = await http.post("/v1/messages", json=_body(False, 1, tools=(one,)))
        assert allowed.status_code == 200, allowed.text
    assert 0 <= await poor.balance() < 20_000 - 10_000
