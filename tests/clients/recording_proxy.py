"""A transparent recording HTTP proxy put between a real client and the gateway.

It forwards every request unchanged (method, path with its query string, headers,
body bytes) and relays the response as it arrives (raw bytes, no decompression),
keeping one ``Exchange`` per request: what the client sent and what the gateway
answered (the whole answer for errors, the first ``KEEP_BYTES`` otherwise).

In a test: ``url, log = await nursery.start(serve_recording_proxy, target_url)``.
Standalone, for looking at a client by hand::

    python -m tests.clients.recording_proxy --port 8090 --target http://127.0.0.1:8080 --out exchanges.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any, Callable

import httpx
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

KEEP_BYTES = 256 * 1024
_HOP = {b"host", b"content-length", b"transfer-encoding", b"connection", b"keep-alive"}


@dataclass
class Exchange:
    method: str
    target: str                       # path and query string as the client sent them
    headers: dict[str, str]           # request headers (lower-case names; repeated ones joined by ", ")
    body_bytes: int
    body: Any = None                  # the request body, parsed when it is JSON
    status: int = 0                   # 0: no answer (gateway unreachable or client gone)
    response_headers: dict[str, str] = field(default_factory=dict)
    response: bytes = b""             # first KEEP_BYTES of the (possibly compressed) answer
    response_bytes: int = 0
    started: float = 0.0
    ended: float = 0.0
    error: str | None = None

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    def response_text(self) -> str:
        return self.response.decode("utf-8", "replace")

    def as_json(self) -> dict:
        out = asdict(self)
        out["response"] = self.response_text()
        return out


def _joined(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in raw:
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        out[key] = f"{out[key]}, {text}" if key in out else text
    return out


def make_app(target: str, client: httpx.AsyncClient, log: list[Exchange],
             on_exchange: Callable[[Exchange], None] | None = None):
    async def app(scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        raw_target = scope.get("raw_path") or scope["path"].encode()
        if scope.get("query_string"):
            raw_target += b"?" + scope["query_string"]
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        exchange = Exchange(scope["method"], raw_target.decode("latin-1"), _joined(scope["headers"]), len(body),
                            started=time.monotonic())
        try:
            exchange.body = json.loads(body) if body else None
        except ValueError:
            exchange.body = None
        log.append(exchange)
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _HOP]
        request = client.build_request(scope["method"], target + raw_target.decode("latin-1"), headers=headers,
                                       content=body)
        try:
            response = await client.send(request, stream=True)
        except httpx.HTTPError as exc:
            exchange.error, exchange.ended = repr(exc), time.monotonic()
            await send({"type": "http.response.start", "status": 502, "headers": []})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        try:
            exchange.status = response.status_code
            exchange.response_headers = _joined(list(response.headers.raw))
            await send({"type": "http.response.start", "status": response.status_code,
                        "headers": [(k, v) for k, v in response.headers.raw if k.lower() not in _HOP]})
            kept = bytearray()
            async for data in response.aiter_raw():
                exchange.response_bytes += len(data)
                if len(kept) < KEEP_BYTES:
                    kept += data[:KEEP_BYTES - len(kept)]
                exchange.response = bytes(kept)
                await send({"type": "http.response.body", "body": data, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except (httpx.HTTPError, OSError) as exc:
            exchange.error = repr(exc)
        finally:
            exchange.ended = time.monotonic()
            with trio.CancelScope(shield=True):
                await response.aclose()
            if on_exchange:
                on_exchange(exchange)

    return app


async def serve_recording_proxy(target: str, host: str = "127.0.0.1", port: int = 0, *,
                                on_exchange: Callable[[Exchange], None] | None = None,
                                task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve until cancelled; reports ``(url, exchanges)`` through task_status."""
    log: list[Exchange] = []
    config = HypercornConfig()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.graceful_timeout = 1.0
    timeout = httpx.Timeout(120, connect=10)
    async with httpx.AsyncClient(timeout=timeout, limits=httpx.Limits(max_connections=200)) as client:
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(partial(hypercorn_serve, make_app(target.rstrip("/"), client, log,
                                                                          on_exchange), config))
            task_status.started((binds[0], log))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True)
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--out", default="exchanges.jsonl")
    args = parser.parse_args()

    def write(exchange: Exchange) -> None:
        with open(args.out, "a") as out:
            out.write(json.dumps(exchange.as_json()) + "\n")
        print(f"{exchange.status} {exchange.method} {exchange.target} {exchange.body_bytes}B", flush=True)

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            url, _ = await nursery.start(partial(serve_recording_proxy, args.target, port=args.port,
                                                 on_exchange=write))
            print(f"recording proxy on {url} -> {args.target}", flush=True)

    trio.run(run)


if __name__ == "__main__":
    main()
