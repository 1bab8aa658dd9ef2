"""A non-streaming request its client abandons is charged what the upstream bills for it:
the upstream call is not cancelled with the client, its answer's usage is charged (status
499, client_disconnected), never $0 for a prompt the operator pays for."""

from __future__ import annotations

import pytest
import trio

from proxy.billing import usage_cost
from proxy.protocol.usage import Usage

from tests.conftest import make_account

pytestmark = pytest.mark.both_stores  # the ledger fixture: SQLite and PostgreSQL

PROMPT = "x" * 240_000  # the 240 KB prompt


async def test_an_abandoned_240_kb_prompt_is_charged_what_the_upstream_bills(gateway, simulator):
    account = await make_account(gateway, "leaver")
    body = {"model": "claude-sonnet-4.5", "max_tokens": 50, "messages": [
        {"role": "user", "content": PROMPT + " [sim ttft_ms=1500 deltas=4]"}]}
    async with account.http() as http:
        with trio.move_on_after(0.3) as gone:
            await http.post("/v1/messages", json=body)
    assert gone.cancelled_caught
    final = await account.settled(1)
    [row] = await gateway.gateway.store.usage("leaver", 10)
    assert (row.status, row.error_type, row.partial) == (499, "client_disconnected", False)
    assert row.input_tokens > 50_000 and row.output_tokens > 0
    prices = gateway.gateway.catalog.resolve("claude-sonnet-4.5").prices
    assert row.cost == usage_cost(Usage(row.input_tokens, output_tokens=row.output_tokens), prices) > 0
    assert final.balance == 10_000_000 - row.cost and final.held == 0
    assert (await simulator.last_outcome()).outcome == "complete"  # the upstream was let finish
