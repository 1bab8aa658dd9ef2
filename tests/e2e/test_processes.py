"""The commands as a newcomer runs them: `cheaplm serve` on its embedded default, and
`cheaplm simulator` as a standalone upstream for `cheaplm serve --upstream-url`."""

import os
import socket
import subprocess
import sys
from functools import partial

import httpx
import trio

from proxy.cli.main import main
from tests.conftest import LOOPBACK_TLS
from tests.e2e.processes import cli, free_port, serve_process, spawn, wait_http


async def test_serve_on_embedded_default(tmp_path, nursery, monkeypatch):
    port = free_port()
    spawn(nursery, str(tmp_path), "serve", "--port", str(port))
    health = (await wait_http(f"http://127.0.0.1:{port}/health")).json()
    assert health["upstream"]["simulated"] is True
    assert (tmp_path / "cheaplm.db").exists()
    # an operator's first steps, against the running server's ledger
    monkeypatch.chdir(tmp_path)
    assert await cli("user", "create", "first") == 0
    assert await cli("topup", "first", "--paid", "1") == 0
    nursery.cancel_scope.cancel()
    log = (tmp_path / "serve.log").read_text()
    assert "SIMULATED upstream" in log


async def test_standalone_simulator_behind_the_gateway(tmp_path, nursery, capsys):
    sim_port, gw_port = free_port(), free_port()
    spawn(nursery, str(tmp_path), "simulator", "--port", str(sim_port), "--deltas", "5")
    await wait_http(f"http://127.0.0.1:{sim_port}/v1/models")
    db = str(tmp_path / "g.db")
    assert await cli("user", "create", "u", "--db", db) == 0
    assert await cli("topup", "u", "--credit", "5", "--db", db) == 0
    capsys.readouterr()
    assert await cli("key", "create", "u", "--db", db) == 0
    key = capsys.readouterr().out.strip()
    spawn(nursery, str(tmp_path), "serve", "--port", str(gw_port), "--db", db, "--upstream-url",
          f"http://127.0.0.1:{sim_port}")
    health = (await wait_http(f"http://127.0.0.1:{gw_port}/health")).json()
    channels = health["upstream"].pop("channels")
    assert health["upstream"] == {"url": f"http://127.0.0.1:{sim_port}", "simulated": False}
    assert [(c["name"], c["url"], c["state"]) for c in channels] == [
        ("default", f"http://127.0.0.1:{sim_port}", "healthy")]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw_port}", headers={"x-api-key": key},
                                 verify=LOOPBACK_TLS) as http:
        response = await http.post("/v1/messages", json={
            "model": "claude-haiku-4.5", "max_tokens": 50, "stream": True,
            "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 200 and response.text.count("event: content_block_delta") == 5
    nursery.cancel_scope.cancel()


async def test_sigterm_lets_streams_finish_then_stops_cleanly(tmp_path, nursery):
    """docker stop / systemctl stop send SIGTERM: no new connections, streams in flight
    finish and are charged, the instance leaves the ledger, exit 0."""
    import signal
    import sqlite3

    db = str(tmp_path / "term.db")
    process, port, key = await serve_process(nursery, db, "t")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers={"x-api-key": key},
                                 verify=LOOPBACK_TLS, timeout=20) as http:
        async with http.stream("POST", "/v1/messages", json={
                "model": "claude-haiku-4.5", "max_tokens": 500, "stream": True,
                "messages": [{"role": "user", "content": "long [sim deltas=30 gap_ms=50]"}]}) as response:
            chunks = response.aiter_text()
            text = await chunks.__anext__()
            process.send_signal(signal.SIGTERM)
            async for chunk in chunks:
                text += chunk
    assert "event: message_stop" in text and text.count("event: content_block_delta") == 30
    with trio.fail_after(20):
        await process.wait()
    assert process.returncode == 0
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM instances").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM holds WHERE state = 'open'").fetchone()[0] == 0
    assert conn.execute("SELECT count(*), min(partial) FROM usage").fetchone() == (1, 0)
