"""The simulated upstream: an Anthropic-compatible HTTP server on trio + h11.

Deterministic answers come from sim_script.plan(); this module only speaks HTTP,
paces the events and records what it saw. Run it in-process with
``serve_simulator(..., task_status=...)`` (inside the gateway when no upstream is
configured, or in tests) or standalone with ``cheaplm simulator --port P``.

Test hooks: ``GET /_sim/requests`` lists the requests seen (path, model, the key
presented, headers, outcome, monotonic start/end times, cancelled flag);
``DELETE /_sim/requests`` clears the list.

Requests are checked as strictly as Anthropic checks them (rules.py)
and refused with 400 ``invalid_request_error`` (outcome "rejected"). Thinking
signatures and redacted_thinking data are HMACs under ``SimulatorState.secret``
(random per state unless given); ``state.sign_thinking(text)`` and
``state.redacted_data(hidden)`` make blocks the simulator will accept back.
"""

from __future__ import annotations

import hmac
import itertools
import logging
import json
import os
from collections import deque
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import h11
import trio

from .. import netio
from ..protocol.http1 import chunk_frame
from .cache import PromptCache
from .rules import InvalidRequest, check_request
from .script import Knobs, Script, counted_tokens, error_body, message_body, mid_stream_error, plan, stream_events, stream_head
from .signatures import redacted_data, thinking_signature

log = logging.getLogger("cheaplm.simulator")
MAX_REQUEST_BYTES = 64 * 1024 * 1024
SIM_MODELS = ("claude-opus-4-6", "claude-opus-4-5-20251101", "claude-sonnet-4-6", "claude-sonnet-4-5-20250929",
              "claude-sonnet-4-20250514", "claude-haiku-4-5-20251001")


@dataclass
class Seen:
    id: int
    path: str
    model: str | None = None
    stream: bool = False
    api_key: str | None = None
    anthropic_version: str | None = None
    anthropic_beta: str | None = None
    started: float = 0.0
    ended: float | None = None
    outcome: str = "open"   # open | complete | cancelled | fault | rejected (a 400 for the request itself)
    status: int = 0
    body: dict | None = None  # the request body, kept only while recording


@dataclass
class Planned:
    """A script with its stream events already encoded and chunk-framed, reused for
    identical request bodies (load tests send thousands of those)."""

    script: Script
    framed_deltas: list[bytes]
    framed_tail: bytes


@dataclass
class SimulatorState:
    knobs: Knobs = field(default_factory=Knobs)
    api_key: str | None = None
    seen: deque[Seen] = field(default_factory=lambda: deque(maxlen=10_000))
    record: bool = True
    counter: itertools.count = field(default_factory=itertools.count)
    plans: dict[tuple[bytes, str], Planned] = field(default_factory=dict)
    # Signs thinking blocks and seals redacted_thinking data; set it to sign blocks for a test beforehand.
    secret: bytes = field(default_factory=lambda: os.urandom(32))
    _plans_secret: bytes | None = field(default=None, init=False, repr=False)
    # Opt-in: a prompt cache like Anthropic's (sim_cache.py); off, cache figures come from knobs only.
    prompt_cache: PromptCache | None = None

    def sign_thinking(self, thinking: str) -> str:
        """The signature this simulator gives (and accepts back for) a thinking block with this text."""
        return thinking_signature(self.secret, thinking)

    def redacted_data(self, hidden: str = "hidden reasoning") -> str:
        """A redacted_thinking ``data`` this simulator accepts back."""
        return redacted_data(self.secret, hidden)

    def planned(self, raw_body: bytes, body: dict, betas: str = "") -> Planned:
        """The checked and planned answer; identical requests reuse it (they passed the same checks).
        Raises InvalidRequest."""
        if self._plans_secret != self.secret:
            self.plans.clear()
            self._plans_secret = self.secret
        use = self.prompt_cache.use(body, time.monotonic()) if self.prompt_cache is not None else None
        key = (raw_body, betas)
        found = self.plans.get(key) if use is None else None  # (a cached prompt's figures change)
        if found is None:
            check_request(body, self.secret, betas=betas)
            knobs = self.knobs if use is None else replace(self.knobs, cache_read=use.read, cache_write=use.written,
                                                          input_tokens=use.uncached)
            script = plan(body, knobs, next(self.counter), self.secret)
            _, deltas, tail = stream_events(script)
            found = Planned(script, [chunk_frame(d) for d in deltas], chunk_frame(tail))
            if use is None:
                if len(self.plans) >= 256:
                    self.plans.clear()
                self.plans[key] = found
        return found


