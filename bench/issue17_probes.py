"""The probes of issue 17 (money), run against this tree: what each one costs or moves.
A measurement, not a test: ``python -m bench.issue17_probes`` (to compare with another
checkout, run it with that checkout first on PYTHONPATH)."""

from __future__ import annotations

import json
import tempfile
from dataclasses import replace
from functools import partial

import httpx
import trio

from proxy.accounts.service import Accounts
from proxy.billing import usage_cost
from proxy.catalog import default_catalog
from proxy.config import AccountsConfig, Config, UpstreamConfig
from proxy.money import format_usd
from proxy.protocol.stream_filter import delta_tokens
from proxy.protocol.usage import Usage
from proxy.serve import serve
from proxy.simulator.server import SimulatorState, serve_simulator
from storage.base import KeyLimits

KEY = "sk-probe-upstream"


def offline() -> None:
    spaced = [b"event: content_block_delta\ndata: %s\n\n" % json.dumps(
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}}).encode()
        for t in ("abc", "def", "ghi")]
    print(f"three spaced 3-byte deltas: {sum(delta_tokens(r) for r in spaced)} output tokens estimated")
    sonnet = default_catalog().resolve("claude-sonnet-4.5").prices
    searched = Usage().merged({"input_tokens": 1000, "output_tokens": 100,
                               "server_tool_use": {"web_search_requests": 3}})
    print(f"sonnet, 1000 in / 100 out + 3 web searches: ${format_usd(usage_cost(searched, sonnet))} "
          f"(tokens alone ${format_usd(usage_cost(Usage(1000, output_tokens=100), sonnet))})")


async def account(running, name: str, credit: int, paid: bool = False, **options) -> httpx.AsyncClient:
    store = running.gateway.store
    await Accounts(store).create_user(name)
    if credit:
        await store.credit(name, credit, "payment" if paid else "credit", paid=credit if paid else None)
    key, _ = await Accounts(store).create_key(running.gateway.catalog, name, **options)
    return httpx.AsyncClient(base_url=running.url, headers={"x-api-key": key}, timeout=30)


async def balance(running, name: str) -> str:
    await trio.sleep(0.3)  # (streams and abandoned requests settle after their handler)
    return format_usd((await running.gateway.store.get_account(name)).balance)


async def at_once(n: int, make) -> list[int]:
    statuses: list[int] = []

    async def one():
        statuses.append((await make()).status_code)

    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(one)
    return sorted(statuses)


def counted(statuses: list[int]) -> str:
    return ", ".join(f"{statuses.count(s)} x {s}" for s in sorted(set(statuses)))


async def online(tmp: str) -> None:
    async with trio.open_nursery() as nursery:
        url, _ = await nursery.start(partial(serve_simulator, "127.0.0.1", 0, state=SimulatorState(api_key=KEY)))
        config = Config(database_url=f"{tmp}/ledger.db", port=0, log_level="WARNING",
                        upstream=UpstreamConfig(url=url, api_key=KEY), accounts=AccountsConfig(free_tier_rpm=3))
        running = await nursery.start(serve, config)

        doc = {"model": "claude-haiku-4.5", "max_tokens": 100, "messages": [{"role": "user", "content": [
            {"type": "document", "source": {"type": "url", "url": "https://example.com/big.pdf"}},
            {"type": "text", "text": "summarise [sim input_tokens=150000]"}]}]}
        async with await account(running, "doc", 50_000, paid=True) as http:
            status = (await http.post("/v1/messages", json=doc)).status_code
            print(f"$0.05 + a 150k-token document by URL (non-streaming): {status}, balance ${await balance(running, 'doc')}")
            streamed = (await http.post("/v1/messages", json={**doc, "stream": True})).status_code
            retried = (await http.post("/v1/messages", json=doc)).status_code
            print(f"  then streamed {streamed} and retried without stream {retried}: balance "
                  f"${await balance(running, 'doc')}")

        big = {"model": "claude-sonnet-4.5", "max_tokens": 50, "messages": [
            {"role": "user", "content": "x" * 240_000 + " [sim ttft_ms=1500 deltas=4]"}]}
        async with await account(running, "leaver", 10_000_000, paid=True) as http:
            with trio.move_on_after(0.3):
                await http.post("/v1/messages", json=big)
            await trio.sleep(2)
            rows = await running.gateway.store.usage("leaver", 5)
            print(f"abandoned 240 KB prompt (sonnet): charged ${format_usd(sum(r.cost for r in rows))} "
                  f"({[(r.status, r.input_tokens, r.output_tokens) for r in rows]})")

        searched = {"model": "claude-haiku-4.5", "max_tokens": 50, "tools": [
            {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}],
            "messages": [{"role": "user", "content": "news [sim searches=3]"}]}
        async with await account(running, "searcher", 10_000_000, paid=True) as http:
            answer = await http.post("/v1/messages", json=searched)
            print(f"web search x3 through the simulator: usage {answer.json().get('usage', {}).get('server_tool_use')}, "
                  f"charged ${format_usd(10_000_000 - (await running.gateway.store.get_account('searcher')).balance)}")

        await Accounts(running.gateway.store).create_user("mallory")
        async with await account(running, "capped", 500_000_000, paid=True,
                                 limits=KeyLimits(daily_usd=1_000_000)) as http:
            moved = await http.post("/api/user/transfer", json={"toUsername": "mallory", "amount": 5})
            print(f"key capped at $1/day transfers $5: {moved.status_code}, mallory has "
                  f"${await balance(running, 'mallory')}")

        async with await account(running, "reseller", 100_000_000, paid=True) as http:
            for _ in range(2):
                await http.post("/api/user/transfer", json={"toUsername": "mallory", "amount": 1},
                                headers={"Idempotency-Key": "order-1"})
            print(f"a transfer of $1 retried with one Idempotency-Key: mallory has ${await balance(running, 'mallory')}")

        count = {"model": "claude-haiku-4.5", "messages": [{"role": "user", "content": "hi"}]}
        path = "/v1/messages/count_tokens"
        async with await account(running, "broke", 1, paid=True) as http:
            await running.gateway.store.transfer((await running.gateway.store.get_account("broke")).id, "mallory", 1,
                                                 "empty")
            print(f"$0 paid account, 200 concurrent count_tokens: {counted(await at_once(200, lambda: http.post(path, json=count)))}")
        async with await account(running, "cc", 10_000_000, paid=True, limits=KeyLimits(rpm=5)) as http:
            print(f"/context burst of 14 counts on --rpm 5: {counted(await at_once(14, lambda: http.post(path, json=count)))}")
        async with await account(running, "free", 1_000_000) as http:
            print(f"/context burst of 14 counts on the free tier (rpm 3): "
                  f"{counted(await at_once(14, lambda: http.post(path, json=count)))}")
        clients = [await account(running, "free5", 1_000_000)]
        for _ in range(4):
            key, _ = await Accounts(running.gateway.store).create_key(running.gateway.catalog, "free5")
            clients.append(httpx.AsyncClient(base_url=running.url, headers={"x-api-key": key}, timeout=30))
        statuses = []
        for client in clients:
            for _ in range(3):
                statuses.append((await client.post("/v1/messages", json={**count, "max_tokens": 5})).status_code)
            await client.aclose()
        print(f"free tier (rpm 3), 5 keys x 3 messages: {counted(sorted(statuses))}")
        problems = await running.gateway.store.check()
        print(f"db check: {problems or 'ok'}")
        nursery.cancel_scope.cancel()


def main() -> None:
    offline()
    with tempfile.TemporaryDirectory() as tmp:
        trio.run(online, tmp)


if __name__ == "__main__":
    main()
