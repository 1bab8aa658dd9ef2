"""End-to-end fixtures: the simulator served over real HTTP, the gateway served by
hypercorn on loopback, and the official SDKs as clients."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import anthropic
import httpx
import openai
import pytest
import trio

from proxy.accounts.service import Accounts
from proxy.config import Config, UpstreamConfig
from proxy.serve import Running, serve
from proxy.simulator.server import SimulatorState, serve_simulator

UPSTREAM_KEY = "sk-upstream-secret-for-tests"


@dataclass
class Sim:
    url: str
    state: SimulatorState

    def seen(self, path: str = "/v1/messages"):
        return [s for s in self.state.seen if s.path == path]

    async def last_outcome(self):
        """Wait (bounded) until the last /v1/messages request is no longer open."""
        with trio.fail_after(5):
            while self.seen()[-1].outcome == "open":
                await trio.sleep(0.005)
        return self.seen()[-1]


@pytest.fixture
async def simulator(nursery) -> Sim:
    state = SimulatorState(api_key=UPSTREAM_KEY)
    url, state = await nursery.start(partial(serve_simulator, "127.0.0.1", 0, state=state))
    return Sim(url, state)


@pytest.fixture
def config(tmp_path, simulator) -> Config:
    return Config(database_url=str(tmp_path / "ledger.db"), host="127.0.0.1", port=0,
                  upstream=UpstreamConfig(url=simulator.url, api_key=UPSTREAM_KEY, first_byte_timeout=10,
                                          idle_timeout=10))


@pytest.fixture
async def gateway(nursery, config) -> Running:
    return await nursery.start(serve, config)


@dataclass
class Account:
    username: str
    key: str
    running: Running

    def anthropic(self, v1: bool = False, **kwargs) -> anthropic.AsyncAnthropic:
        base = self.running.url + ("/v1" if v1 else "")
        return anthropic.AsyncAnthropic(api_key=self.key, base_url=base, max_retries=0, **kwargs)

    def openai(self, **kwargs) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(api_key=self.key, base_url=self.running.url + "/v1", max_retries=0, **kwargs)

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.running.url, headers={"x-api-key": self.key}, timeout=30)

    async def balance(self) -> int:
        return (await self.running.gateway.store.get_account(self.username)).balance

    async def account(self):
        return await self.running.gateway.store.get_account(self.username)

    async def post_at_once(self, body: dict, n: int, path: str = "/v1/messages") -> list[httpx.Response]:
        """``n`` copies of one request sent at once (over one client): the responses."""
        async with self.http() as http:
            return await at_once(n, lambda: http.post(path, json=body))

    async def settled(self, requests: int):
        """Wait (bounded) until ``requests`` usage rows exist and no hold is open.

        Streams settle just after their response is complete, in the gateway's
        after-response nursery."""
        with trio.fail_after(10):
            while True:
                rows = await self.running.gateway.store.usage(self.username, 10_000)
                account = await self.account()
                if len(rows) >= requests and account.held == 0:
                    return account
                await trio.sleep(0.005)


async def at_once(n: int, make) -> list:
    """Await ``make()`` ``n`` times concurrently: the results, in the order they came."""
    results: list = []

    async def one() -> None:
        results.append(await make())

    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(one)
    return results


async def make_account(running: Running, username: str = "alice", credit_micro: int = 10_000_000,
                       **key_options) -> Account:
    store = running.gateway.store
    accounts = Accounts(store)
    await accounts.create_user(username)
    if credit_micro:
        await store.credit(username, credit_micro, "credit")
    key, _ = await accounts.create_key(running.gateway.catalog, username, **key_options)
    return Account(username, key, running)


@pytest.fixture
async def alice(gateway) -> Account:
    return await make_account(gateway)


MESSAGE = [{"role": "user", "content": "Hello"}]
