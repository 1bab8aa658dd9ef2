"""The npm `openai` package (Node.js) as a client of /v1/chat/completions.

The package is installed into tests/node/node_modules on first use (npm registry);
without node and npm on the machine this test is skipped, saying so."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import trio

NODE_DIR = Path(__file__).parent.parent / "node"


def _node_modules_ready() -> bool:
    return (NODE_DIR / "node_modules" / "openai" / "package.json").exists()


@pytest.fixture(scope="session")
def node_openai():
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("node and npm are not installed")
    if not _node_modules_ready():
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--no-package-lock", "--loglevel=error"], cwd=NODE_DIR,
                       check=True, timeout=300)
    assert _node_modules_ready()
    return NODE_DIR / "openai_client.mjs"


async def test_npm_openai_client(node_openai, alice):
    env = {**os.environ, "CHEAPLM_KEY": alice.key, "CHEAPLM_BASE_URL": alice.running.url + "/v1"}
    with trio.fail_after(60):
        result = await trio.run_process(["node", str(node_openai)], env=env, capture_stdout=True,
                                        capture_stderr=True, check=False)
    assert result.returncode == 0, result.stderr.decode()
    out = json.loads(result.stdout)
    assert out["plain"]["content"].startswith("The quick brown fox") and out["plain"]["finish"] == "stop"
    assert out["plain"]["usage"]["completion_tokens"] == 12
    assert [c["name"] for c in out["tools"]["calls"]] == ["get_weather", "get_time"]
    assert [json.loads(c["arguments"]) for c in out["tools"]["calls"]] == [{"city": "sim"}, {}]
    assert out["tools"]["finish"] == "tool_calls" and out["tools"]["usage"]["prompt_tokens"] > 0
    assert out["streamed"] == "The quick brown fox jumps over the lazy dog while the gateway meters every token. "[:80]
    assert out["error"] == {"status": 400, "message": 'Model "gpt-4o" is not available.'}
