"""A fleet: two ``cheaplm serve`` processes (each on its own port, each with its embedded
simulated upstream) on ONE fresh PostgreSQL database. Real processes are the subject:
money decided by two gateways at once must stay exact (issue #19).

The two nodes start once for the module (a sync fixture: pytest-trio has no module-scoped
async fixtures); each test makes its own users and keys, so the tests stay independent.
The nodes share Redis (``redis_url``, a prefix unique to this module, its keys deleted at
the end): the rpm test needs it, and it is how a fleet is deployed.

Two tests depend on work on other branches and skip, saying why, only while that work is
absent: the shared rate limits (``proxy.shared.limits``, branch ``redis``) and the change
feed that tells every node of a revocation (``proxy.shared.changes``, branch ``feed``)."""

from __future__ import annotations

import importlib.util
import itertools
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trio

from proxy.accounts.ledger import open_ledger
from proxy.accounts.service import Accounts
from proxy.billing import hold_amount, usage_cost
from proxy.catalog import default_catalog
from proxy.protocol.usage import Usage
from proxy.relay.sizing import COUNT_MARGIN_PERCENT, COUNT_MARGIN_TOKENS
from storage.records import KeyLimits
from tests.conftest import LOOPBACK_TLS, PG_SERVER, at_once
from tests.e2e.processes import cli, free_port

REDIS_URL = "redis://127.0.0.1:6379/0"


@dataclass(frozen=True)
class Fleet:
    db: str                   # the PostgreSQL URL both nodes use
    nodes: tuple[str, str]    # their base URLs
    redis_prefix: str


def _pg_admin():
    import psycopg

    return psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True, connect_timeout=3)


