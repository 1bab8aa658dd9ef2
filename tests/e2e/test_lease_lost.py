"""A gateway whose lease was taken (paused past it: another instance recovered its holds)
stops its streams at once with an error event, relays nothing more, and charges each
client for what it received: the recovery's checkpoint, and the rest late."""

from __future__ import annotations

from dataclasses import replace

import pytest
import trio

from proxy.serve import serve
from storage import open_store

from tests.conftest import make_account, raw_ledger

pytestmark = pytest.mark.both_stores  # the ledger fixture: SQLite and PostgreSQL


async def test_a_stream_whose_hold_was_recovered_stops_and_is_charged_what_it_delivered(nursery, config, simulator):
    running = await nursery.start(serve, replace(config, lease_seconds=1.5, progress_interval=0.2))
    account = await make_account(running, "alice")
    body = {"model": "claude-haiku-4.5", "max_tokens": 4000, "stream": True,
            "messages": [{"role": "user", "content": "long [sim deltas=400 gap_ms=15 delta_bytes=8]"}]}
    received = []

    async def client():
        async with account.http() as http:
            async with http.stream("POST", "/v1/messages", json=body) as response:
                async for chunk in response.aiter_bytes():
                    received.append(chunk)

    async def take_the_lease():
        await trio.sleep(1.0)  # some output delivered and checkpointed
        raw = raw_ledger(config.database_url)
        raw.execute("UPDATE instances SET heartbeat_at = heartbeat_at - 3600")  # as if paused for an hour
        raw.close()
        other = await open_store(config.database_url, instance_id="other")
        try:
            await other.register_instance(60)
            assert (await other.recover_orphaned_holds()).charged == 1
        finally:
            await other.unregister_instance()
            await other.aclose()

    with trio.fail_after(10):
        async with trio.open_nursery() as inner:
            inner.start_soon(client)
            inner.start_soon(take_the_lease)
    text = b"".join(received).decode()
    assert "event: error" in text and '"api_error"' in text and "message_stop" not in text
    delivered = text.count("event: content_block_delta")
    assert 0 < delivered < 400
    with trio.fail_after(5):
        while True:
            [row] = await running.gateway.store.usage("alice", 10)
            entries = await running.gateway.store.ledger("alice")
            if any(e.kind == "late_charge" for e in entries) or row.output_tokens >= 2 * delivered:
                break
            await trio.sleep(0.05)
    [row] = await running.gateway.store.usage("alice", 10)  # (read after the late charge)
    # each 8-byte delta is 2 output tokens; the row was written by the recovery (its checkpoint)
    assert row.partial and row.output_tokens == 2 * delivered
    assert (await running.gateway.store.get_account("alice")).balance == 10_000_000 - row.cost
    assert await running.gateway.store.check() == []
