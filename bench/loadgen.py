"""The load generator: trio sockets and the gateway's HTTP/1.1 byte layer, nothing else.

Each virtual user keeps one keep-alive connection and sends requests back to back
(closed loop), or requests are started on a fixed schedule (open loop, latencies
measured from the intended start so a slow server cannot hide queueing:
no coordinated omission). Streams are not parsed event by event: the reader
counts the delta markers in each received buffer and timestamps the read, which
is what a client observes and costs a few microseconds per read.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import trio

from proxy import netio
from proxy.protocol import http1
from proxy.protocol.http1 import ProtocolError  # a malformed response, or the server gone mid-way


@dataclass(frozen=True)
class Target:
    """One arm's endpoint: where to connect and the exact request bytes to send."""

    name: str
    host: str
    port: int
    request: bytes
    delta_marker: bytes   # one occurrence per content delta (b"event: content_block_delta", ...)
    end_marker: bytes     # the stream's normal end (b"event: message_stop", b"data: [DONE]")
    error_marker: bytes   # an in-stream error (b"event: error", b'data: {"error"')
    stream: bool


@dataclass
class Result:
    start: float                 # when the request was sent (closed loop) or due (open loop)
    status: int = 0
    first_delta: float | None = None
    end: float = 0.0
    deltas: int = 0
    gaps: list[float] = field(default_factory=list)
    error: str | None = None
    warmup: bool = False         # sent during the closed loop's ramp: counted, not measured

    def delta_times(self) -> list[float]:
        """When each content delta was received (deltas read together share a time)."""
        if self.first_delta is None or not self.deltas:
            return []
        times = [self.first_delta]
        for gap in self.gaps:
            times.append(times[-1] + gap)
        return times

    @property
    def ok(self) -> bool:
        return self.error is None


def build_request(method: str, host: str, port: int, path: str, headers: dict[str, str], body: bytes) -> bytes:
    pairs = [("Host", f"{host}:{port}"), ("Content-Type", "application/json"), *headers.items()]
    encoded = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in pairs]
    return http1.request_head(method.encode(), path.encode("latin-1"), encoded, len(body)) + body


class Connection:
    """One keep-alive HTTP/1.1 connection that sends the target's request and reads
    the answer, counting markers."""

    def __init__(self, target: Target, receive_buffer: memoryview) -> None:
        self.target = target
        self.stream: trio.SocketStream | None = None
        self.buffer = b""
        self.receive_buffer = receive_buffer  # shared by the run's connections

    async def open(self) -> None:
        self.stream = await trio.open_tcp_stream(self.target.host, self.target.port)
        self.buffer = b""

    async def aclose(self) -> None:
        if self.stream is not None:
            with trio.CancelScope(shield=True):
                await self.stream.aclose()
            self.stream = None

    async def _read(self) -> bytes:
        """The next bytes, read into the run's shared buffer (see ``netio.receive``)."""
        data = await netio.receive(netio.raw_socket(self.stream), self.receive_buffer)
        if not data:
            raise ProtocolError("connection closed by server")
        return data

    async def exchange(self, result: Result) -> None:
        if self.stream is None:
            await self.open()
        await self.stream.send_all(self.target.request)
        reader = http1.ResponseReader(self.target.request.split(b" ", 1)[0])
        if self.buffer:
            reader.feed(self.buffer)
        while (head := reader.read_head()) is None:
            reader.feed(await self._read())
        result.status = head.status
        answer = b""
        if head.framing == "chunked":
            # Streams are not decoded: markers are counted in the bytes as they arrive.
            await self._chunked(reader.unread(), result)
            self.buffer = b""
        elif head.framing == "length":
            parts = []
            while True:
                payload, done = reader.read_payload()
                parts.append(payload)
                if done:
                    break
                reader.feed(await self._read())
            self.buffer, answer = reader.unread(), b"".join(parts)
            result.end = time.perf_counter()
            if result.first_delta is None:
                result.first_delta = result.end
        else:
            raise ProtocolError("response with neither content-length nor chunked encoding")
        if not head.keep_alive:
            await self.aclose()
        if result.status != 200 and result.error is None:
            result.error = f"HTTP {result.status} {answer[:160].decode('utf-8', 'replace')}".rstrip()

    async def _chunked(self, data: bytes, result: Result) -> None:
        target = self.target
        keep = max(len(target.delta_marker), len(target.end_marker), len(target.error_marker), 7) - 1
        tail = b""
        now = time.perf_counter()
        ended = errored = False
        last = None
        while True:
            window = tail + data
            # A marker wholly inside the carried-over tail was counted with the last read.
            count = window.count(target.delta_marker) - tail.count(target.delta_marker)
            if count:
                if result.first_delta is None:
                    result.first_delta = now
                if last is not None:
                    result.gaps.append(now - last)
                result.gaps.extend([0.0] * (count - 1))
                last = now
                result.deltas += count
            if not ended and target.end_marker in window:
                ended = True
            if not errored and target.error_marker in window:
                errored = True
            if window.endswith(b"\r\n0\r\n\r\n") or window == b"0\r\n\r\n":
                break
            tail = window[-keep:]
            data = await self._read()
            now = time.perf_counter()
        result.end = now
        if errored:
            result.error = "error event in stream"
        elif not ended:
            result.error = "stream ended without its end marker"