def _wait_health(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"cheaplm serve exited {process.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"cheaplm serve did not answer /health within 30 s: {log.read_text()[-2000:]}")


async def _delete_redis_keys(prefix: str) -> None:
    import coredis

    client = coredis.Redis.from_url(REDIS_URL)
    async with client:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(keys)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> Fleet:
    """A fresh database (created here, dropped at the end) and two nodes serving it."""
    try:
        admin = _pg_admin()
    except Exception as exc:  # no server here: the fleet tests skip, saying why
        pytest.skip(f"PostgreSQL at {PG_SERVER} is unreachable: {exc}")
    name = f"cheaplm_fleet_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin.execute(f"CREATE DATABASE {name}")
    db = f"{PG_SERVER}/{name}"
    prefix = f"test:{uuid.uuid4().hex}:"
    where = tmp_path_factory.mktemp("fleet")
    config = where / "fleet.toml"
    config.write_text(f"""
database_url = "{db}"
redis_url = "{REDIS_URL}"
redis_prefix = "{prefix}"
responses_secret = "{uuid.uuid4().hex}"
transfers_per_minute = 100000
key_cache_seconds = 30   # a revocation must reach the other node by the feed, not by the cache expiring
[accounts]
redeem_failures_per_user = 100000
redeem_failures_per_ip = 100000
""")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHEAPLM_")}
    processes: list[subprocess.Popen] = []
    urls = []
    try:
        for n in (1, 2):
            port = free_port()
            log = where / f"node{n}.log"
            with open(log, "w") as err:
                processes.append(subprocess.Popen(
                    [sys.executable, "-m", "proxy", "serve", "--config", str(config), "--port", str(port)],
                    cwd=where, env=env, stdout=subprocess.DEVNULL, stderr=err))
            urls.append(f"http://127.0.0.1:{port}")
            _wait_health(urls[-1], processes[-1], log)  # (one at a time: the first migrates the schema)
        yield Fleet(db, (urls[0], urls[1]), prefix)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        try:
            trio.run(_delete_redis_keys, prefix)
        except Exception as exc:  # (no Redis here: the nodes ran on their own limits; nothing to delete)
            print(f"the fleet's Redis keys ({prefix}*) were not deleted: {exc!r}")
        finally:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
            admin.close()


async def _user(fleet: Fleet, username: str, credit: int, **limits) -> str:
    """A user with ``credit`` micro-USD and a key (with ``limits``): the key."""
    async with open_ledger(fleet.db) as store:
        accounts = Accounts(store)
        await accounts.create_user(username)
        if credit:
            await store.credit(username, credit, "credit")
        key, _ = await accounts.create_key(default_catalog(), username, limits=KeyLimits(**limits))
    return key


def _name(base: str) -> str:
    return f"{base}_{uuid.uuid4().hex[:6]}"


def _client(url: str, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, headers={"x-api-key": key}, verify=LOOPBACK_TLS, timeout=60,
                             limits=httpx.Limits(max_connections=200))


def _clients(fleet: Fleet, key: str) -> list[httpx.AsyncClient]:
    return [_client(url, key) for url in fleet.nodes]


async def _spread(fleet: Fleet, key: str, n: int, send) -> list[tuple[int, httpx.Response]]:
    """``send(client)`` ``n`` times at once, alternating between the nodes: (node, response)."""
    clients = _clients(fleet, key)
    try:
        return await at_once(n, _alternate(clients, send))
    finally:
        for client in clients:
            await client.aclose()


def _alternate(clients, send):
    turn = itertools.count()

    async def one():
        node = next(turn) % len(clients)
        return node, await send(clients[node])
    return one


async def _ledger_check(fleet: Fleet) -> None:
    assert await cli("db", "check", "--db", fleet.db) == 0


# -- a: holds across nodes ----------------------------------------------------------------------

MODEL = default_catalog().resolve("claude-haiku-4.5")
MAX_TOKENS = 16
# The simulator reports N input tokens and N more written to the 1-hour cache, whose price is
# the dearest input lane the worst-case hold assumes: each request is charged close to its
# hold. So once 7 are charged, what is left cannot pay for even a counted hold (sized on
# count_tokens' N), and an 8th can never be served, whatever the interleaving. Tiny prompts
# would not do: a request refused the worst case is sized on its counted prompt, and a
# balance that covered 7 worst cases would then serve many more (sizing.py).
N = 133_000
HOLD_BODY = {"model": MODEL.id, "max_tokens": MAX_TOKENS, "messages": [
    {"role": "user", "content": f"hi [sim input_tokens={N} cache_write_1h={N} deltas=1]"}]}


async def test_exactly_seven_of_a_hundred_across_two_nodes(fleet):
    worst = hold_amount(MODEL, MODEL.max_input, MAX_TOKENS, HOLD_BODY)
    least_charge = usage_cost(Usage(input_tokens=N, cache_write_1h=N, output_tokens=1), MODEL.prices)
    assert 7 * (worst - least_charge) < counted_hold_for(N)  # (the premise above, checked)
    user = _name("seven")
    key = await _user(fleet, user, 7 * worst)

    answers = await _spread(fleet, key, 100, lambda http: http.post("/v1/messages", json=HOLD_BODY))

    ok = [r for _, r in answers if r.status_code == 200]
    refused = [r for _, r in answers if r.status_code != 200]
    assert len(ok) == 7, sorted(r.status_code for _, r in answers)
    assert {node for node, r in answers if r.status_code == 402} == {0, 1}  # both nodes refused some
    for r in refused:
        assert r.status_code == 402, r.text
        body = r.json()
        assert body["type"] == "error" and body["error"]["type"] == "billing_error", body
        assert body["error"]["message"].startswith("Insufficient balance"), body
        assert r.headers["content-type"].startswith("application/json")
    async with open_ledger(fleet.db) as store:
        account = await store.get_account(user)
        rows = await store.usage(user, 1000)
        entries = await store.ledger(user)
    served = [row for row in rows if row.status == 200]
    assert len(served) == 7
    assert account.held == 0 and account.balance >= 0
    assert account.balance == 7 * worst - sum(row.cost for row in rows)  # to the micro-dollar
    assert account.balance == sum(entry.delta for entry in entries)
    await _ledger_check(fleet)


def counted_hold_for(tokens: int) -> int:
    """sizing.counted_hold for this request's prompt counted at ``tokens``."""
    margin = tokens * COUNT_MARGIN_PERCENT // 100 + COUNT_MARGIN_TOKENS
    return hold_amount(MODEL, tokens + margin, MAX_TOKENS, HOLD_BODY)


# -- b: opposite transfer storms ----------------------------------------------------------------

async def test_opposite_transfer_storms_across_nodes(fleet):
    a, b = _name("ana"), _name("bob")
    start_a, start_b, each, storm = 50_000_000, 30_000_000, 10_000, 120  # $0.01 a transfer
    key_a, key_b = await _user(fleet, a, start_a), await _user(fleet, b, start_b)
    amount = each / 1_000_000
    clients = [_client(fleet.nodes[0], key_a), _client(fleet.nodes[1], key_b)]
    answers: dict[str, list[httpx.Response]] = {a: [], b: []}

    async def send(client, sender, to):
        answers[sender].append(await client.post("/api/user/transfer", json={"toUsername": to, "amount": amount}))

    try:
        with trio.fail_after(60):  # a deadlock would hang: fail instead
            async with trio.open_nursery() as nursery:
                for _ in range(storm):
                    nursery.start_soon(send, clients[0], a, b)  # A -> B through node 1
                    nursery.start_soon(send, clients[1], b, a)  # B -> A through node 2
    finally:
        for client in clients:
            await client.aclose()

    for sender in (a, b):
        statuses = sorted(r.status_code for r in answers[sender])
        assert statuses == [200] * storm, [r.text for r in answers[sender] if r.status_code != 200][:3]
        assert all(r.json()["success"] is True for r in answers[sender])
    sent_a = sent_b = storm * each
    async with open_ledger(fleet.db) as store:
        final_a, final_b = await store.get_account(a), await store.get_account(b)
        ledger_a, ledger_b = await store.ledger(a), await store.ledger(b)
    assert final_a.balance == start_a - sent_a + sent_b and final_b.balance == start_b - sent_b + sent_a
    assert final_a.balance + final_b.balance == start_a + start_b
    for entries, final in ((ledger_a, final_a), (ledger_b, final_b)):
        kinds = [e.kind for e in entries]
        assert kinds.count("transfer_out") == storm and kinds.count("transfer_in") == storm
        assert sum(e.delta for e in entries) == final.balance
    await _ledger_check(fleet)


# -- c: one code redeemed on both nodes at once -------------------------------------------------

async def test_one_code_redeemed_on_both_nodes_at_once_is_credited_once(fleet):
    users = [_name("redeemer") for _ in range(4)]
    keys = [await _user(fleet, user, 0) for user in users]
    async with open_ledger(fleet.db) as store:
        [code] = await Accounts(store).create_codes(1_000_000)  # $1 paid
    clients = [client for key in keys for client in _clients(fleet, key)]
    answers: list[httpx.Response] = []

    async def redeem(client):
        answers.append(await client.post("/api/topup/redeem", json={"code": code}))

    try:
        async with trio.open_nursery() as nursery:
            for _ in range(6):
                for client in clients:  # each user on each node, 48 attempts at once
                    nursery.start_soon(redeem, client)
    finally:
        for client in clients:
            await client.aclose()

    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200] + [400] * 47, statuses
    assert all("already been redeemed" in r.text for r in answers if r.status_code == 400)
    async with open_ledger(fleet.db) as store:
        accounts = [await store.get_account(user) for user in users]
        redeems = [e for user in users for e in await store.ledger(user) if e.kind == "redeem"]
        [record] = [c for c in await store.list_codes() if code.startswith(c.hint)]
    credited = [acc for acc in accounts if acc.balance]
    assert len(redeems) == 1 and len(credited) == 1 and credited[0].balance == redeems[0].delta == record.credit
    assert record.redeemed_by == credited[0].username
    await _ledger_check(fleet)


