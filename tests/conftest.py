"""Shared fixtures.

Two gateways: ``gateway`` is the whole server (hypercorn on loopback, the simulator over
real HTTP), for tests where the socket path is the subject; ``app_gateway`` is the same
Quart app and relay driven in-process through httpx's ``ASGITransport``, with a real
ledger (below) and the simulator's script at the ``Upstream`` cut
(``tests/fakes.py``). Both hand back something with ``url`` and ``gateway``; ``Account``,
``http_client`` and the SDK helpers reach either one.

The store: every gateway fixture (``config``, ``gateway``, ``app_gateway``, ``site``,
tests/http's ``errors_gateway``) and ``in_process_config(ledger)`` keep their ledger at the
``ledger`` fixture's URL: an empty SQLite file in ``tmp_path`` by default. A test where the
store matters opts into both stores with one mechanism, the ``both_stores`` marker (on the
test, or ``pytestmark = pytest.mark.both_stores`` on a module): it then runs twice, ids
``[sqlite]`` and ``[postgresql]``; the PostgreSQL ledger is a fresh schema of its own in
the session's database (``pg_database``: created for the run, dropped at its end; the
URL's ``options=-csearch_path=...``), so each test starts from an empty ledger. Without
a reachable PostgreSQL the ``[postgresql]`` runs skip, saying why. Marked: the money
(holds, settles, partial charges, refunds, caps, transfers, codes, top-ups, usage and its
CSV), the accounts (signup, sessions, keys, disabling), the CLI's store commands, channel
overrides, lease and crash recovery; not: the protocol, adaptors, simulator, sizing and
the SDKs' wire tests, where the store is there but not what is tested. Tests that read or
damage the ledger underneath the store use ``query_ledger(url, sql, args)`` or
``raw_ledger(url)`` (a DB-API connection), which reach either store."""

from __future__ import annotations

import os
import ssl
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import AsyncIterator

import anthropic
import httpx
import httpx2
import openai
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from proxy.accounts.service import Accounts
from proxy.config import AccountsConfig, Config, UpstreamConfig
from proxy.http.app import create_app
from proxy.ids import new_instance_id
from proxy.money import parse_usd
from proxy.runtime import Gateway
from proxy.upstream.base import Upstream
from proxy.upstream.channels import SINGLE, routing_policy
from proxy.upstream.operator import sync_channels
from proxy.upstream.router import Channel, Router
from proxy.shared.changes import follow_changes
from quart_trio import QuartTrio
from proxy.serve import Running, serve
from proxy.shared.client import open_shared
from proxy.simulator.server import SimulatorState, serve_simulator
from storage import open_store
from storage.leases import keep_lease

from tests.fakes import SeenLog, SimUpstream

UPSTREAM_KEY = "sk-upstream-secret-for-tests"
CLIENT = ("127.0.0.1", 50000)  # where in-process requests say they come from


@dataclass
class Sim(SeenLog):
    """The simulator served over real HTTP."""

    url: str
    state: SimulatorState


@pytest.fixture
async def simulator(nursery) -> Sim:
    state = SimulatorState(api_key=UPSTREAM_KEY)
    url, state = await nursery.start(partial(serve_simulator, "127.0.0.1", 0, state=state))
    return Sim(url, state)


# -- the store: SQLite by default, both for tests marked both_stores -------------------------

PG_SERVER = "postgresql://postgres@127.0.0.1:5432"  # as on the machine and in CI (trust auth)
STORES = ("sqlite", "postgresql")


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "both_stores: run on a SQLite and on a PostgreSQL ledger (the ledger fixture)")


def pytest_generate_tests(metafunc) -> None:
    if "ledger" in metafunc.fixturenames and metafunc.definition.get_closest_marker("both_stores"):
        metafunc.parametrize("ledger", STORES, indirect=True)


@pytest.fixture(scope="session")
def pg_database():
    """A fresh, uniquely named PostgreSQL database for this test run (dropped at its end),
    or the exception when the server cannot be reached."""
    try:
        import psycopg

        admin = psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True, connect_timeout=3)
    except Exception as exc:  # no server here: the PostgreSQL tests skip, saying why
        yield exc
        return
    name = f"cheaplm_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin.execute(f"CREATE DATABASE {name}")
    try:
        yield f"{PG_SERVER}/{name}"
    finally:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        admin.close()


def pg_database_url(request) -> str:
    """The session's PostgreSQL database (skips the test when the server is unreachable)."""
    database = request.getfixturevalue("pg_database")
    if not isinstance(database, str):
        pytest.skip(f"PostgreSQL at {PG_SERVER} is unreachable: {database}")
    return database


