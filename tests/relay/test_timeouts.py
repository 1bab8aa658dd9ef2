"""The gateway's own timeouts, on trio's MockClock (autojump): a body trickled too
slowly, a body never finished, an upstream stream gone silent, and a long stream that
keeps talking. No real time passes; the end-to-end versions over loopback live in
test_errors.py and test_key_routes.py."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import trio

from proxy import errors
from proxy.adaptors.anthropic import PassThrough
from proxy.relay.exchange import Exchange
from proxy.metering.ticket import Progress
from proxy.protocol.stream_filter import AnthropicStreamTap
from proxy.relay.flow import _pump

LIMIT = 1 << 20


def _exchange(chunks, pause: float, content_length: int | None = None) -> Exchange:
    """An exchange whose client sends ``chunks``, one every ``pause`` seconds."""
    queue = list(chunks)

    async def receive():
        await trio.sleep(pause)
        body = queue.pop(0)
        return {"type": "http.request", "body": body, "more_body": bool(queue)}

    headers = [] if content_length is None else [(b"content-length", str(content_length).encode())]
    return Exchange({"type": "http", "headers": headers, "client": ("127.0.0.1", 1)}, receive, None)


async def test_a_body_sent_at_a_fair_rate_is_read_whatever_it_takes(autojump_clock):
    ex = _exchange([b"x" * 4096] * 50, pause=1.0)  # 4 KiB/s for 50 s
    body = await ex.read_body(LIMIT, timeout=120, grace=10, min_rate=2048)
    assert len(body) == 4096 * 50 and trio.current_time() == pytest.approx(50)


async def test_a_body_trickled_below_the_minimum_rate_is_cut_after_the_grace(autojump_clock):
    ex = _exchange([b"x" * 100] * 1000, pause=1.0)  # 100 B/s against a 2 KiB/s minimum
    with pytest.raises(errors.GatewayError) as cut:
        await ex.read_body(LIMIT, timeout=120, grace=10, min_rate=2048)
    assert cut.value.status == 408 and cut.value.error_type == "timeout_error"
    # Cut as soon as it fell behind: the grace, plus what the bytes received had bought.
    assert 10 <= trio.current_time() <= 11.5


async def test_a_body_never_finished_is_cut_at_the_overall_deadline(autojump_clock):
    ex = _exchange([b"x" * 65536] * 10_000, pause=1.0)  # fast enough for the rate, endless
    with pytest.raises(errors.GatewayError) as cut:
        await ex.read_body(1 << 40, timeout=120, grace=10, min_rate=2048)
    assert cut.value.status == 408 and trio.current_time() == pytest.approx(120)


async def test_a_declared_or_received_body_over_the_limit_is_refused_at_once(autojump_clock):
    with pytest.raises(errors.GatewayError) as declared:
        await _exchange([b""], pause=0, content_length=LIMIT + 1).read_body(LIMIT)
    ex = _exchange([b"x" * 1024] * 2000, pause=0.001)
    with pytest.raises(errors.GatewayError) as received:
        await ex.read_body(LIMIT)
    assert declared.value.status == received.value.status == 413


def _event(name: str, data: str) -> bytes:
    return f"event: {name}\ndata: {data}\n\n".encode()


START = _event("message_start", '{"type":"message_start","message":{"id":"m","type":"message","role":"assistant",'
                                '"content":[],"model":"x","usage":{"input_tokens":5,"output_tokens":1}}}')
DELTA = _event("content_block_delta", '{"type":"content_block_delta","index":0,'
                                      '"delta":{"type":"text_delta","text":"hello"}}')
STOP = _event("message_stop", '{"type":"message_stop"}')


class PacedUpstream:
    """An upstream stream: ``chunks`` with ``gaps`` seconds of silence before each."""

    def __init__(self, chunks, gaps) -> None:
        self._chunks, self._gaps = chunks, gaps

    async def chunks(self):
        for chunk, gap in zip(self._chunks, self._gaps):
            await trio.sleep(gap)
            yield chunk


class Client:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    async def write(self, data: bytes) -> None:
        self.written.append(data)


def _ticket():
    async def cover_real_input(usage):
        return None

    async def may_relay():
        return None

    ticket = SimpleNamespace(cover_real_input=cover_real_input, may_relay=may_relay, ttft_ms=None, started=0.0,
                             lease_lost=False, relaying=None)
    ticket.first_output = lambda: setattr(ticket, "ttft_ms", ticket.ttft_ms or 1.0)
    return ticket


async def _pump_paced(chunks, gaps, idle):
    client, progress = Client(), Progress()
    held = await _pump(PacedUpstream(chunks, gaps), AnthropicStreamTap(False), PassThrough("x"), client, _ticket(),
                       idle, progress)
    return client, progress, held


async def test_an_upstream_silent_past_the_idle_timeout_ends_the_stream(autojump_clock):
    with pytest.raises(errors.GatewayError) as timed_out:
        await _pump_paced([START, DELTA, DELTA, STOP], [0, 2, 31, 0], idle=30)
    # 30 s after the last data (the deadline moves at most once a second, so it may
    # come up to a second early: never late).
    assert timed_out.value.status == 504 and trio.current_time() == pytest.approx(32)


async def test_a_stream_that_keeps_talking_is_never_cut_however_long(autojump_clock):
    deltas = 200
    client, progress, held = await _pump_paced([START] + [DELTA] * deltas + [STOP],
                                               [0] + [25] * deltas + [0], idle=30)
    assert trio.current_time() == pytest.approx(25 * deltas)  # 5000 s, idle timeout 30 s
    assert held == [STOP] and b"".join(client.written).count(b"text_delta") == deltas
    assert progress.tokens == deltas * 2


async def test_the_final_event_is_held_back_for_the_settlement(autojump_clock):
    client, _, held = await _pump_paced([START + DELTA + STOP], [0], idle=30)
    assert held == [STOP] and client.written == [START + DELTA]