# -- d: a key's rpm across nodes (shared limits) --------------------------------------------------

SMALL = {"model": MODEL.id, "max_tokens": MAX_TOKENS, "messages": [{"role": "user", "content": "hi [sim deltas=1]"}]}


@pytest.mark.skipif(importlib.util.find_spec("proxy.shared.limits") is None,
                    reason="needs the Redis limits (proxy.shared.limits, branch redis): without them each node "
                           "keeps its own rpm window and a key gets 10 per node")
async def test_rpm_10_is_10_across_both_nodes(fleet):
    key = await _user(fleet, _name("rpm"), 10_000_000, rpm=10)
    answers = await _spread(fleet, key, 30, lambda http: http.post("/v1/messages", json=SMALL))
    statuses = sorted(r.status_code for _, r in answers)
    assert statuses == [200] * 10 + [429] * 20, statuses
    assert all(r.json()["error"]["type"] == "rate_limit_error" for _, r in answers if r.status_code == 429)


# -- e: a revocation reaches every node within a second -------------------------------------------

FEED_MODULE = "proxy.shared.changes"  # the change feed every gateway follows (branch feed)


@pytest.mark.skipif(importlib.util.find_spec(FEED_MODULE) is None,
                    reason="needs the change feed (branch feed): without it a node learns of a revocation "
                           "only when its key cache (key_cache_seconds, 30 here) expires")
async def test_a_key_revoked_from_the_cli_is_refused_by_both_nodes_within_a_second(fleet):
    key = await _user(fleet, _name("revoked"), 10_000_000)
    clients = _clients(fleet, key)
    try:
        for client in clients:  # each node has the key in its cache
            assert (await client.post("/v1/messages", json=SMALL)).status_code == 200
        assert await cli("key", "revoke", key[:14], "--db", fleet.db) == 0
        revoked = trio.current_time()
        refused_after: list[float] = []

        async def until_refused(client) -> None:  # (both nodes polled at once)
            with trio.move_on_after(5):
                while (await client.post("/v1/messages", json=SMALL)).status_code != 401:
                    await trio.sleep(0.02)
            refused_after.append(trio.current_time() - revoked)

        async with trio.open_nursery() as nursery:
            for client in clients:
                nursery.start_soon(until_refused, client)
    finally:
        for client in clients:
            await client.aclose()
    assert max(refused_after) < 1.0, refused_after
