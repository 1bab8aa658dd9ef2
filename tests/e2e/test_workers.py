"""``cheaplm serve --workers 2`` as an operator runs it: a supervisor and two worker
processes on one port, each a whole gateway, on one ledger.

The money across workers (the issue's exact-hold test): a balance that covers exactly
seven worst-case holds, a hundred requests at once on new connections spread over both
workers, exactly seven served. The answers are made to cost exactly their hold (the
simulator reports the model's whole input window), so a settlement frees nothing and
no eighth request can slip in however the requests interleave. Then the processes: a
worker killed with -9 is started again and its hold recovered; SIGTERM drains both
workers and the supervisor exits 0; a supervisor killed with -9 takes its workers along.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio

from proxy.accounts.ledger import open_ledger
from proxy.accounts.service import Accounts
from proxy.billing import hold_amount
from proxy.catalog import default_catalog
from tests.conftest import LOOPBACK_TLS
from tests.e2e.processes import cli, free_port, serve_process, wait_http
from tests.storage.backends import PostgresBackend

MODEL = "claude-haiku-4.5"
MAX_TOKENS = 16  # the simulator's answer (16 deltas of 4 tokens) is cut at exactly this
SERVING = re.compile(r"worker (\d+) serving \(pid (\d+)\)")


def exact_body() -> dict:
    """A request that costs exactly its worst-case hold: the model's whole input window
    (reported by the simulator) and max_tokens of output."""
    window = default_catalog().resolve(MODEL).max_input
    return {"model": MODEL, "max_tokens": MAX_TOKENS,
            "messages": [{"role": "user", "content": f"hello [sim input_tokens={window}]"}]}


def worst_case_hold(body: dict) -> int:
    model = default_catalog().resolve(MODEL)
    return hold_amount(model, model.max_input, MAX_TOKENS, body)


class Workers:
    """A ``cheaplm serve --workers N`` process and its log."""

    def __init__(self, process: trio.Process, port: int, log: Path) -> None:
        self.process, self.port, self.log = process, port, log

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def text(self) -> str:
        return self.log.read_text()

    def serving(self) -> dict[int, int]:
        """Worker index -> the pid of its latest process, from the supervisor's log."""
        return {int(index): int(pid) for index, pid in SERVING.findall(self.text())}

    async def until_serving(self, count: int, without: set[int] = frozenset()) -> dict[int, int]:
        with trio.fail_after(60):
            while len(pids := {i: p for i, p in self.serving().items() if p not in without}) < count:
                if self.process.returncode is not None:
                    raise AssertionError(f"the supervisor exited ({self.process.returncode}):\n{self.text()}")
                await trio.sleep(0.05)
        return pids

    async def exited(self, seconds: float = 30) -> int:
        with trio.fail_after(seconds):
            return await self.process.wait()


async def start(nursery, tmp_path: Path, db: str, *flags: str, workers: int = 2) -> Workers:
    port, log = free_port(), tmp_path / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHEAPLM_")}
    argv = [sys.executable, "-m", "proxy", "serve", "--workers", str(workers), "--port", str(port), "--db", db, *flags]
    with open(log, "w") as stderr:
        process = await nursery.start(partial(trio.run_process, argv, env=env, check=False, stderr=stderr,
                                              stdout=subprocess.DEVNULL))
    running = Workers(process, port, log)
    await running.until_serving(workers)
    await wait_http(running.url + "/health")
    return running


async def account(db: str, name: str, balance: int) -> str:
    """A user with exactly ``balance`` micro-USD, and its key."""
    assert await cli("user", "create", name, "--db", db) == 0
    async with open_ledger(db) as store:
        await store.credit(name, balance, "credit")
        key, _ = await Accounts(store).create_key(default_catalog(), name)
    return key


def answered_by(log: str) -> dict[int, list[int]]:
    """Worker index -> the statuses of the /v1/messages requests it logged."""
    seen: dict[int, list[int]] = {}
    for index, status in re.findall(r"\[worker (\d+) pid \d+\] cheaplm\.requests: .* endpoint=messages .* "
                                    r"status=(\d+)", log):
        seen.setdefault(int(index), []).append(int(status))
    return seen


async def hundred_at_once(url: str, key: str, body: dict) -> list[int]:
    statuses: list[int] = []
    # no keep-alive: every request on a new connection, which either worker may accept
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, headers={"x-api-key": key}, limits=limits, timeout=60,
                                 verify=LOOPBACK_TLS) as http:
        async def one() -> None:
            statuses.append((await http.post("/v1/messages", json=body)).status_code)

        async with trio.open_nursery() as nursery:
            for _ in range(100):
                nursery.start_soon(one)
    return statuses


async def exactly_seven(nursery, tmp_path: Path, db: str) -> None:
    body = exact_body()
    hold = worst_case_hold(body)
    key = await account(db, "seven", 7 * hold)
    running = await start(nursery, tmp_path, db)
    statuses = await hundred_at_once(running.url, key, body)
    assert sorted(statuses) == [200] * 7 + [402] * 93, sorted(statuses)
    running.process.send_signal(signal.SIGTERM)
    assert await running.exited() == 0
    async with open_ledger(db) as store:
        final = await store.get_account("seven")
        rows = await store.usage("seven", 1000)
    assert final.balance == 0 and final.held == 0 and len(rows) == 7  # charged exactly the seven holds
    assert all(row.cost == hold and not row.partial for row in rows)
    assert await cli("db", "check", "--db", db) == 0
    by_worker = answered_by(running.text())
    assert sorted(by_worker) == [0, 1], by_worker  # both workers answered
    assert sum(len(s) for s in by_worker.values()) == 100


