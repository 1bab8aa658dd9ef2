"""Shared fakes: a clock turned by hand, and an ``Upstream`` that answers in-process.

``SimUpstream`` sits at the relay's cut (``proxy/upstream/base.py``: ``send`` and
``stream``), in the manner of httpx's ``MockTransport``: a handler gets each request
and gives an answer; the default handler answers like the simulator (its script,
its request rules, its ``[sim ...]`` directives and faults, its signatures), so relay
tests need neither a socket nor a server. Waits (``ttft_ms``, ``gap_ms``, hangs) are
trio sleeps: under ``trio.testing.MockClock`` they take no real time. It applies the
first-byte timeout as a real upstream does (a hang is a 504 ``timeout_error``); the
idle timeout between chunks is the relay's own.
"""

from __future__ import annotations

import json
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import AsyncIterator, Awaitable, Callable

import trio

from proxy import errors
from proxy.simulator.rules import InvalidRequest, check_request
from proxy.simulator.script import (error_body, estimate_tokens, message_body, mid_stream_error, stream_events,
                                    stream_head)
from proxy.simulator.server import Seen, SimulatorState
from proxy.upstream.base import UpstreamRequest, UpstreamResponse


class HandClock:
    """A clock the test turns by hand: ``clock()`` is the time, ``clock.now`` sets it."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    @classmethod
    def at(cls, iso: str) -> "HandClock":
        """Unix time at an ISO moment (UTC)."""
        clock = cls()
        clock.set(iso)
        return clock

    def set(self, iso: str) -> None:
        self.now = datetime.fromisoformat(iso).replace(tzinfo=timezone.utc).timestamp()

    def __call__(self) -> float:
        return self.now


@dataclass
class Answer:
    """What a handler answers: a whole body, or a stream of chunks (``pauses[i]`` seconds
    before chunk ``i``)."""

    status: int = 200
    body: bytes = b""
    chunks: tuple[bytes, ...] = ()
    pauses: tuple[float, ...] = ()
    headers: tuple[tuple[str, str], ...] = (("content-type", "application/json"),)
    hang_after: int | None = None      # chunks sent before the upstream goes silent
    drop_after: int | None = None      # chunks sent before the connection breaks
    first_byte_after: float = 0.0      # seconds before the head arrives (inf: never)
    outcome: str = "complete"          # what the upstream records once the whole body is sent


Handler = Callable[[UpstreamRequest, bytes], Awaitable[Answer]]


class _Stream:
    def __init__(self, answer: Answer, on_end: Callable[[str], None], hold: Callable[[], Awaitable[None]]) -> None:
        self.status = answer.status
        self.headers = answer.headers
        self.channel, self.attempts = "", 1
        self._answer = answer
        self._on_end = on_end
        self._hold = hold

    async def chunks(self) -> AsyncIterator[bytes]:
        answer = self._answer
        try:
            for i in range(len(answer.chunks) + 1):
                if i == answer.hang_after:
                    await trio.sleep_forever()
                if i == answer.drop_after:
                    self._on_end("fault")
                    raise _dropped()
                if i == len(answer.chunks):
                    break
                if i < len(answer.pauses) and answer.pauses[i]:
                    await trio.sleep(answer.pauses[i])
                if i == 1:
                    await self._hold()
                yield answer.chunks[i]
        except BaseException:
            self._on_end("cancelled")
            raise
        self._on_end(answer.outcome)

    async def read(self) -> bytes:
        self._on_end(self._answer.outcome)
        return self._answer.body if self._answer.body else b"".join(self._answer.chunks)


class SeenLog:
    """What a simulator saw (``self.state.seen``), the server's or the in-process one's."""

    state: SimulatorState

    def seen(self, path: str = "/v1/messages") -> list[Seen]:
        return [s for s in self.state.seen if s.path == path]

    async def last_outcome(self) -> Seen:
        """Wait (bounded) until the last /v1/messages request is no longer open."""
        with trio.fail_after(5):
            while self.seen()[-1].outcome == "open":
                await trio.sleep(0.005)
        return self.seen()[-1]


class SimUpstream(SeenLog):
    """An ``Upstream`` in-process. ``handler(request, body)`` answers each request
    (default: the simulator's script over ``state``); ``state.seen`` records every request
    as the simulator server does, with its outcome. While ``gate`` is set to an unset
    event, every answer waits for it: a whole answer before its first byte, a stream after
    its first event (the test holds requests in flight for as long as it needs); a token
    count, which the gateway asks for while it judges a request (the hold's size), is
    answered at once."""

    def __init__(self, state: SimulatorState | None = None, handler: Handler | None = None, *,
                 first_byte_timeout: float = 10.0, idle_timeout: float = 10.0, label: str = "sim") -> None:
        self.state = state or SimulatorState()
        self.handler = handler or self.simulate
        self.first_byte_timeout = first_byte_timeout
        self.idle_timeout = idle_timeout
        self.label = self.url_label = label
        self.observe: Callable[[str, str], None] = lambda channel, outcome: None  # (a router's attempts)
        self.gate: trio.Event | None = None
        self.holding = 0  # answers waiting for the gate now
        self.closed = False

    async def _hold(self) -> None:
        if self.gate is None:
            return
        self.holding += 1
        try:
            await self.gate.wait()
        finally:
            self.holding -= 1

    def describe(self, now: float) -> list[dict]:
        """As one healthy channel, should a test hand it to a Gateway unwrapped
        (``serve_in_process`` puts it in a one-channel Router, as ``open_upstream`` does)."""
        return [{"name": self.label, "url": self.url_label, "priority": 0, "weight": 1.0, "state": "healthy",
                 "resting_seconds": None, "disabled_reason": None, "in_flight": 0,
                 "requests": len(self.seen()), "failures": 0}]

    async def _answer(self, request: UpstreamRequest) -> tuple[Answer, Seen]:
        if self.closed:
            raise errors.upstream_unreachable("the upstream is closed")
        request.attempts += 1
        seen = Seen(id=next(self.state.counter), path=request.path, started=time.monotonic(),
                    anthropic_version=request.headers.get("anthropic-version"),
                    anthropic_beta=request.headers.get("anthropic-beta"))
        if self.state.record:
            self.state.seen.append(seen)
        body = request.body()  # (written as the HTTP upstream writes it: its errors are the relay's)
        try:
            answer = await _in_own_task(self.handler, request, body)
        except Exception:  # the server logs it and drops the connection: what the transport reports
            seen.outcome, seen.ended = "fault", time.monotonic()
            raise _dropped() from None
        seen.status = answer.status
        try:
            with trio.fail_after(self.first_byte_timeout):
                await trio.sleep(answer.first_byte_after)
        except trio.TooSlowError:
            seen.outcome, seen.ended = "cancelled", time.monotonic()
            raise errors.upstream_timeout("response") from None
        return answer, seen

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        answer, seen = await self._answer(request)
        if not request.path.endswith("/count_tokens"):
            await self._hold()
        body = answer.body if answer.body or not answer.chunks else b"".join(answer.chunks)
        if seen.outcome == "open":
            seen.outcome, seen.ended = (answer.outcome if answer.status == 200 else "fault"), time.monotonic()
        return UpstreamResponse(answer.status, answer.headers, body)

    @asynccontextmanager
    async def stream(self, request: UpstreamRequest) -> AsyncIterator[_Stream]:
        answer, seen = await self._answer(request)

        def ended(outcome: str) -> None:
            if seen.outcome == "open":
                seen.outcome, seen.ended = outcome, time.monotonic()

        try:
            yield _Stream(answer, ended, self._hold)
        finally:
            ended("cancelled")

    async def aclose(self) -> None:
        self.closed = True

    async def simulate(self, request: UpstreamRequest, raw: bytes) -> Answer:
        """The simulator's answer (``proxy/simulator/server.py``), without the socket."""
        state, seen = self.state, self.state.seen[-1] if self.state.record else None
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError("body must be an object")
        except (ValueError, RecursionError) as exc:
            return _invalid(seen, str(exc) or "body is nested too deeply")
        if seen is not None:
            seen.body, seen.model, seen.stream = body, body.get("model"), bool(body.get("stream"))
        betas = request.headers.get("anthropic-beta", "")
        if request.path.endswith("count_tokens"):
            try:
                check_request(body, state.secret, count_tokens=True, betas=betas)
            except InvalidRequest as exc:
                return _invalid(seen, str(exc))
            return _json(200, {"input_tokens": estimate_tokens(body)})
        try:
            planned = state.planned(raw, body, betas)
        except ValueError as exc:  # InvalidRequest, or a directive naming an unknown fault or mode
            return _invalid(seen, str(exc))
        script, knobs = planned.script, planned.script.knobs
        message_id = f"msg_sim{next(state.counter):012d}"
        if seen is not None:
            seen.model = script.model
        if script.status != 200:
            extra = (("retry-after", str(knobs.retry_after)),) if script.status == 429 else ()
            return _json(script.status, error_body(script), extra)
        if not body.get("stream"):
            if knobs.fault in ("hang", "hang_mid"):
                return Answer(first_byte_after=float("inf"))
            delay = knobs.ttft_ms + knobs.gap_ms * max(0, len(script.blocks) - 1)
            answer = _json(200, message_body(script, message_id))
            answer.first_byte_after = delay / 1000
            return answer
        _, deltas, tail = stream_events(script)
        gap = knobs.gap_ms / 1000
        # As the server paces them: the head, then delta i at i * gap after it, the tail at once.
        chunks, pauses = [stream_head(script, message_id)], [0.0]
        answer = Answer(200, headers=(("content-type", "text/event-stream"), ("request-id", "req_sim")),
                        first_byte_after=float("inf") if knobs.fault == "hang" else knobs.ttft_ms / 1000)
        for i, event in enumerate(deltas):
            if knobs.fault == "hang_mid":
                answer.hang_after = 1
                break
            if knobs.fault in ("error_mid", "drop_mid") and i == knobs.fault_after:
                if knobs.fault == "error_mid":
                    chunks.append(mid_stream_error())
                    answer.outcome = "fault"
                    pauses.append(gap if i else 0.0)
                else:
                    answer.drop_after = len(chunks)
                break
            chunks.append(event)
            pauses.append(gap if i else 0.0)
        else:
            chunks.append(tail)
            pauses.append(0.0)
        answer.chunks, answer.pauses = tuple(chunks), tuple(pauses)
        return answer


async def _in_own_task(handler: Handler, request: UpstreamRequest, body: bytes) -> Answer:
    """The handler in a task of its own, as the server answers in its connection's task: on
    a fresh stack (Python's recursion limit counts the caller's frames: a deeply nested
    body must meet the same limit as it would in the simulator server)."""
    answers: list[Answer] = []

    async def answer() -> None:
        answers.append(await handler(request, body))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(answer)
    return answers[0]


def _dropped() -> errors.GatewayError:
    """What the upstream transport reports when the connection breaks (proxy/upstream/http.py)."""
    return errors.GatewayError(502, "Upstream connection failed: RemoteProtocolError", error_type="api_error")


def _json(status: int, body: dict, extra: tuple[tuple[str, str], ...] = ()) -> Answer:
    return Answer(status, json.dumps(body).encode(),
                  headers=(("content-type", "application/json"), ("request-id", "req_sim"), *extra))


def _invalid(seen: Seen | None, message: str) -> Answer:
    if seen is not None:
        seen.outcome, seen.ended = "rejected", time.monotonic()
    return _json(400, {"type": "error", "error": {"type": "invalid_request_error", "message": message},
                       "request_id": "req_sim"})
