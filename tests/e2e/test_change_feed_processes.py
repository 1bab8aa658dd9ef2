"""The issue's test over real processes: `cheaplm key revoke` (the CLI, another process)
against a running `cheaplm serve` (a child process, its key cache at the default 5 s and
the change feed polled at its default 0.25 s): the key is refused within 1 s."""

import httpx
import trio

from tests.conftest import LOOPBACK_TLS
from tests.e2e.processes import cli, serve_process


async def test_a_key_revoked_by_the_cli_is_refused_by_a_running_serve_within_a_second(tmp_path, nursery):
    db = str(tmp_path / "ledger.db")
    process, port, key = await serve_process(nursery, db, "rita")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers={"x-api-key": key},
                                 verify=LOOPBACK_TLS) as http:
        assert (await http.get("/v1/models")).status_code == 200   # the key is in the gateway's cache now
        assert await cli("key", "revoke", key[:14], "--db", db) == 0
        with trio.fail_after(1.0):
            while (response := await http.get("/v1/models")).status_code == 200:
                await trio.sleep(0.01)
        assert response.status_code == 401 and "revoked" in response.json()["error"]["message"]
    process.terminate()
