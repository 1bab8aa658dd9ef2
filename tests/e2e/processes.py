"""Running ``cheaplm`` as child processes: the admin CLI in a thread, a free port, waiting
for a server's /health, ``cheaplm serve`` on a fresh ledger."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from functools import partial

import httpx
import trio

from proxy.cli.main import main
from tests.conftest import LOOPBACK_TLS


async def cli(*argv) -> int:
    """The admin CLI runs its own trio.run, so from a test it runs in a thread."""
    return await trio.to_thread.run_sync(main, list(argv))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def wait_http(url: str) -> httpx.Response:
    with trio.fail_after(20):
        while True:
            try:
                async with httpx.AsyncClient(verify=LOOPBACK_TLS) as http:
                    return await http.get(url)
            except httpx.TransportError:
                await trio.sleep(0.05)


def spawn(nursery, cwd, *argv):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHEAPLM_")}
    return nursery.start_soon(lambda: trio.run_process(
        [sys.executable, "-m", "proxy", *argv], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
        stderr=open(os.path.join(cwd, f"{argv[0]}.log"), "w"), check=False))


async def serve_process(nursery, db: str, user: str, *flags: str):
    """A ledger with ``user`` ($5 of credit) and a key, and ``cheaplm serve`` on it as a
    child process (``flags`` added): (the process, its port, the key)."""
    from proxy.accounts.ledger import open_ledger
    from proxy.accounts.service import Accounts
    from proxy.catalog import default_catalog

    port = free_port()
    assert await cli("user", "create", user, "--db", db) == 0
    assert await cli("topup", user, "--credit", "5", "--db", db) == 0
    async with open_ledger(db) as store:
        key, _ = await Accounts(store).create_key(default_catalog(), user)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHEAPLM_")}
    process = await nursery.start(partial(trio.run_process, [sys.executable, "-m", "proxy", "serve", "--port",
                                                             str(port), "--db", db, *flags], env=env, check=False,
                                          stderr=subprocess.DEVNULL))
    await wait_http(f"http://127.0.0.1:{port}/health")
    return process, port, key