class _Conn:
    """One client connection: h11 state plus the socket."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_BYTES)

    async def send(self, *events: Any) -> None:
        data = b"".join(self.h11.send(e) or b"" for e in events)
        if data:
            await self.stream.send_all(data)

    async def next_event(self) -> Any:
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = await self.stream.receive_some(65536)
            self.h11.receive_data(data)


async def _send_paced(stream: trio.SocketStream, data: bytes) -> None:
    """A paced event: straight to the socket, one ``send`` when it fits (the task has
    just slept, so trio's extra checkpoint would only cost a scheduler round trip per
    event)."""
    sock = netio.raw_socket(stream)
    if sock is None:
        await stream.send_all(data)
        return
    try:
        await netio.send_all(sock, data)
    except OSError as exc:
        raise trio.BrokenResourceError(f"client connection failed: {exc}") from exc


def _headers(content_type: str, extra: tuple[tuple[str, str], ...] = (), length: int | None = None):
    headers = [("content-type", content_type), ("request-id", "req_sim")]
    if length is not None:
        headers.append(("content-length", str(length)))
    return headers + list(extra)


async def _json(conn: _Conn, status: int, body: Any, extra: tuple[tuple[str, str], ...] = ()) -> None:
    data = json.dumps(body).encode()
    await conn.send(h11.Response(status_code=status, headers=_headers("application/json", extra, len(data))),
                    h11.Data(data=data), h11.EndOfMessage())


async def _watch_disconnect(conn: _Conn, seen: Seen, scope: trio.CancelScope) -> None:
    """While a response is produced, end-of-file from the client means it went away.

    Bytes that do arrive are the client's next keep-alive request, sent as soon as
    it read our last byte: they are kept in h11's buffer for the next cycle.
    """
    try:
        data = await conn.stream.receive_some(65536)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        data = b""
    if data:
        conn.h11.receive_data(data)
        return
    if seen.outcome == "open":
        seen.outcome, seen.ended = "cancelled", time.monotonic()
    scope.cancel()


async def _stream(conn: _Conn, planned: Planned, message_id: str, seen: Seen) -> bool:
    """Send a streamed answer. Returns False when the connection cannot be reused.

    The response head and end go through h11; the body chunks, framed in advance,
    go straight to the socket."""
    knobs = planned.script.knobs
    gap = knobs.gap_ms / 1000
    send_all = conn.stream.send_all
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_watch_disconnect, conn, seen, nursery.cancel_scope)
        if knobs.fault == "hang":
            await trio.sleep_forever()
        if knobs.ttft_ms:
            await trio.sleep(knobs.ttft_ms / 1000)
        head = conn.h11.send(h11.Response(status_code=200, headers=[
            ("content-type", "text/event-stream"), ("cache-control", "no-cache"), ("request-id", "req_sim"),
            ("transfer-encoding", "chunked")]))
        await send_all(head + chunk_frame(stream_head(planned.script, message_id)))
        if knobs.fault == "hang_mid":
            await trio.sleep_forever()
        # Absolute pacing: event i is due at start + i * gap, so time spent sending (or
        # waiting for a busy core) does not stretch the stream and delays show as gaps.
        start = trio.current_time()
        for i, event in enumerate(planned.framed_deltas):
            if i and gap:
                await trio.sleep_until(start + i * gap)
            if knobs.fault in ("error_mid", "drop_mid") and i == knobs.fault_after:
                seen.outcome, seen.ended = "fault", time.monotonic()
                if knobs.fault == "drop_mid":
                    await conn.stream.aclose()
                    nursery.cancel_scope.cancel()
                    return False
                await send_all(chunk_frame(mid_stream_error()) + conn.h11.send(h11.EndOfMessage()))
                nursery.cancel_scope.cancel()
                return True
            await _send_paced(conn.stream, event)
        await send_all(planned.framed_tail + conn.h11.send(h11.EndOfMessage()))
        seen.outcome, seen.ended = "complete", time.monotonic()
        nursery.cancel_scope.cancel()
    return seen.outcome == "complete"


async def _invalid(conn: _Conn, seen: Seen, message: str) -> bool:
    """400 invalid_request_error, Anthropic's shape."""
    seen.outcome, seen.status, seen.ended = "rejected", 400, time.monotonic()
    await _json(conn, 400, {"type": "error", "error": {"type": "invalid_request_error", "message": message},
                            "request_id": "req_sim"})
    return True


async def _messages(conn: _Conn, state: SimulatorState, raw_body: bytes, body: dict, seen: Seen,
                    betas: str) -> bool:
    planned = state.planned(raw_body, body, betas)
    script = planned.script
    message_id = f"msg_sim{next(state.counter):012d}"
    seen.model, seen.stream = script.model, bool(body.get("stream"))
    seen.status = script.status
    if script.status != 200:
        seen.outcome, seen.ended = "fault", time.monotonic()
        extra = (("retry-after", str(script.knobs.retry_after)),) if script.status == 429 else ()
        await _json(conn, script.status, error_body(script), extra)
        return True
    if body.get("stream"):
        return await _stream(conn, planned, message_id, seen)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_watch_disconnect, conn, seen, nursery.cancel_scope)
        if script.knobs.fault in ("hang", "hang_mid"):
            await trio.sleep_forever()
        delay = script.knobs.ttft_ms + script.knobs.gap_ms * max(0, len(script.blocks) - 1)
        if delay:
            await trio.sleep(delay / 1000)
        await _json(conn, 200, message_body(script, message_id))
        seen.outcome, seen.ended = "complete", time.monotonic()
        nursery.cancel_scope.cancel()
    return seen.outcome == "complete"


