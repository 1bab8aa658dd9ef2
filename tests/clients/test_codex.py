"""The real Codex CLI (npm ``@openai/codex``) in ``codex exec`` mode against /v1/responses,
as real processes: ``python -m proxy simulator --record`` and ``python -m proxy serve``
(an account with a ``--paid 10`` top-up and a key, as README "First steps" makes), then
``codex exec`` with an empty HOME whose ``config.toml`` points a custom provider at the
gateway with ``wire_api = "responses"`` (docs/responses.md gives the same file).

Opt-in: ``CHEAPLM_TEST_CODEX=1 .venv/bin/python -m pytest tests/clients/test_codex.py``.
The package is installed into a temporary npm prefix from the npm registry on first use
(``CHEAPLM_CODEX_BIN=/path/to/codex`` uses another binary instead).

What it asserts: Codex exits 0 with the simulator's answer; with its default tools and
``model_reasoning_effort = "medium"`` the simulator calls a tool, Codex runs it and sends
the output back with its reasoning items, and the simulator (which refuses a tool loop
whose last assistant turn lacks its signed thinking block, as Anthropic does) accepts
the turn; every request is a ``responses`` row with a charge.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
import trio

from storage import open_store

from .test_claude_code import USER, stack  # noqa: F401  (the fixture: simulator, gateway, recording proxy)

pytestmark = pytest.mark.skipif(os.environ.get("CHEAPLM_TEST_CODEX") != "1",
                                reason="opt-in: set CHEAPLM_TEST_CODEX=1 to run the real Codex CLI")

SIM_TEXT = "The quick brown fox jumps over the lazy dog"
CODEX_TIMEOUT = 120
CONFIG = """model = "claude-sonnet-4.5"
model_provider = "cheaplm"
model_reasoning_effort = "medium"

[model_providers.cheaplm]
name = "CheapLM"
base_url = "{url}/v1"
env_key = "CHEAPLM_API_KEY"
wire_api = "responses"
"""


def _codex_works(binary: Path) -> bool:
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and b"codex" in out.stdout.lower()


@pytest.fixture(scope="session")
def codex_bin(tmp_path_factory) -> Path:
    override = os.environ.get("CHEAPLM_CODEX_BIN")
    if override:
        assert _codex_works(Path(override)), f"CHEAPLM_CODEX_BIN={override} does not run"
        return Path(override)
    if not shutil.which("npm"):
        pytest.skip("npm is needed to install @openai/codex")
    prefix = tmp_path_factory.mktemp("codex-npm")
    subprocess.run(["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--loglevel=error",
                    "@openai/codex"], check=True, timeout=300)
    binary = prefix / "node_modules" / ".bin" / "codex"
    assert _codex_works(binary), "codex --version failed after npm install"
    return binary


async def codex(binary: Path, tmp: Path, gateway_url: str, key: str, prompt: str) -> subprocess.CompletedProcess:
    home = tmp / f"home-{len(list(tmp.glob('home-*')))}"
    (home / ".codex").mkdir(parents=True)
    (home / "work").mkdir()
    (home / ".codex" / "config.toml").write_text(CONFIG.format(url=gateway_url))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "CODEX_HOME": str(home / ".codex"),
           "CHEAPLM_API_KEY": key, "LANG": "C.UTF-8", "TERM": "dumb"}
    with trio.fail_after(CODEX_TIMEOUT):
        return await trio.run_process([str(binary), "exec", "--skip-git-repo-check", prompt], cwd=home / "work",
                                      env=env, capture_stdout=True, capture_stderr=True, check=False,
                                      stdin=subprocess.DEVNULL)


async def test_codex_completes_a_turn_and_a_tool_call(codex_bin, stack):
    tmp, db, sim_url = stack.tmp, stack.db, stack.simulator_url
    plain = await codex(codex_bin, tmp, stack.gateway_url, stack.key, "Say hello [sim mode=text]")
    assert plain.returncode == 0, plain.stderr.decode(errors="replace")[-3000:]
    assert SIM_TEXT in plain.stdout.decode()

    tool = await codex(codex_bin, tmp, stack.gateway_url, stack.key, "List the files here")
    assert tool.returncode == 0, tool.stderr.decode(errors="replace")[-3000:]
    async with httpx.AsyncClient() as http:
        seen = (await http.get(sim_url + "/_sim/requests")).json()["data"]
    turns = [s for s in seen if s["path"] == "/v1/messages" and s["body"]]
    assert all(s["status"] == 200 for s in turns), [(s["status"], s["outcome"]) for s in turns]
    loops = [s["body"] for s in turns if any(
        isinstance(m["content"], list) and any(b.get("type") == "tool_result" for b in m["content"])
        for m in s["body"]["messages"])]
    assert loops, "Codex never sent a tool's output back"
    last = loops[-1]
    assert last["thinking"]["type"] == "enabled"
    assistant = [m for m in last["messages"] if m["role"] == "assistant"][-1]
    assert assistant["content"][0]["type"] == "thinking"  # rebuilt from Codex's reasoning item
    assert last["tools"][-1].get("cache_control") == {"type": "ephemeral"}  # automatic prompt caching
    store = await open_store(str(db))
    try:
        rows = await store.usage(USER, 100)
        charges = [e for e in await store.ledger(USER) if e.kind == "charge"]
    finally:
        await store.aclose()
    assert rows and all(r.endpoint == "responses" and r.status == 200 and r.cost > 0 for r in rows)
    assert len(charges) == len(rows) == len(turns)