def fresh_schema(database: str) -> str:
    """A URL to a new, empty schema of its own in the PostgreSQL ``database``."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    return f"{database}?options=-csearch_path%3D{schema}"


@pytest.fixture
def ledger(request, tmp_path) -> str:
    """Where the test's ledger is (no ledger there yet): a SQLite file in tmp_path, or, for
    the [postgresql] run of a ``both_stores`` test, an empty schema (see the docstring)."""
    if getattr(request, "param", "sqlite") == "postgresql":
        return fresh_schema(pg_database_url(request))
    return str(tmp_path / "ledger.db")


@pytest.fixture
def pg_url(request) -> str:
    """An empty PostgreSQL ledger (a fresh schema), for tests that are about PostgreSQL."""
    return fresh_schema(pg_database_url(request))


def raw_ledger(url: str):
    """A plain DB-API connection to the ledger at ``url`` in autocommit mode (either store;
    SQL both understand; parameters through ``query_ledger``)."""
    if url.startswith("postgresql://"):
        import psycopg

        return psycopg.connect(url, autocommit=True)
    import sqlite3

    return sqlite3.connect(url, isolation_level=None, timeout=10)


class Row(tuple):
    """A row read by ``query_ledger``: by position, or by column name (as sqlite3.Row)."""

    names: tuple[str, ...]

    def __getitem__(self, key):
        return super().__getitem__(self.names.index(key) if isinstance(key, str) else key)

    def keys(self) -> tuple[str, ...]:
        return self.names


def query_ledger(url: str, sql: str, args: tuple = ()) -> list[Row]:
    """``sql`` (``?`` placeholders) run on the ledger at ``url`` underneath the store: its rows."""
    conn = raw_ledger(url)
    try:
        cursor = conn.execute(sql.replace("?", "%s") if url.startswith("postgresql://") else sql, args)
        if cursor.description is None:  # (a statement that returns no rows)
            return []
        names = tuple(column[0] for column in cursor.description)
        rows = []
        for values in cursor.fetchall():
            row = Row(values)
            row.names = names
            rows.append(row)
        return rows
    finally:
        conn.close()


@pytest.fixture
def config(ledger, simulator) -> Config:
    return Config(database_url=ledger, host="127.0.0.1", port=0,
                  upstream=UpstreamConfig(url=simulator.url, api_key=UPSTREAM_KEY, first_byte_timeout=10,
                                          idle_timeout=10))


@pytest.fixture
async def gateway(nursery, config) -> Running:
    return await nursery.start(serve, config)


@dataclass(frozen=True)
class InProcess:
    """The gateway's app served in-process: requests go through ``ASGITransport``."""

    url: str
    gateway: Gateway
    upstream: SimUpstream | Upstream
    app: QuartTrio
    simulator_url: str | None = None

    @property
    def transport(self) -> httpx.ASGITransport:
        return httpx.ASGITransport(app=self.app, client=CLIENT)


async def serve_in_process(config: Config, upstream: Upstream | None = None, *, follow: bool = False,
                           task_status=trio.TASK_STATUS_IGNORED) -> None:
    """``serve`` without the socket: the same store (and instance lease), fleet's Redis
    (with ``redis_url``), Gateway and app;
    ``upstream`` (default: the simulator's script in-process; ``open_upstream(config, ...)``
    for the configured HTTP channels) instead of the HTTP upstream. ``follow``: with
    serve's channel sync and change-feed follower too."""
    upstream = upstream or SimUpstream(SimulatorState(api_key=UPSTREAM_KEY),
                                       first_byte_timeout=config.upstream.first_byte_timeout,
                                       idle_timeout=config.upstream.idle_timeout)
    # A single upstream is a one-channel router named "default", as open_upstream makes it;
    # InProcess.upstream stays the fake itself (tests read its .seen, hold its .gate).
    router = upstream if isinstance(upstream, Router) else Router([Channel(SINGLE, upstream)], routing_policy(config))
    store = await open_store(config.database_url, instance_id=new_instance_id(),
                             busy_timeout=config.store_busy_timeout)
    try:
        async with open_shared(config.redis_url, config.redis_prefix, config.redis_timeout) as shared, \
                trio.open_nursery() as nursery:
            await nursery.start(keep_lease, store, config.lease_seconds)
            gateway = Gateway(config, store, router, after_response=nursery, shared=shared)
            nursery.start_soon(gateway.keep)
            if follow:
                channels = await nursery.start(sync_channels, store, router, config.channel_sync_interval)
                await nursery.start(follow_changes, store, gateway.keys, channels.wake, config.change_poll_interval)
            task_status.started(InProcess("http://cheaplm.test", gateway, upstream, create_app(gateway)))
            await trio.sleep_forever()
    finally:
        with trio.CancelScope(shield=True):
            await router.aclose()
            await store.unregister_instance()
            await store.aclose()


def in_process_config(ledger: str | Path, **upstream) -> Config:
    """A config for ``serve_in_process``: the ledger at ``ledger`` (the fixture's URL), or
    a SQLite one in the directory ``ledger`` (a ``tmp_path``)."""
    if isinstance(ledger, Path):
        ledger = str(ledger / "ledger.db")
    settings = {"url": "http://upstream.invalid", "api_key": UPSTREAM_KEY, "first_byte_timeout": 10,
                "idle_timeout": 10, **upstream}
    return Config(database_url=ledger, host="127.0.0.1", port=0, upstream=UpstreamConfig(**settings))


@pytest.fixture
async def app_gateway(nursery, ledger) -> InProcess:
    return await nursery.start(serve_in_process, in_process_config(ledger))