async def test_exactly_seven_of_a_hundred_across_two_workers_on_sqlite(tmp_path, nursery):
    await exactly_seven(nursery, tmp_path, str(tmp_path / "ledger.db"))


async def test_exactly_seven_of_a_hundred_across_two_workers_on_postgresql(tmp_path, nursery, pg_database):
    if not isinstance(pg_database, str):
        pytest.skip(f"PostgreSQL is unreachable: {pg_database}")
    db = PostgresBackend("postgresql", pg_database).url
    await exactly_seven(nursery, tmp_path, db)


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie nobody reaped yet does not)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def stream_body(directive: str) -> dict:
    return {"model": MODEL, "max_tokens": 4000, "stream": True,
            "messages": [{"role": "user", "content": f"go on {directive}"}]}


async def begun(http: httpx.AsyncClient, body: dict):
    """A stream that has begun: (its response, its chunks so far, the reader)."""
    response = await http.send(http.build_request("POST", "/v1/messages", json=body), stream=True)
    assert response.status_code == 200
    reader = response.aiter_text()
    return response, [await reader.__anext__()], reader


def ledger(db: str, query: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(query).fetchall()


async def test_a_killed_worker_is_replaced_then_sigterm_drains_both(tmp_path, nursery):
    """kill -9 of the worker serving a stream: the stream is cut, the worker started again,
    the stream's hold recovered (charged from its checkpoints), requests still served.
    Then SIGTERM to the supervisor: a short stream finishes, a long one ends with its
    error event at the grace, and the supervisor exits 0 leaving no worker behind."""
    db = str(tmp_path / "ledger.db")
    config = tmp_path / "cheaplm.toml"
    config.write_text("shutdown_grace = 2.0\nprogress_interval = 0.2\n")
    key = await account(db, "k", 50_000_000)
    running = await start(nursery, tmp_path, db, "--config", str(config))
    first = running.serving()
    long = stream_body("[sim deltas=400 gap_ms=25]")  # ten seconds
    async with httpx.AsyncClient(base_url=running.url, headers={"x-api-key": key}, timeout=30) as http:
        response, _, reader = await begun(http, long)
        until = trio.current_time() + 1
        while trio.current_time() < until:  # a second of deltas: a few progress checkpoints
            await reader.__anext__()
        with trio.fail_after(20):  # its progress checkpointed
            while ledger(db, "SELECT count(*) FROM holds WHERE state = 'open' AND progress IS NOT NULL") != [(1,)]:
                await trio.sleep(0.05)
        [(pid,)] = ledger(db, "SELECT i.pid FROM holds h JOIN instances i ON h.owner = i.id WHERE h.state = 'open'")
        assert pid in first.values()
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(httpx.HTTPError):
            async for _ in reader:
                pass
        await response.aclose()
    again = await running.until_serving(2, without={pid})
    assert set(again.values()) - set(first.values()) and pid not in again.values()
    assert re.search(rf"worker \d \(pid {pid}\) was killed by SIGKILL: starting another in", running.text())
    with trio.fail_after(20):  # the new worker recovered the dead one's hold when it started
        while ledger(db, "SELECT count(*) FROM holds WHERE state = 'open'") != [(0,)]:
            await trio.sleep(0.1)
    [(partial,)] = ledger(db, "SELECT partial FROM usage")
    assert partial == 1  # charged from its progress checkpoints
    assert re.search(r"\[worker \d pid \d+\] cheaplm.storage: recovered holds of stopped instances: 0 released, 1 "
                     r"charged", running.text())
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=running.url, headers={"x-api-key": key}, timeout=30,
                                 limits=limits) as http:
        for _ in range(6):
            assert (await http.post("/v1/messages", json=exact_body())).status_code == 200
        short, short_text, short_reader = await begun(http, stream_body("[sim deltas=30 gap_ms=20]"))
        cut, cut_text, cut_reader = await begun(http, long)
        running.process.send_signal(signal.SIGTERM)
        async for chunk in short_reader:
            short_text.append(chunk)
        async for chunk in cut_reader:  # to a complete chunked end, or it raises
            cut_text.append(chunk)
        await short.aclose()
        await cut.aclose()
    assert "event: message_stop" in "".join(short_text) and "".join(short_text).count("event: content_block_delta") == 30
    last = "".join(cut_text).strip().split("\n\n")[-1]
    assert last.startswith("event: error") and "shutting down" in last, last
    assert await running.exited() == 0
    assert not [p for p in again.values() if alive(p)]
    assert ledger(db, "SELECT count(*) FROM instances") == [(0,)]
    assert ledger(db, "SELECT count(*) FROM holds WHERE state = 'open'") == [(0,)]
    assert await cli("db", "check", "--db", db) == 0


async def test_workers_do_not_outlive_a_supervisor_killed_with_minus_9(tmp_path, nursery):
    db = str(tmp_path / "ledger.db")
    running = await start(nursery, tmp_path, db)
    pids = running.serving().values()
    running.process.kill()
    await running.exited()
    with trio.fail_after(30):
        while [p for p in pids if alive(p)]:
            await trio.sleep(0.1)
    assert "the supervisor is gone: stopping as on SIGTERM" in running.text()
    assert ledger(db, "SELECT count(*) FROM instances") == [(0,)]  # each stopped cleanly and left the ledger


async def test_one_worker_is_one_process_as_before(tmp_path, nursery):
    process, port, _ = await serve_process(nursery, str(tmp_path / "one.db"), "one", "--workers", "1")
    health = (await wait_http(f"http://127.0.0.1:{port}/health")).json()
    assert health["pid"] == process.pid  # no supervisor: the process started answers itself
