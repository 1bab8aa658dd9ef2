"""The Quart side in process: create_app over a Gateway on a ledger of its own, reached
with httpx's ASGITransport (no sockets, no server). For routes whose real path (the
relay, sockets, processes) does not matter: the accounts and admin APIs and the pages."""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import AsyncIterator

import httpx

from proxy.accounts.service import Accounts
from proxy.config import AccountsConfig, Config
from proxy.http.app import create_app
from proxy.runtime import Gateway
from storage import open_store

ORIGIN = "http://testserver"
FAST = AccountsConfig(password_time_cost=1, password_memory_kib=64)


class NoUpstream:
    """These routes never reach an upstream."""

    label = "no upstream (in-process tests)"


@dataclass
class App:
    gateway: Gateway
    app: object

    @property
    def accounts(self) -> Accounts:
        config = self.gateway.config
        return Accounts(self.gateway.store, config.accounts, config.value_multiplier)

    def client(self, **headers: str) -> httpx.AsyncClient:
        """A browser-like client (cookie jar; its posts come from the site itself)."""
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=ORIGIN,
                                 headers={"origin": ORIGIN, **headers})


@asynccontextmanager
async def in_process(ledger: str = ":memory:", **accounts: object) -> AsyncIterator[App]:
    """The app on the ledger at ``ledger`` (the ledger fixture's URL; a throwaway one by default)."""
    store = await open_store(ledger, instance_id="in-process")
    try:
        gateway = Gateway(Config(accounts=replace(FAST, **accounts)), store, NoUpstream())
        yield App(gateway, create_app(gateway))
    finally:
        await store.aclose()
