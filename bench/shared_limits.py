"""What sharing the limits through Redis costs a request: Redis round trips and CPU (this
process's, the gateway's side) per admit + finish of one key, in the process
(LocalLimits: the gateway without ``redis_url``) and through Redis (RedisLimits), for a
key without limits, with rpm only, and with rpm + tpm + concurrency; and the channel
health exchange's CPU per round (two a second per process, whatever the traffic).

    .venv/bin/python -m bench.shared_limits [--redis redis://127.0.0.1:6379/0] [--n 3000]

Keys are written under a prefix of their own and deleted afterwards."""

from __future__ import annotations

import argparse
import time
from uuid import uuid4

import trio

from proxy.limits.local import LocalLimits
from proxy.shared.channels import SharedHealth
from proxy.shared.client import open_shared
from proxy.shared.limits import RedisLimits, Shared
from proxy.upstream.router import Channel, Router, RoutingPolicy
from storage.base import KeyLimits

PROFILES = {"no limits": KeyLimits(), "rpm": KeyLimits(rpm=10**9),
            "rpm+tpm+concurrency": KeyLimits(rpm=10**9, tpm=10**12, concurrency=10**6)}


async def _cycles(limiter, limits: KeyLimits, n: int) -> tuple[float, float]:
    """(CPU ms, wall ms) per admit + finish, over ``n`` in a row."""
    for _ in range(50):  # warm up (scripts loaded, connections open)
        admission = await limiter.admit(1, limits, 100)
        if admission is not None:
            await admission.finish(80)
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(n):
        admission = await limiter.admit(1, limits, 100)
        if admission is not None:
            await admission.finish(80)
    return (time.process_time() - cpu) * 1000 / n, (time.perf_counter() - wall) * 1000 / n


class _Nowhere:
    idle_timeout, label, url_label = 1.0, "nowhere", "-"


async def main(url: str, n: int) -> None:
    prefix = f"bench:{uuid4().hex}:"
    rows = []
    async with open_shared(url, prefix, 2.0) as shared:
        try:
            local = LocalLimits(trio.current_time)
            shared_limits = RedisLimits(shared, local)
            for name, limits in PROFILES.items():
                cpu, wall = await _cycles(local.key_limiter(), limits, n)
                rows.append((name, "in the process", 0.0, cpu, wall))
                limiter = shared_limits.key_limiter()
                before = shared_limits.shared.calls
                cpu, wall = await _cycles(limiter, limits, n)
                trips = (shared_limits.shared.calls - before) / (n + 50)
                rows.append((name, "Redis", trips, cpu, wall))
            router = Router([Channel(f"c{i}", _Nowhere()) for i in range(4)], RoutingPolicy())
            health = SharedHealth(Shared(shared), router)
            rounds = 500
            cpu = time.process_time()
            for _ in range(rounds):
                await health.round()
            health_cpu = (time.process_time() - cpu) * 1000 / rounds
        finally:
            keys = [key async for key in shared.client.scan_iter(match=prefix + "*")]
            if keys:
                await shared.client.delete(keys)
    print(f"admit + finish of one key, {n} in a row (Redis at {url}):\n")
    print("| key | limits | Redis round trips / request | CPU ms / request | wall ms / request |")
    print("|---|---|---|---|---|")
    for name, where, trips, cpu, wall in rows:
        print(f"| {name} | {where} | {trips:.2f} | {cpu:.3f} | {wall:.3f} |")
    print(f"\nchannel health exchange (4 channels): {health_cpu:.3f} ms CPU per round, 2 rounds/s per process")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--n", type=int, default=3000)
    arguments = parser.parse_args()
    trio.run(main, arguments.redis, arguments.n)