def _presented_key(headers: dict[str, str]) -> str | None:
    if "x-api-key" in headers:
        return headers["x-api-key"]
    auth = headers.get("authorization", "")
    return auth[7:] if auth.lower().startswith("bearer ") else None


async def _handle_request(conn: _Conn, state: SimulatorState, request: h11.Request) -> bool:
    chunks = []
    while True:
        event = await conn.next_event()
        if isinstance(event, h11.Data):
            chunks.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            break
        else:
            return False
    raw_body = b"".join(chunks)
    headers = {k.decode().lower(): v.decode("latin-1") for k, v in request.headers}
    path = request.target.decode().split("?", 1)[0]
    method = request.method.decode()
    if path == "/_sim/requests":
        if method == "DELETE":
            state.seen.clear()
        await _json(conn, 200, {"data": [asdict(s) for s in list(state.seen)]})
        return True
    key = _presented_key(headers)
    seen = Seen(id=next(state.counter), path=path, api_key=key, anthropic_version=headers.get("anthropic-version"),
                anthropic_beta=headers.get("anthropic-beta"), started=time.monotonic())
    if state.record:
        state.seen.append(seen)
    if state.api_key and not (key and hmac.compare_digest(key.encode(), state.api_key.encode())):
        seen.outcome, seen.status = "fault", 401
        await _json(conn, 401, {"type": "error", "error": {"type": "authentication_error",
                                                           "message": "invalid x-api-key"}})
        return True
    if method == "GET" and path.rstrip("/") == "/v1/models":
        await _json(conn, 200, {"data": [{"type": "model", "id": m, "display_name": m,
                                          "created_at": "2025-01-01T00:00:00Z"} for m in SIM_MODELS],
                                "has_more": False, "first_id": SIM_MODELS[0], "last_id": SIM_MODELS[-1]})
        return True
    if method != "POST" or path not in ("/v1/messages", "/v1/messages/count_tokens"):
        await _json(conn, 404, {"type": "error", "error": {"type": "not_found_error", "message": f"no route {path}"}})
        return True
    try:
        body = json.loads(raw_body)
        if not isinstance(body, dict):
            raise ValueError("body must be an object")
    except (ValueError, RecursionError) as exc:
        return await _invalid(conn, seen, str(exc) or "body is nested too deeply")
    if state.record:
        seen.body = body
    seen.model = body.get("model")
    betas = headers.get("anthropic-beta", "")
    if path.endswith("count_tokens"):
        try:
            check_request(body, state.secret, count_tokens=True, betas=betas)
        except InvalidRequest as exc:
            return await _invalid(conn, seen, str(exc))
        seen.outcome, seen.status = "complete", 200
        await _json(conn, 200, {"input_tokens": counted_tokens(body, state.knobs)})
        return True
    try:
        return await _messages(conn, state, raw_body, body, seen, betas)
    except ValueError as exc:  # InvalidRequest, or a directive naming an unknown fault or mode
        return await _invalid(conn, seen, str(exc))


_GONE = (trio.BrokenResourceError, trio.ClosedResourceError, h11.RemoteProtocolError)


async def _converse(conn: _Conn, state: SimulatorState) -> None:
    while True:
        event = await conn.next_event()
        if not isinstance(event, h11.Request):
            return
        if not await _handle_request(conn, state, event):
            return
        if conn.h11.our_state is h11.MUST_CLOSE or conn.h11.their_state is h11.MUST_CLOSE:
            return
        conn.h11.start_next_cycle()


async def _serve_connection(state: SimulatorState, stream: trio.SocketStream) -> None:
    """One connection; a client that goes away, or any fault in it, ends only this connection."""
    conn = _Conn(stream)
    try:
        await _converse(conn, state)
    except* _GONE:
        pass
    except* Exception:
        log.exception("simulator: connection failed")
    finally:
        with trio.move_on_after(1) as cleanup:
            cleanup.shield = True
            await stream.aclose()


async def serve_simulator(host: str = "127.0.0.1", port: int = 0, *, state: SimulatorState | None = None,
                          task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve until cancelled; reports ``(url, state)`` through task_status."""
    state = state or SimulatorState()
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()
    task_status.started((f"http://{host}:{bound[1]}", state))
    await trio.serve_listeners(lambda s: _serve_connection(state, s), listeners)
