"""What the fleet's thinking memory costs a request: a measurement, not a test.

``python -m bench.shared_thinking [--turns 1000] [--thinking-bytes 4000] [--redis redis://127.0.0.1:6379/0]``

``--turns`` turns (a thinking block of ``--thinking-bytes``, a text and two tool_use
placeholders) remembered one at a time under one key, then each recalled by its two
tool_use ids, through ``SharedThinking`` (one Lua script a call) and through the
in-process ``ThinkingStore``; prints p50 / p99 per call and this process's CPU per call.
Its keys (a fresh prefix) are deleted afterwards.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

import trio

from proxy.protocol.thinking import Placeholder, Turn
from proxy.protocol.thinking_memory import ThinkingStore
from proxy.shared.client import SharedRedis
from proxy.shared.thinking import SharedThinking


def turns(n: int, size: int) -> list[Turn]:
    return [Turn(({"type": "thinking", "thinking": ("thought %d " % i) * (size // 10), "signature": "E" * 300},
                  Placeholder("text"), Placeholder("tool_use", f"toolu_{i:024d}a"),
                  Placeholder("tool_use", f"toolu_{i:024d}b"))) for i in range(n)]


async def timed(memory, batch: list[Turn]) -> dict:
    out = {}
    for name, call in (("remember", lambda t: memory.remember(1, t)),
                       ("recall", lambda t: memory.recall(1, t.tool_use_ids))):
        walls = []
        cpu = time.process_time()
        for turn in batch:
            started = time.perf_counter()
            await call(turn)
            walls.append(time.perf_counter() - started)
        walls.sort()
        out[name] = (statistics.median(walls) * 1000, walls[int(len(walls) * 0.99)] * 1000,
                     (time.process_time() - cpu) / len(batch) * 1000)
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=1000)
    parser.add_argument("--thinking-bytes", type=int, default=4000)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    batch = turns(args.turns, args.thinking_bytes)
    prefix = f"bench:{uuid.uuid4().hex}:"
    shared = SharedRedis(args.redis, prefix, timeout=2.0)
    async with shared.client:
        try:
            results = {"redis": await timed(SharedThinking(shared), batch),
                       "in-process": await timed(ThinkingStore(), batch)}
        finally:
            keys = [k async for k in shared.client.scan_iter(match=prefix + "*", count=1000)]
            if keys:
                await shared.client.delete(keys)
    for memory, calls in results.items():
        for name, (p50, p99, cpu) in calls.items():
            print(f"{memory:10} {name:8} p50 {p50:.3f} ms  p99 {p99:.3f} ms  CPU {cpu:.3f} ms/call")


if __name__ == "__main__":
    trio.run(main)
