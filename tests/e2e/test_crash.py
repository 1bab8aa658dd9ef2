"""Crash tests: a real `cheaplm serve` process is killed with SIGKILL under streaming and
non-streaming load, and the ledger must still be right.

Everything runs as it does in production: `cheaplm simulator` and `cheaplm serve` are
subprocesses, the clients speak HTTP to them (httpx: Anthropic streams and whole answers,
OpenAI streams), and the checks read the ledger directly (SQLite or PostgreSQL) and run `cheaplm db
check`. The gateways run with a short ``progress_interval`` (0.5 s) and ``lease_seconds``
(3 s) from a config file.

What a kill -9 may and may not do to the money (what the assertions below rely on):

* A response the client saw complete (``event: message_stop``, an OpenAI client's
  ``data: [DONE]``, a 200 body) was charged before it was sent: exactly one usage row,
  non-partial, and exactly one ``charge`` ledger entry for its request id, of that row's
  cost, which is what its usage comes to.
* A stream cut by the kill is charged from its last progress checkpoint (partial,
  error_type ``instance_lost``) when its hold is recovered, or released when nothing
  was checkpointed. Checkpoints are written every ``progress_interval``, so whatever the
  client had received ``progress_interval`` + slack before the kill (slack: another
  ``progress_interval``, for a loaded machine) is covered by the charge. What it
  received after that may be under-charged; what the gateway wrote but the client
  never read may be charged (never more than the whole answer). Neither is asserted
  beyond these bounds; the first test prints how far the charges lagged.
* A stream (or a whole answer) settled just before the kill may be charged in full
  although its last event (its body) never reached the client: the charge is made
  durable before the answer goes out. Such charges are allowed, and counted.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

import httpx
import pytest
import trio

from proxy.accounts.ledger import open_ledger
from proxy.accounts.service import Accounts
from proxy.billing import usage_cost
from proxy.config import Config
from proxy.money import parse_usd
from proxy.protocol.stream_filter import delta_tokens
from proxy.protocol.usage import Usage
from tests.conftest import LOOPBACK_TLS, Row, query_ledger

PROGRESS_INTERVAL = 0.5
LEASE_SECONDS = 3.0
# A stream whose client had content CUTOFF seconds before the kill must be charged at
# least that content: one progress interval for the checkpoint, one of slack.
CUTOFF = 2 * PROGRESS_INTERVAL
MODEL = "claude-haiku-4.5"
PRICES = Config().catalog().resolve(MODEL).prices
DELTA_BYTES = 16  # the simulator's default: 4 tokens a delta


# -- processes ---------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Procs:
    """The subprocesses of one test: logs in tmp_path, every one killed at the end."""

    def __init__(self, directory) -> None:
        self.dir = directory
        self.all: list[subprocess.Popen] = []

    def spawn(self, name: str, *argv) -> subprocess.Popen:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHEAPLM_")}
        log = open(self.dir / f"{name}.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "proxy", *map(str, argv)], cwd=self.dir, env=env,
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        proc.name = name  # type: ignore[attr-defined]
        self.all.append(proc)
        return proc

    def log(self, proc: subprocess.Popen) -> str:
        return (self.dir / f"{proc.name}.log").read_text(errors="replace")  # type: ignore[attr-defined]

    def kill_all(self) -> None:
        for proc in self.all:
            if proc.poll() is None:
                proc.kill()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


@pytest.fixture
def procs(tmp_path):
    running = Procs(tmp_path)
    try:
        yield running
    finally:
        running.kill_all()


def write_config(tmp_path) -> str:
    path = tmp_path / "crash.toml"
    path.write_text(f"progress_interval = {PROGRESS_INTERVAL}\nlease_seconds = {LEASE_SECONDS}\n"
                    "[upstream]\nfirst_byte_timeout = 20\nidle_timeout = 20\n")
    return str(path)


def spawn_serve(procs: Procs, name: str, port: int, db: str, config: str, sim_url: str) -> subprocess.Popen:
    return procs.spawn(name, "serve", "--config", config, "--port", port, "--db", db, "--upstream-url", sim_url)


async def wait_http(procs: Procs, proc: subprocess.Popen, url: str, timeout: float = 30) -> None:
    with trio.fail_after(timeout):
        while True:
            if proc.poll() is not None:
                pytest.fail(f"{proc.name} exited ({proc.returncode}) before answering {url}:\n{procs.log(proc)}")
            try:
                async with httpx.AsyncClient(timeout=5, verify=LOOPBACK_TLS) as http:
                    if (await http.get(url)).status_code == 200:
                        return
            except httpx.TransportError:
                pass
            await trio.sleep(0.05)


async def wait_exit(proc: subprocess.Popen, timeout: float = 30) -> int:
    return await trio.to_thread.run_sync(lambda: proc.wait(timeout=timeout))


async def kill_9(proc: subprocess.Popen) -> float:
    """SIGKILL, then reap it (a zombie's pid still answers kill(pid, 0): the recovery's
    same-host check would take it for alive). Returns the kill time (trio clock)."""
    killed_at = trio.current_time()
    os.kill(proc.pid, signal.SIGKILL)
    assert await wait_exit(proc, 10) == -signal.SIGKILL
    return killed_at


async def fund(db: str, *usernames: str) -> dict[str, str]:
    """A funded user and a key for each, on the ledger, before any serve runs."""
    keys = {}
    async with open_ledger(db, create=True) as store:
        accounts = Accounts(store, multiplier=Config().value_multiplier)
        for username in usernames:
            await accounts.create_user(username)
            await accounts.topup(username, credit_usd="1000")
            keys[username], _ = await accounts.create_key(Config().catalog(), username)
    return keys


async def db_check(procs: Procs, db: str) -> tuple[int, str]:
    with trio.fail_after(60):
        result = await trio.run_process([sys.executable, "-m", "proxy", "db", "check", "--db", db],
                                        capture_stdout=True, capture_stderr=True, check=False, cwd=procs.dir)
    return result.returncode, (result.stdout + result.stderr).decode()


# -- clients -----------------------------------------------------------------------------

@dataclass
class Rec:
    """One request as its client saw it."""

    stream: bool
    via: str                 # which gateway served it
    planned_tokens: int      # output tokens the simulator will send in all
    started: float
    request_id: str | None = None
    status: int | None = None
    completed: bool = False  # message_stop received / a whole 200 body read
    deltas: list[tuple[float, int]] = field(default_factory=list)  # (received at, tokens)
    usage: Usage = Usage()
    cost_header: int | None = None
    error: str | None = None
    api: str = "anthropic"   # or "openai" (/v1/chat/completions, streams only)

    def tokens_by(self, moment: float) -> int:
        return sum(n for at, n in self.deltas if at <= moment)

    @property
    def tokens(self) -> int:
        return sum(n for _, n in self.deltas)


def body(stream: bool, deltas: int, gap_ms: float, ttft_ms: float = 0, api: str = "anthropic") -> dict:
    payload = {"model": MODEL, "max_tokens": 1024, "stream": stream, "messages": [
        {"role": "user", "content": f"[sim deltas={deltas} gap_ms={gap_ms} ttft_ms={ttft_ms}] crash test"}]}
    if api == "openai":
        payload["stream_options"] = {"include_usage": True}
    return payload


async def request_openai(http: httpx.AsyncClient, rec: Rec, payload: dict) -> None:
    """An OpenAI client's stream: complete at ``data: [DONE]`` (sent after the charge)."""
    async with http.stream("POST", "/v1/chat/completions", json=payload) as response:
        rec.status, rec.request_id = response.status_code, response.headers.get("request-id")
        if response.status_code != 200:
            await response.aread()
            return
        async for line in response.aiter_lines():
            if line == "data: [DONE]":
                rec.completed = True
            elif line.startswith("data: "):
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    rec.error = line[6:]
                for choice in chunk.get("choices") or ():
                    text = (choice.get("delta") or {}).get("content")
                    if text:  # tokens as the gateway estimates them: 4 bytes a token
                        rec.deltas.append((trio.current_time(), max(1, -(-len(text.encode()) // 4))))
                if chunk.get("usage"):
                    rec.usage = Usage(input_tokens=chunk["usage"]["prompt_tokens"],
                                      output_tokens=chunk["usage"]["completion_tokens"])


async def request(http: httpx.AsyncClient, rec: Rec, payload: dict) -> None:
    try:
        if rec.api == "openai":
            await request_openai(http, rec, payload)
            return
        if not rec.stream:
            response = await http.post("/v1/messages", json=payload)
            rec.status, rec.request_id = response.status_code, response.headers.get("request-id")
            if response.status_code == 200:
                message = response.json()
                rec.usage = Usage().merged(message["usage"])
                rec.cost_header = parse_usd(response.headers["x-cheaplm-cost-usd"])
                rec.completed = message.get("type") == "message"
            return
        async with http.stream("POST", "/v1/messages", json=payload) as response:
            rec.status, rec.request_id = response.status_code, response.headers.get("request-id")
            if response.status_code != 200:
                await response.aread()
                return
            event = None
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                    continue
                if not line.startswith("data: "):
                    continue
                if event == "content_block_delta":
                    # counted as the gateway counts what it relayed
                    raw = b"event: content_block_delta\ndata: " + line[6:].encode() + b"\n\n"
                    rec.deltas.append((trio.current_time(), delta_tokens(raw)))
                elif event == "message_start":
                    rec.usage = rec.usage.merged(json.loads(line[6:])["message"]["usage"])
                elif event == "message_delta":
                    rec.usage = rec.usage.merged(json.loads(line[6:])["usage"])
                elif event == "message_stop":
                    rec.completed = True
                elif event == "error":
                    rec.error = line[6:]
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        rec.error = rec.error or repr(exc)


def client(url: str, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, headers={"x-api-key": key}, timeout=httpx.Timeout(20, connect=5),
                             verify=LOOPBACK_TLS)


async def one(recs: list[Rec], url: str, via: str, key: str, stream: bool, deltas: int, gap_ms: float,
              ttft_ms: float = 0) -> Rec:
    rec = Rec(stream, via, deltas * DELTA_BYTES // 4, trio.current_time())
    recs.append(rec)
    async with client(url, key) as http:
        await request(http, rec, body(stream, deltas, gap_ms, ttft_ms))
    return rec


async def loop(recs: list[Rec], url: str, via: str, key: str, stream: bool, stop: trio.Event, rng: random.Random,
               first: tuple[int, float] | None = None, api: str = "anthropic") -> None:
    """Requests one after another on one keep-alive connection until ``stop``."""
    async with client(url, key) as http:
        while not stop.is_set():
            if first is not None:
                deltas, gap = first
                first = None
            elif stream:
                deltas, gap = rng.choice((4, 8, 16, 30)), 30
            else:
                deltas, gap = rng.choice((4, 8, 16)), 0
            rec = Rec(stream, via, deltas * DELTA_BYTES // 4, trio.current_time(), api=api)
            recs.append(rec)
            await request(http, rec, body(stream, deltas, gap, ttft_ms=0 if stream else 60, api=api))
            if rec.error and not rec.completed:
                await trio.sleep(0.05)  # the gateway is gone: do not spin


async def wait_for(predicate, timeout: float, what: str) -> None:
    with trio.move_on_after(timeout) as waited:
        while not predicate():
            await trio.sleep(0.02)
    if waited.cancelled_caught:
        pytest.fail(f"timed out after {timeout} s waiting for {what}")


# -- the ledger, read underneath the store ---------------------------------------------------

def query(db: str, sql: str, args: tuple = ()) -> list[Row]:
    return query_ledger(db, sql, args)


def execute(db: str, sql: str, args: tuple = ()) -> None:
    query_ledger(db, sql, args)


@dataclass
class Ledger:
    usage: dict[str, Row]
    charges: dict[str, list[int]]   # request id -> the deltas of its charge entries
    holds: dict[str, list[Row]]

    @classmethod
    def read(cls, db: str) -> "Ledger":
        usage = {r["request_id"]: r for r in query(db, "SELECT * FROM usage")}
        charges: dict[str, list[int]] = {}
        for r in query(db, "SELECT ref, delta FROM ledger WHERE kind = 'charge' ORDER BY id"):
            charges.setdefault(r["ref"], []).append(r["delta"])
        holds: dict[str, list[Row]] = {}
        for r in query(db, "SELECT * FROM holds ORDER BY id"):
            holds.setdefault(r["request_id"], []).append(r)
        return cls(usage, charges, holds)


def assert_ledger_adds_up(db: str) -> None:
    """No hold open, nothing held, nothing charged twice, every balance the sum of its
    ledger entries, every charge matching its usage row, one hold per request."""
    assert query(db, "SELECT count(*) FROM holds WHERE state = 'open'")[0][0] == 0
    for account in query(db, "SELECT a.username, a.balance, a.held, COALESCE(SUM(l.delta), 0) AS total "
                             "FROM accounts a LEFT JOIN ledger l ON l.account_id = a.id GROUP BY a.id"):
        assert account["held"] == 0, dict(account)
        assert account["total"] == account["balance"], dict(account)
    ledger = Ledger.read(db)
    twice = {ref: deltas for ref, deltas in ledger.charges.items() if len(deltas) != 1}
    assert not twice, f"charged more than once: {twice}"
    for ref, (delta,) in ledger.charges.items():
        assert ref in ledger.usage and delta == -ledger.usage[ref]["cost"], ref
    for request_id, holds in ledger.holds.items():
        assert len(holds) == 1, request_id
        state = holds[0]["state"]
        row = ledger.usage.get(request_id)
        if state == "settled_on_recovery":
            assert row is not None and row["partial"] == 1 and row["error_type"] == "instance_lost", request_id
        elif state == "released_on_recovery":
            assert row is None and request_id not in ledger.charges, request_id
        else:
            assert state in ("settled", "released"), (request_id, state)


def assert_charged_once_in_full(ledger: Ledger, rec: Rec) -> None:
    """A response that reached its client complete: one non-partial usage row, one charge of
    its cost, and the cost is what its usage comes to (and, whole, what the header said)."""
    rid = rec.request_id
    assert rid is not None
    row = ledger.usage.get(rid)
    assert row is not None, f"{rid}: delivered complete but has no usage row"
    assert (row["partial"], row["status"], row["error_type"]) == (0, 200, None), dict(row)
    assert ledger.charges.get(rid) == [-row["cost"]], (rid, ledger.charges.get(rid), row["cost"])
    assert [h["state"] for h in ledger.holds[rid]] == ["settled"]
    assert row["output_tokens"] == rec.usage.output_tokens and row["input_tokens"] == rec.usage.input_tokens
    assert row["cost"] == usage_cost(rec.usage, PRICES) > 0
    if rec.stream:
        assert rec.tokens == rec.planned_tokens == row["output_tokens"], "the test's token count is off"
    else:
        assert rec.cost_header == row["cost"]


def assert_cut_stream_charged(ledger: Ledger, rec: Rec, killed_at: float) -> str:
    """A stream the kill cut (no message_stop seen). Returns how it was closed."""
    rid = rec.request_id
    assert rid is not None
    row = ledger.usage.get(rid)
    covered = rec.tokens_by(killed_at - CUTOFF)
    if covered:
        # Content the client had for longer than two progress intervals before the kill.
        assert row is not None, (f"{rid}: {covered} tokens delivered more than {CUTOFF} s before the kill, "
                                 "but nothing charged")
    if row is None:
        assert [h["state"] for h in ledger.holds[rid]] in (["released_on_recovery"], []), rid
        assert rid not in ledger.charges
        return "released"
    assert ledger.charges.get(rid) == [-row["cost"]], rid
    if rec.api == "anthropic":  # (an OpenAI client learns the usage only at the end)
        assert row["input_tokens"] == rec.usage.input_tokens
    assert covered <= row["output_tokens"] <= rec.planned_tokens, (rid, covered, dict(row))
    if row["partial"]:
        assert (row["status"], row["error_type"]) == (500, "instance_lost"), dict(row)
        assert [h["state"] for h in ledger.holds[rid]] == ["settled_on_recovery"]
        return "recovered"
    # settled in full just before the kill; message_stop never reached the client
    assert (row["status"], row["output_tokens"]) == (200, rec.planned_tokens), dict(row)
    assert [h["state"] for h in ledger.holds[rid]] == ["settled"]
    return "settled, end not delivered"


# -- the tests ------------------------------------------------------------------------------

@pytest.mark.both_stores  # (the next test, ~25 s of leases lapsing, stays on SQLite: the suite's time)
async def test_kill_9_under_load_then_restart(tmp_path, ledger, procs):
    sim_port, port = free_port(), free_port()
    sim_url, url = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{port}"
    db, config = ledger, write_config(tmp_path)
    sim = procs.spawn("simulator", "simulator", "--port", sim_port)
    keys = await fund(db, "streamer", "caller")
    gateway = spawn_serve(procs, "serve-1", port, db, config, sim_url)
    await wait_http(procs, sim, sim_url + "/v1/models")
    await wait_http(procs, gateway, url + "/health")

    recs: list[Rec] = []
    stop = trio.Event()
    rng = random.Random(1)
    async with trio.open_nursery() as load:
        # Streams from Anthropic and OpenAI clients, five of which start with a stream of 3.2 s
        # that the kill will cut; whole answers on another account.
        for i in range(8):
            load.start_soon(loop, recs, url, "serve-1", keys["streamer"], True, stop, rng,
                            (80, 40) if i < 4 else None)
        for i in range(2):
            load.start_soon(loop, recs, url, "serve-1", keys["streamer"], True, stop, rng,
                            (80, 40) if i < 1 else None, "openai")
        for _ in range(4):
            load.start_soon(loop, recs, url, "serve-1", keys["caller"], False, stop, rng)

        def long():
            return [r for r in recs if r.stream and r.planned_tokens == 80 * DELTA_BYTES // 4]
        await wait_for(lambda: len(long()) == 5 and all(r.deltas for r in long()), 15,
                       "the long streams' first content")
        await trio.sleep(1.5)
        stop.set()
        killed_at = await kill_9(gateway)
        load.cancel_scope.deadline = trio.current_time() + 15  # every client ends: its server is gone

    assert not load.cancel_scope.cancelled_caught, "clients still waiting 15 s after the kill"
    # Restart on the same ledger and port: at start-up, before it serves, it recovers the
    # holds of the killed instance (same host, dead pid).
    restarted = spawn_serve(procs, "serve-2", port, db, config, sim_url)
    await wait_http(procs, restarted, url + "/health")
    assert "recovered holds of stopped instances" in procs.log(restarted)

    ledger = Ledger.read(db)
    assert_ledger_adds_up(db)
    completed = [r for r in recs if r.completed]
    for rec in completed:
        assert_charged_once_in_full(ledger, rec)
    assert all(r.status in (None, 200) for r in recs), [(r.status, r.error) for r in recs if r.status != 200]
    cut = [r for r in recs if r.stream and not r.completed and r.status == 200]
    outcomes = [assert_cut_stream_charged(ledger, r, killed_at) for r in cut]
    # The load did what the test needs: complete answers of both kinds, and streams cut
    # after they had delivered for longer than the window (charged from checkpoints).
    must_charge = [r for r in cut if r.tokens_by(killed_at - CUTOFF)]
    assert sum(1 for r in completed if r.stream) >= 5 and sum(1 for r in completed if not r.stream) >= 5
    assert len(must_charge) >= 5 and "recovered" in outcomes
    assert any(r.api == "openai" for r in completed) and any(r.api == "openai" for r in must_charge)
    # Charges whose client has no request id: whole answers settled just before the kill
    # stopped their body (or, on a starved client, a stream it had not read the head of).
    # The ledger's own checks (above, and db check) cover them.
    seen = {r.request_id for r in recs}
    unseen = [u for rid, u in ledger.usage.items() if rid not in seen]
    assert all((u["stream"], u["partial"], u["status"]) == (0, 0, 200) or u["error_type"] == "instance_lost"
               for u in unseen), [dict(u) for u in unseen]
    charged = [(r, ledger.usage[r.request_id]["output_tokens"]) for r in cut if r.request_id in ledger.usage]
    under = [r.tokens - tokens for r, tokens in charged]
    # how long before the kill the charge stopped covering what the client had received
    lags = [killed_at - next((at for at, _ in r.deltas if r.tokens_by(at) > tokens), killed_at)
            for r, tokens in charged]
    print(f"\n{len(recs)} requests: {len(completed)} complete "
          f"({sum(1 for r in completed if r.stream)} streams), {len(cut)} streams cut by the kill: "
          f"{ {o: outcomes.count(o) for o in set(outcomes)} }; {len(must_charge)} had content for "
          f">{CUTOFF} s; the charges of cut streams are {under} tokens short of what their clients "
          f"received, i.e. cover it up to {max(lags, default=0):.2f} s before the kill at worst; "
          f"{len(unseen)} whole answers charged whose body the kill stopped")

    # The restarted instance serves, and charges, as usual.
    after: list[Rec] = []
    await one(after, url, "serve-2", keys["streamer"], True, 8, 0)
    await one(after, url, "serve-2", keys["caller"], False, 8, 0)
    ledger = Ledger.read(db)
    for rec in after:
        assert rec.completed, (rec.status, rec.error)
        assert_charged_once_in_full(ledger, rec)
    assert_ledger_adds_up(db)

    code, output = await db_check(procs, db)
    assert code == 0, output
    # A graceful stop (Ctrl-C) unregisters the instance: no instance row is left.
    restarted.send_signal(signal.SIGINT)
    assert await wait_exit(restarted, 15) == 130, procs.log(restarted)
    assert query(db, "SELECT count(*) FROM instances")[0][0] == 0


async def test_second_serve_on_a_live_ledger(tmp_path, ledger, procs):
    """A second `serve` on the same ledger never touches a live instance's holds, whether it
    fails to bind (same port) or serves beside it (another port); when one of two running
    instances is killed, the other recovers its holds once its lease has lapsed, while it
    goes on serving."""
    sim_port, port_a, port_c = free_port(), free_port(), free_port()
    sim_url, url_a, url_c = (f"http://127.0.0.1:{p}" for p in (sim_port, port_a, port_c))
    db, config = ledger, write_config(tmp_path)
    sim = procs.spawn("simulator", "simulator", "--port", sim_port)
    keys = await fund(db, "shared")
    key = keys["shared"]
    a = spawn_serve(procs, "serve-a", port_a, db, config, sim_url)
    await wait_http(procs, sim, sim_url + "/v1/models")
    await wait_http(procs, a, url_a + "/health")
    a_id = query(db, "SELECT id FROM instances WHERE pid = ?", (a.pid,))[0]["id"]

    # 1. Streams on A, a new one of 3 s every 0.5 s, while B starts on A's port (and fails to
    #    bind) and C on another port: at any moment of their start-up A has holds open.
    rolling: list[Rec] = []
    group2: list[Rec] = []
    until = trio.Event()

    async def roll() -> None:
        async with trio.open_nursery() as streams:
            while not until.is_set():
                streams.start_soon(one, rolling, url_a, "a", key, True, 30, 100)
                await trio.sleep(0.5)

    async with trio.open_nursery() as group1:
        group1.start_soon(roll)
        await wait_for(lambda: any(r.deltas for r in rolling), 15, "the streams on A")
        spawned_at = time.time()
        b = spawn_serve(procs, "serve-b", port_a, db, config, sim_url)
        c = spawn_serve(procs, "serve-c", port_c, db, config, sim_url)
        assert await wait_exit(b, 30) == 1
        b_lived = time.time() - spawned_at
        assert f"cannot listen on 127.0.0.1:{port_a}" in procs.log(b)
        in_flight = [r for r in rolling if r.deltas and not r.completed]
        assert in_flight
        states = {r["request_id"]: (r["state"], r["owner"]) for r in query(db, "SELECT * FROM holds")}
        for rec in in_flight:  # (or settled by A just now, at its end)
            assert states[rec.request_id] in (("open", a_id), ("settled", a_id)), \
                "the failed serve touched a live instance's hold"
        assert [r["id"] for r in query(db, "SELECT id FROM instances WHERE pid = ?", (a.pid,))] == [a_id]
        assert not query(db, "SELECT id FROM instances WHERE pid = ?", (b.pid,))
        await wait_http(procs, c, url_c + "/health")
        ready_at = time.time()
        until.set()
        c_id = query(db, "SELECT id FROM instances WHERE pid = ?", (c.pid,))[0]["id"]

        # 2. Requests through both instances at once.
        async with trio.open_nursery() as both:
            for via, url in (("a", url_a), ("c", url_c)):
                for _ in range(3):
                    both.start_soon(one, group2, url, via, key, True, 10, 20)
                    both.start_soon(one, group2, url, via, key, False, 10, 0)
        group1.cancel_scope.deadline = trio.current_time() + 20  # the last 3 s streams
    assert not group1.cancel_scope.cancelled_caught
    ledger = Ledger.read(db)
    # At every moment from B's and C's spawn to C's readiness A had a hold open (placed,
    # not yet settled, as the ledger's own timestamps say): what their start-up
    # recovery had to spare.
    covered_to = spawned_at
    for start, end in sorted((ledger.holds[r.request_id][0]["created_at"],
                              ledger.usage[r.request_id]["created_at"]) for r in rolling if r.completed):
        if start <= covered_to:
            covered_to = max(covered_to, end)
    assert covered_to >= ready_at, "A had no hold open at some moment of B's and C's start-up"
    recs = rolling + group2
    assert len(group2) == 12 and all(r.completed for r in recs), [(r.via, r.status, r.error) for r in recs]
    for rec in recs:
        assert_charged_once_in_full(ledger, rec)
        assert ledger.holds[rec.request_id][0]["owner"] == {"a": a_id, "c": c_id}[rec.via]
    assert_ledger_adds_up(db)

    # 3. Streams cut on A by a kill -9 while C serves on. A's row says it runs on another
    #    host, so C cannot see that its pid is dead: only the lapse of its lease tells.
    execute(db, "UPDATE instances SET host = 'elsewhere.' || host WHERE id = ?", (a_id,))
    cut: list[Rec] = []
    on_c: list[Rec] = []
    stop = trio.Event()
    rng = random.Random(2)
    async with trio.open_nursery() as group3:
        for _ in range(4):
            group3.start_soon(one, cut, url_a, "a", key, True, 80, 50)
        for stream in (True, True, False):
            group3.start_soon(loop, on_c, url_c, "c", key, stream, stop, rng)
        await wait_for(lambda: len(cut) == 4 and all(r.deltas for r in cut), 15, "the streams on A")
        await trio.sleep(CUTOFF + 0.3)
        killed_at = await kill_9(a)
        killed_wall = time.time()
        (beat,) = query(db, "SELECT heartbeat_at, lease_seconds FROM instances WHERE id = ?", (a_id,))
        lapses_at = beat["heartbeat_at"] + beat["lease_seconds"]
        assert lapses_at > killed_wall  # its lease was still good when it died

        def open_on_a() -> int:
            return query(db, "SELECT count(*) FROM holds WHERE state = 'open' AND owner = ?", (a_id,))[0][0]

        assert open_on_a() == 4 or time.time() >= lapses_at, "recovered before A's lease lapsed"
        # C sweeps every lease; A's lease lapses within one lease of the kill.
        await wait_for(lambda: open_on_a() == 0, 3 * LEASE_SECONDS + 6, "C to recover A's holds")
        recovered_seen = time.time()
        served_during = len(on_c)
        await trio.sleep(0.3)
        stop.set()
        group3.cancel_scope.deadline = trio.current_time() + 20
    assert not group3.cancel_scope.cancelled_caught

    ledger = Ledger.read(db)
    assert_ledger_adds_up(db)
    for rec in cut:
        assert not rec.completed
        assert assert_cut_stream_charged(ledger, rec, killed_at) == "recovered"
        recovered_at = ledger.usage[rec.request_id]["created_at"]  # unix time
        assert lapses_at <= recovered_at <= recovered_seen, "recovered before A's lease lapsed"
    assert served_during >= 3 and all(r.completed for r in on_c), [(r.status, r.error) for r in on_c
                                                                   if not r.completed]
    for rec in on_c:
        assert_charged_once_in_full(ledger, rec)
        assert ledger.holds[rec.request_id][0]["owner"] == c_id
    assert [r["id"] for r in query(db, "SELECT id FROM instances")] == [c_id]
    print(f"\nthe serve that could not bind lived {b_lived:.2f} s; "
          f"A killed; its lease lapsed {lapses_at - killed_wall:+.2f} s after; C recovered its "
          f"{len(cut)} streams by {recovered_seen - killed_wall:.2f} s and served {len(on_c)} requests meanwhile")
    code, output = await db_check(procs, db)
    assert code == 0, output
