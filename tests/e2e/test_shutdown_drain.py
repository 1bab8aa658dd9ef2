"""SIGTERM past the grace (issue 18): a stream still going when ``shutdown_grace`` runs
out ends with an ``event: error`` in its endpoint's shape and a complete chunked body,
not a truncated one; what it delivered is charged; the process exits 0."""

from __future__ import annotations

import signal
import sqlite3

import httpx
import orjson
import trio

from tests.e2e.processes import serve_process

LONG = "[sim deltas=400 gap_ms=25] a long answer"  # ten seconds of deltas: past a one-second grace


async def test_a_stream_past_the_grace_ends_with_an_error_event(tmp_path, nursery):
    db = str(tmp_path / "drain.db")
    config = tmp_path / "cheaplm.toml"
    config.write_text("shutdown_grace = 1.0\n")
    process, port, key = await serve_process(nursery, db, "d", "--config", str(config))
    bodies = {}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers={"x-api-key": key},
                                 timeout=20) as http:
        for path, body in (("/v1/messages", {"model": "claude-haiku-4.5", "max_tokens": 2000, "stream": True,
                                             "messages": [{"role": "user", "content": LONG}]}),
                           ("/v1/chat/completions", {"model": "claude-haiku-4.5", "max_tokens": 2000,
                                                     "stream": True,
                                                     "messages": [{"role": "user", "content": LONG}]})):
            bodies[path] = await http.send(http.build_request("POST", path, json=body), stream=True)
        readers, firsts = {}, {}
        for path, response in bodies.items():
            assert response.status_code == 200
            readers[path] = response.aiter_raw()
            firsts[path] = await readers[path].__anext__()  # the stream has begun
        started = trio.current_time()
        process.send_signal(signal.SIGTERM)
        texts = {}
        for path, response in bodies.items():
            rest = [chunk async for chunk in readers[path]]  # to a complete chunked end, or it raises
            texts[path] = b"".join([firsts[path], *rest]).decode()
            await response.aclose()
        assert trio.current_time() - started < 3
    anthropic = texts["/v1/messages"]
    assert "event: message_stop" not in anthropic
    last = anthropic.strip().split("\n\n")[-1]
    assert last.startswith("event: error\ndata: "), last
    error = orjson.loads(last.split("data: ", 1)[1])
    assert error["type"] == "error" and error["error"]["type"] == "overloaded_error"
    assert "shutting down" in error["error"]["message"]
    openai = texts["/v1/chat/completions"].strip().split("\n\n")
    assert "[DONE]" not in openai[-1]
    assert "shutting down" in orjson.loads(openai[-1].removeprefix("data: "))["error"]["message"]
    with trio.fail_after(20):
        await process.wait()
    assert process.returncode == 0
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM holds WHERE state = 'open'").fetchone()[0] == 0
    rows = conn.execute("SELECT partial, cost FROM usage").fetchall()
    assert len(rows) == 2 and all(partial == 1 and cost > 0 for partial, cost in rows)