async def closed_loop(target: Target, users: int, duration: float, results: list[Result],
                      ramp: float = 0.0) -> tuple[float, float]:
    """``users`` virtual users, each sending requests back to back. User i starts
    ``ramp * i / users`` seconds in, so that the load is spread over time as it would
    be with independent clients, instead of all streams starting (and, being the same
    length, restarting) in lockstep. Requests sent during the ramp are marked warm-up;
    users stop sending ``duration`` seconds after the ramp (in-flight requests finish).
    Returns the measurement window (start, end)."""
    started = time.perf_counter()
    window = (started + ramp, started + ramp + duration)
    receive_buffer = netio.receive_buffer()

    async def user(index: int) -> None:
        await trio.sleep(ramp * index / users)
        connection = Connection(target, receive_buffer)
        try:
            while True:
                result = Result(start=time.perf_counter())
                result.warmup = result.start < window[0]
                try:
                    await connection.exchange(result)
                except (*netio.SOCKET_ERRORS, ProtocolError, ValueError) as exc:
                    result.error = f"{type(exc).__name__}: {exc}"[:120]
                    result.end = time.perf_counter()
                    await connection.aclose()
                results.append(result)
                if time.perf_counter() >= window[1]:
                    return
        finally:
            await connection.aclose()

    async with trio.open_nursery() as nursery:
        for index in range(users):
            nursery.start_soon(user, index)
    return window


async def open_loop(target: Target, rate: float, duration: float, results: list[Result]) -> tuple[float, float]:
    """Requests started every 1/rate seconds for ``duration`` seconds whatever the
    server does; each on an idle pooled connection, or a new one. Returns the window
    (start, last completion): everything sent is measured."""
    started = time.perf_counter()
    idle: list[Connection] = []
    receive_buffer = netio.receive_buffer()
    count = max(1, math.floor(rate * duration))

    async def one(due: float) -> None:
        connection = idle.pop() if idle else Connection(target, receive_buffer)
        result = Result(start=due)
        try:
            await connection.exchange(result)
            idle.append(connection)
        except (*netio.SOCKET_ERRORS, ProtocolError, ValueError) as exc:
            result.error = f"{type(exc).__name__}: {exc}"[:120]
            result.end = time.perf_counter()
            await connection.aclose()
        results.append(result)

    async with trio.open_nursery() as nursery:
        for i in range(count):
            due = started + i / rate
            await trio.sleep_until(trio.current_time() + max(0.0, due - time.perf_counter()))
            nursery.start_soon(one, due)
    for connection in idle:
        await connection.aclose()
    return started, time.perf_counter()
