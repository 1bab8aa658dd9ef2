"""python -m bench.affinity: what prompt-cache affinity is worth, measured with the
simulator's prompt cache (``proxy/upstream/sim_cache.py``).

Two equal channels (two simulators, each with its own cache, as two upstream accounts
have), the gateway in front, and conversations shaped like a coding agent's (a large
system prompt and a growing message list, the last message marked for caching). The
same conversations run with ``routing.affinity`` on and off; the ledger says how many
prompt tokens were read from a cache, written to one, or sent plain, and what they cost.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from functools import partial
from pathlib import Path

import anthropic
import trio

from proxy.accounts.service import Accounts
from proxy.config import ChannelConfig, Config, RoutingConfig, UpstreamConfig
from proxy.money import format_usd
from proxy.serve import serve
from proxy.simulator.cache import PromptCache
from proxy.simulator.server import SimulatorState, serve_simulator

SYSTEM = [{"type": "text", "text": "You are a careful coding agent working in a large repository. " * 400,
           "cache_control": {"type": "ephemeral"}}]


def conversation(index: int, turns: int) -> list[list[dict]]:
    """The message lists a client sends for each turn of conversation ``index``."""
    sent, messages = [], []
    for turn in range(turns):
        if turn:
            messages.append({"role": "assistant", "content": f"Done step {turn} of task {index}. " * 40})
        messages.append({"role": "user", "content": [{"type": "text", "text": f"Task {index}, step {turn}: "
                                                       + "details " * 60}]})
        marked = [dict(m) for m in messages]
        for m in marked[:-1]:  # the marker moves to the newest message, as Claude Code does
            if isinstance(m["content"], list):
                m["content"] = [{k: v for k, v in b.items() if k != "cache_control"} for b in m["content"]]
        marked[-1] = {**marked[-1], "content": [{**marked[-1]["content"][0], "cache_control": {"type": "ephemeral"}}]}
        sent.append(marked)
    return sent


async def measure(affinity: bool, conversations: int, turns: int, workdir: Path) -> dict:
    async with trio.open_nursery() as nursery:
        urls = []
        for _ in range(2):
            url, _ = await nursery.start(partial(serve_simulator, "127.0.0.1", 0,
                                                 state=SimulatorState(prompt_cache=PromptCache(), record=False)))
            urls.append(url)
        config = Config(database_url=str(workdir / f"affinity-{affinity}.db"), port=0, upstream=UpstreamConfig(),
                        channels=tuple(ChannelConfig(f"ch{i}", UpstreamConfig(url=u)) for i, u in enumerate(urls)),
                        routing=RoutingConfig(affinity=affinity))
        running = await nursery.start(serve, config)
        store = running.gateway.store
        await Accounts(store).create_user("bench")
        await store.credit("bench", 10**12, "credit")
        key, _ = await Accounts(store).create_key(running.gateway.catalog, "bench", "bench")
        client = anthropic.AsyncAnthropic(api_key=key, base_url=running.url, max_retries=0)
        for turn in range(turns):  # the conversations interleave, as a team's agents do
            async with trio.open_nursery() as requests:
                for index in range(conversations):
                    messages = conversation(index, turns)[turn]
                    requests.start_soon(partial(client.messages.create, model="claude-sonnet-4.5", max_tokens=50,
                                                system=SYSTEM, messages=messages))
        rows = await store.usage("bench", 100_000)
        nursery.cancel_scope.cancel()
    prompt = sum(r.input_tokens + r.cache_read + r.cache_write_5m + r.cache_write_1h for r in rows)
    return {"requests": len(rows), "prompt_tokens": prompt, "cache_read": sum(r.cache_read for r in rows),
            "cache_write": sum(r.cache_write_5m + r.cache_write_1h for r in rows),
            "uncached": sum(r.input_tokens for r in rows), "cost": sum(r.cost for r in rows)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.affinity", description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=20)
    parser.add_argument("--turns", type=int, default=8)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cheaplm-affinity-") as tmp:
        results = {on: trio.run(measure, on, args.conversations, args.turns, Path(tmp)) for on in (True, False)}
    print(f"{args.conversations} conversations x {args.turns} turns over two channels, Sonnet 4.5 prices\n")
    print("| affinity | requests | prompt tokens | read from cache | written to cache | plain input | cost |")
    print("|---|---|---|---|---|---|---|")
    for on, r in results.items():
        share = 100 * r["cache_read"] / r["prompt_tokens"]
        print(f"| {'on' if on else 'off'} | {r['requests']} | {r['prompt_tokens']:,} | {r['cache_read']:,} "
              f"({share:.0f}%) | {r['cache_write']:,} | {r['uncached']:,} | ${format_usd(r['cost'])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
