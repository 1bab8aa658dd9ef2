"""The floor relay (bench/floor.py) between an SDK client and the simulator: streams and
whole answers, several on one connection, bytes piped unchanged."""

from __future__ import annotations

from functools import partial

import anthropic
import pytest
import trio

from bench.floor import serve_floor
from proxy.simulator.server import SimulatorState, serve_simulator


@pytest.fixture
async def floor(nursery):
    state = SimulatorState()
    sim_url, _ = await nursery.start(partial(serve_simulator, "127.0.0.1", 0, state=state))
    port = await nursery.start(partial(serve_floor, "127.0.0.1", 0, sim_url))
    return f"http://127.0.0.1:{port}", sim_url


async def test_the_floor_relays_streams_and_whole_answers_on_one_connection(floor):
    floor_url, sim_url = floor
    prompt = [{"role": "user", "content": "hello [sim deltas=20 delta_bytes=9 gap_ms=1]"}]
    client = anthropic.AsyncAnthropic(api_key="unused", base_url=floor_url, max_retries=0)
    for _ in range(2):  # sequential requests: the SDK reuses its keep-alive connection
        async with client.messages.stream(model="claude-sonnet-4.5", max_tokens=100, messages=prompt) as s:
            text = await s.get_final_text()
        whole = await client.messages.create(model="claude-sonnet-4.5", max_tokens=100, messages=prompt)
        assert text == whole.content[0].text and len(text) == 20 * 9
    direct = anthropic.AsyncAnthropic(api_key="unused", base_url=sim_url, max_retries=0)
    assert (await direct.messages.create(model="claude-sonnet-4.5", max_tokens=100, messages=prompt)
            ).content[0].text == text


async def test_the_floor_pipes_bytes_unchanged_and_ends_both_sides_together(floor):
    """Pipelined requests too (it does not parse): the floor ends the client's
    connection when the upstream ends its own."""
    floor_url, _ = floor
    port = int(floor_url.rsplit(":", 1)[1])
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    request = b"GET /v1/models HTTP/1.1\r\nhost: x\r\n\r\n"
    await stream.send_all(request * 2 + b"GET /v1/models HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    received = b""
    with trio.fail_after(5):
        while data := await stream.receive_some(65536):
            received += data
    assert received.count(b"HTTP/1.1 200 ") == 3 and received.count(b"claude-opus-4-6") >= 3
    await stream.aclose()
