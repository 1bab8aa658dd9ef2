"""python -m bench.responses_cache: what automatic prompt caching is worth to a Codex-shaped
client on /v1/responses, measured with the simulator's prompt cache
(``proxy/upstream/sim_cache.py``, as ``cheaplm simulator --prompt-cache``).

One conversation of ``--turns`` turns, shaped like Codex's: about 40 KB of instructions
(two developer messages) and function tools resent on every request, reasoning effort
medium, ``store: false``, the whole history as input items, a ``prompt_cache_key`` and
no ``cache_control``. Each turn is a tool call and its answer (two requests). The same
conversation runs with ``auto_cache`` on and off; the ledger says how many prompt tokens
were read from the cache, written to it or sent plain, and what they cost.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from functools import partial
from pathlib import Path

import openai
import trio

from proxy.accounts.service import Accounts
from proxy.config import Config, UpstreamConfig
from proxy.money import format_usd
from proxy.serve import serve
from proxy.simulator.cache import PromptCache
from proxy.simulator.server import SimulatorState, serve_simulator

MODEL = "claude-sonnet-4.5"
INSTRUCTIONS = ("You are Codex, a coding agent running in a terminal. Read files before you edit them, keep "
                "changes small, run the tests, and explain what you changed. ") * 110        # ~17 KB
SKILLS = "Skill: " + "use ripgrep to search; prefer apply_patch for edits; never commit secrets. " * 60  # ~5 KB


def tools() -> list[dict]:
    """About 18 KB of function tools, as Codex's shell, patch, plan and MCP tools weigh."""
    out = []
    for i in range(24):
        out.append({"type": "function", "name": f"tool_{i}", "strict": False,
                    "description": f"Tool {i}: " + "does one well-described thing with its arguments. " * 10,
                    "parameters": {"type": "object", "properties": {
                        "path": {"type": "string", "description": "A path in the workspace " * 3},
                        "query": {"type": "string", "description": "What to look for " * 3}},
                        "required": ["path"]}})
    return out


async def conversation(client: openai.AsyncOpenAI, turns: int) -> None:
    history: list = [
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": INSTRUCTIONS}]},
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": SKILLS}]}]
    common = {"model": MODEL, "tools": tools(), "reasoning": {"effort": "medium", "summary": "auto"},
              "store": False, "include": ["reasoning.encrypted_content"], "prompt_cache_key": "bench-session"}
    for turn in range(turns):
        history.append({"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": f"Step {turn}: look at module {turn} and fix what fails. " * 8}]})
        first = await client.responses.create(input=history, **common)
        history += [item.model_dump(exclude_none=True) for item in first.output]
        for call in (item for item in first.output if item.type == "function_call"):
            history.append({"type": "function_call_output", "call_id": call.call_id,
                            "output": f"contents of module {turn}\n" + "def f(x):\n    return x\n" * 40})
        second = await client.responses.create(input=history, **common)
        history += [item.model_dump(exclude_none=True) for item in second.output]


async def measure(auto_cache: bool, turns: int, workdir: Path) -> dict:
    async with trio.open_nursery() as nursery:
        url, _ = await nursery.start(partial(serve_simulator, "127.0.0.1", 0,
                                             state=SimulatorState(prompt_cache=PromptCache(), record=False)))
        config = replace(Config(database_url=str(workdir / f"cache-{auto_cache}.db"), port=0,
                                upstream=UpstreamConfig(url=url)), auto_cache=auto_cache)
        running = await nursery.start(serve, config)
        store = running.gateway.store
        await Accounts(store).create_user("bench")
        await store.credit("bench", 10**12, "credit")
        key, _ = await Accounts(store).create_key(running.gateway.catalog, "bench", "bench")
        client = openai.AsyncOpenAI(api_key=key, base_url=running.url + "/v1", max_retries=0)
        await conversation(client, turns)
        rows = await store.usage("bench", 100_000)
        nursery.cancel_scope.cancel()
    prompt = sum(r.input_tokens + r.cache_read + r.cache_write_5m + r.cache_write_1h for r in rows)
    return {"requests": len(rows), "prompt_tokens": prompt, "cache_read": sum(r.cache_read for r in rows),
            "cache_write": sum(r.cache_write_5m + r.cache_write_1h for r in rows),
            "uncached": sum(r.input_tokens for r in rows), "output": sum(r.output_tokens for r in rows),
            "cost": sum(r.cost for r in rows)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.responses_cache", description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=10)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cheaplm-responses-cache-") as tmp:
        results = {on: trio.run(measure, on, args.turns, Path(tmp)) for on in (True, False)}
    print(f"One Codex-shaped conversation, {args.turns} turns (a tool call and its answer each), "
          f"{MODEL} prices, the simulator's prompt cache on\n")
    print("| auto_cache | requests | prompt tokens | read from cache | written to cache | plain input | output | cost |")
    print("|---|---|---|---|---|---|---|---|")
    for on, r in results.items():
        share = 100 * r["cache_read"] / r["prompt_tokens"]
        print(f"| {'on' if on else 'off'} | {r['requests']} | {r['prompt_tokens']:,} | {r['cache_read']:,} "
              f"({share:.0f}%) | {r['cache_write']:,} | {r['uncached']:,} | {r['output']:,} "
              f"| ${format_usd(r['cost'])} |")
    on, off = results[True]["cost"], results[False]["cost"]
    print(f"\nWith automatic caching the conversation costs {100 * (off - on) / off:.0f}% less.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
