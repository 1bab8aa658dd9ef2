"""What sizing a hold by count_tokens costs: a measurement, not a test.

``python -m bench.count_cost [--requests 200] [--model claude-haiku-4.5]``

One gateway (in this process, on loopback) in front of the simulator (also here), one
client at a time (c=1): ``--requests`` non-streaming requests from an account that covers
the worst case (never counted), then as many from one that does not (each hold sized on
the upstream's count first: one more upstream round trip). Prints p50 / p90 / p99 of the
client's latency for each, and how many requests were counted.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from functools import partial

import httpx
import trio

from proxy.accounts.service import Accounts
from proxy.config import Config, UpstreamConfig
from proxy.serve import serve
from proxy.simulator.server import SimulatorState, serve_simulator

KEY = "sk-bench-upstream"


async def _account(running, name: str, credit: int) -> str:
    store = running.gateway.store
    await Accounts(store).create_user(name)
    await store.credit(name, credit, "credit")
    key, _ = await Accounts(store).create_key(running.gateway.catalog, name)
    return key


async def _run(http: httpx.AsyncClient, key: str, body: dict, n: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        response = await http.post("/v1/messages", json=body, headers={"x-api-key": key})
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, response.text
    return times


def _line(name: str, times: list[float]) -> str:
    q = statistics.quantiles(times, n=100)
    return f"{name:<10} n={len(times)} p50={q[49]:.2f} ms p90={q[89]:.2f} ms p99={q[98]:.2f} ms"


async def main(requests: int, model: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with trio.open_nursery() as nursery:
            url, _ = await nursery.start(partial(serve_simulator, "127.0.0.1", 0,
                                                 state=SimulatorState(api_key=KEY)))
            config = Config(database_url=f"{tmp}/ledger.db", port=0, log_level="WARNING",
                            upstream=UpstreamConfig(url=url, api_key=KEY))
            running = await nursery.start(serve, config)
            body = {"model": model, "max_tokens": 100, "messages": [{"role": "user", "content": "hi [sim deltas=4]"}]}
            rich = await _account(running, "rich", 1_000_000_000)
            poor = await _account(running, "poor", 150_000)  # $0.15: less than the worst case, more than enough
            async with httpx.AsyncClient(base_url=running.url, timeout=30) as http:
                await _run(http, rich, body, 20)  # warm up
                uncounted = await _run(http, rich, body, requests)
                before = running.gateway.meter.counted_holds
                counted = await _run(http, poor, body, requests)
                print(_line("worst-case", uncounted))
                print(_line("counted", counted))
                print(f"counted holds: {running.gateway.meter.counted_holds - before} of {requests}")
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--model", default="claude-haiku-4.5")
    args = parser.parse_args()
    trio.run(main, args.requests, args.model)
