"""The floor relay (bench/floor.py): its chunk tracker over every split of a golden
stream, and the relay itself between an SDK client and the simulator."""

from __future__ import annotations

from functools import partial

import anthropic
import pytest

from bench.floor import ChunkTracker, serve_floor
from proxy.upstream.simulator import SimulatorState, serve_simulator
from tests.splits import every_split, golden


def chunked(payload: bytes, sizes=(7, 100, 1, 4096)) -> bytes:
    out, position, i = [], 0, 0
    while position < len(payload):
        size = sizes[i % len(sizes)]
        out.append(b"%x\r\n%b\r\n" % (len(payload[position:position + size]), payload[position:position + size]))
        position += size
        i += 1
    return b"".join(out) + b"0\r\n\r\n"


@pytest.mark.parametrize("name", ["text_only.sse", "two_tools_no_args.sse"])
def test_tracker_finds_the_end_of_the_body_at_every_split(name):
    body = chunked(golden(name))
    wire = body + b"HTTP/1.1 200 OK\r\n"  # the next response's first bytes must not be counted
    for pieces in every_split(wire):
        tracker, consumed = ChunkTracker(), 0
        for piece in pieces:
            used = tracker.feed(piece)
            if used >= 0:
                consumed += used
                break
            consumed += len(piece)
        assert consumed == len(body)


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
