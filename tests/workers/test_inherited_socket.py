"""A worker's gateway on a socket it did not bind (``serve(listen_fd=...)``): the supervisor's
listening socket, served by hypercorn's trio worker as a bound one is, streams taking the
direct path to the client's socket as they do on a socket of its own."""

from __future__ import annotations

import os
from dataclasses import replace
from functools import partial

from proxy.relay import direct_body
from proxy.serve import serve
from proxy.workers.supervisor import listen
from tests.conftest import make_account


async def test_serve_on_an_inherited_listening_socket(nursery, config, monkeypatch):
    sock = listen(config)  # (port 0: any free port)
    port = sock.getsockname()[1]
    found = []
    original = direct_body.find

    def recording(send, scope):
        path = original(send, scope)
        found.append(path)
        return path

    monkeypatch.setattr(direct_body, "find", recording)
    try:
        # (a copy of the descriptor, as a worker inherits one: the server's socket object owns and closes it)
        running = await nursery.start(partial(serve, replace(config, port=12345), listen_fd=os.dup(sock.fileno())))
        assert running.url == f"http://127.0.0.1:{port}"  # the inherited socket's port, not the config's
        alice = await make_account(running)
        async with alice.http() as http:
            assert (await http.get("/health")).json()["pid"] == os.getpid()
            answer = await http.post("/v1/messages", json={
                "model": "claude-haiku-4.5", "max_tokens": 50, "stream": True,
                "messages": [{"role": "user", "content": "hi"}]})
        assert answer.status_code == 200 and "event: message_stop" in answer.text
        assert len(found) == 1 and found[0] is not None  # the direct path
    finally:
        nursery.cancel_scope.cancel()
        sock.close()