# One TLS context for every test client: httpx builds one per client otherwise (~60 ms of
# CPU each, loading the CA bundle), and a loopback gateway is plain HTTP.
LOOPBACK_TLS = ssl.create_default_context()


def http_client(running, **kwargs) -> httpx.AsyncClient:
    """An httpx client for either gateway (in-process or on a socket)."""
    kwargs.setdefault("timeout", 30)
    transport = running.transport if isinstance(running, InProcess) else None
    return httpx.AsyncClient(base_url=running.url, transport=transport, verify=LOOPBACK_TLS, **kwargs)


def sdk_http(running, sdk=anthropic) -> dict:
    """The ``http_client`` for an official SDK's client (they bring their own httpx,
    ``httpx2``), with the SDK's defaults: through ASGITransport to an in-process gateway,
    over the socket (with the shared TLS context) to a served one."""
    if isinstance(running, InProcess):
        return {"http_client": sdk.DefaultAsyncHttpxClient(
            transport=httpx2.ASGITransport(app=running.app, client=CLIENT))}
    return {"http_client": sdk.DefaultAsyncHttpxClient(verify=LOOPBACK_TLS)}


@dataclass
class Account:
    username: str
    key: str
    running: Running | InProcess

    def anthropic(self, v1: bool = False, **kwargs) -> anthropic.AsyncAnthropic:
        base = self.running.url + ("/v1" if v1 else "")
        return anthropic.AsyncAnthropic(api_key=self.key, base_url=base, max_retries=0,
                                        **{**sdk_http(self.running, anthropic), **kwargs})

    def openai(self, **kwargs) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(api_key=self.key, base_url=self.running.url + "/v1", max_retries=0,
                                  **{**sdk_http(self.running, openai), **kwargs})

    def http(self) -> httpx.AsyncClient:
        return http_client(self.running, headers={"x-api-key": self.key})

    async def balance(self) -> int:
        return (await self.running.gateway.store.get_account(self.username)).balance

    async def account(self):
        return await self.running.gateway.store.get_account(self.username)

    async def post_at_once(self, body: dict, n: int, path: str = "/v1/messages",
                           held: bool = False) -> list[httpx.Response]:
        """``n`` copies of one request sent at once (over one client): the responses.
        ``held``: while the in-process upstream holds every answer (``at_once_held``)."""
        async with self.http() as http:
            if held:
                return await at_once_held(self.running.upstream, n, lambda: http.post(path, json=body))
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


async def at_once_held(upstream: SimUpstream, n: int, make, while_held=None) -> list:
    """``make()`` ``n`` times at once while ``upstream`` holds every answer (``SimUpstream.gate``:
    a whole one before its first byte, a stream after its first event); once each request
    is either answered without the upstream or held there, ``while_held()`` (if given)
    runs, then the answers go on. The admitted requests are all in flight together while
    the others are judged, and no clock is involved."""
    upstream.gate = trio.Event()
    results: list = []

    async def one() -> None:
        results.append(await make())

    try:
        async with trio.open_nursery() as nursery:
            for _ in range(n):
                nursery.start_soon(one)
            with trio.fail_after(10):
                while len(results) + upstream.holding < n:
                    await trio.sleep(0.002)
            if while_held is not None:
                await while_held()
            upstream.gate.set()
    finally:
        upstream.gate = None
    return results


async def make_account(running: Running | InProcess, username: str = "alice", credit_micro: int = 10_000_000,
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


@pytest.fixture
async def app_alice(app_gateway) -> Account:
    return await make_account(app_gateway)


MESSAGE = [{"role": "user", "content": "Hello"}]


# -- accounts: the self-serve site ------------------------------------------------------------

PASSWORD = "correct horse battery"
FAST_HASH = {"password_time_cost": 1, "password_memory_kib": 64}  # argon2id, cheap for tests


def with_fast_hash(config: Config, **accounts) -> Config:
    return replace(config, accounts=AccountsConfig(**{**FAST_HASH, **accounts}))


@pytest.fixture
async def site(nursery, config) -> Running:
    """The whole gateway on a socket with cheap password hashing (a real browser's site);
    tests/http/ overrides it with the in-process one."""
    return await nursery.start(serve, with_fast_hash(config))


def library(running) -> Accounts:
    config = running.gateway.config
    return Accounts(running.gateway.store, config.accounts, config.value_multiplier, config.payments.bonus)


def browser(running, **headers) -> httpx.AsyncClient:
    """A client with a cookie jar whose requests say they come from the site itself."""
    return http_client(running, headers={"origin": running.url, **headers})


@asynccontextmanager
async def signed_up(running, username: str) -> AsyncIterator[httpx.AsyncClient]:
    async with browser(running) as client:
        response = await client.post("/api/auth/signup", json={"username": username, "password": PASSWORD})
        assert response.status_code == 201, response.text
        yield client


async def code_worth(running, paid_usd: str, **kw) -> str:
    [code] = await library(running).create_codes(parse_usd(paid_usd), **kw)
    return code


# -- metrics ---------------------------------------------------------------------------------

def metric_samples(text: str) -> dict:
    """Prometheus text -> {(name, sorted label pairs): value}."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out
