"""The real Claude Code CLI (npm ``@anthropic-ai/claude-code``) in print mode against
the gateway, as real processes: ``python -m proxy simulator --record`` and ``python -m
proxy serve --upstream-url <simulator>`` (with a user, a ``--paid 10`` top-up and a key
made first by the admin calls README "First steps" makes), then ``claude -p ...
--output-format json`` with a throwaway HOME. A recording proxy
(tests/clients/recording_proxy.py) between Claude Code and the gateway keeps every
request and every answer; the gateway's DEBUG log and the simulator's log are left in
the test's tmp_path.

Opt-in: ``CHEAPLM_TEST_CLAUDE_CODE=1 .venv/bin/python -m pytest -m claude_code``.
On first run the package is installed into tests/clients/claude-code/node_modules
from the npm registry (its postinstall copies the native binary out of the platform
package ``@anthropic-ai/claude-code-linux-x64`` etc., also from the npm registry).
``CHEAPLM_CLAUDE_CODE_BIN=/path/to/claude`` uses another binary instead.

The assertions are the behaviour we want from the gateway: Claude Code exits 0 with
the simulator's answer; the gateway answers no 4xx/5xx (the telemetry path
/api/event_logging/... excepted); every metered request has a charge in the
ledger; and in a tool loop the assistant turn Claude Code sends back starts with
the signed thinking block the upstream produced (Anthropic's API refuses a tool loop
whose last assistant turn lacks it when thinking is on).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import trio

from proxy.accounts.ledger import open_ledger
from proxy.accounts.service import Accounts
from proxy.config import Config
from storage import open_store

from .recording_proxy import Exchange, serve_recording_proxy

pytestmark = [
    pytest.mark.claude_code,
    pytest.mark.skipif(os.environ.get("CHEAPLM_TEST_CLAUDE_CODE") != "1",
                       reason="opt-in: set CHEAPLM_TEST_CLAUDE_CODE=1 to run the real Claude Code CLI"),
]

PACKAGE_DIR = Path(__file__).parent / "claude-code"
PACKAGE_BIN = PACKAGE_DIR / "node_modules" / "@anthropic-ai" / "claude-code" / "bin" / "claude.exe"
REPO = Path(__file__).resolve().parents[2]
SIM_TEXT = "The quick brown fox jumps over the lazy dog"
# Telemetry (harmless to refuse): /api/event_logging/batch in older releases, /api/event_logging/v2/batch in
# 2.1.332, which sends it to api.anthropic.com rather than ANTHROPIC_BASE_URL anyway.
TELEMETRY = "/api/event_logging/"
USER = "alice"
# What a user sets to keep the aliases on models the gateway sells (README "Claude Code").
PINNED = {"ANTHROPIC_DEFAULT_SONNET_MODEL": "claude-sonnet-4.5",
          "ANTHROPIC_DEFAULT_OPUS_MODEL": "claude-opus-4.6",
          "ANTHROPIC_DEFAULT_HAIKU_MODEL": "claude-haiku-4.5"}
QUIET = {"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_TELEMETRY": "1", "DISABLE_AUTOUPDATER": "1"}
CLAUDE_TIMEOUT = 60


def _claude_works(binary: Path) -> bool:
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, timeout=30, env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(PACKAGE_DIR)})
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and b"Claude Code" in out.stdout


@pytest.fixture(scope="session")
def claude_bin() -> Path:
    override = os.environ.get("CHEAPLM_CLAUDE_CODE_BIN")
    if override:
        assert _claude_works(Path(override)), f"CHEAPLM_CLAUDE_CODE_BIN={override} does not run"
        return Path(override)
    if not _claude_works(PACKAGE_BIN):
        if not shutil.which("npm") or not shutil.which("node"):
            pytest.skip("node and npm are needed to install @anthropic-ai/claude-code")
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--no-package-lock", "--loglevel=error"],
                       cwd=PACKAGE_DIR, check=True, timeout=300)
        if not _claude_works(PACKAGE_BIN):
            # npm ran with scripts disabled: the bin is still the stub; its postinstall copies the binary in.
            subprocess.run(["node", str(PACKAGE_BIN.parent.parent / "install.cjs")], cwd=PACKAGE_DIR, check=True,
                           timeout=120)
    assert _claude_works(PACKAGE_BIN), "claude --version failed after npm install"
    return PACKAGE_BIN


# --- processes ---------------------------------------------------------------------


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHEAPLM_", "ANTHROPIC_"))}
    return {**env, **extra}


async def _stop(process: trio.Process) -> None:
    with trio.CancelScope(shield=True):
        if process.returncode is None:
            process.terminate()
            with trio.move_on_after(5):
                await process.wait()
        if process.returncode is None:
            process.kill()
            with trio.move_on_after(5):
                await process.wait()


async def _start(processes: list[trio.Process], args: list[str], log: Path, ready: re.Pattern,
                 env: dict[str, str]) -> str:
    """Start a long-running process, logging to ``log``; return the URL its log announces."""
    out = log.open("wb")
    process = await trio.lowlevel.open_process(args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    processes.append(process)
    out.close()
    with trio.fail_after(30):
        while True:
            found = ready.search(log.read_text(errors="replace"))
            if found:
                return found.group(1)
            assert process.returncode is None and process.poll() is None, \
                f"{args[2:4]} exited early:\n{log.read_text(errors='replace')[-3000:]}"
            await trio.sleep(0.05)


async def _account(db: Path) -> str:
    """README "First steps" (user create, topup --paid 10, key create) as the library
    calls the CLI makes (proxy/accounts/), without three more interpreter start-ups."""
    config = Config(database_url=str(db))
    store = await open_store(str(db))
    try:
        accounts = Accounts(store, multiplier=config.value_multiplier)
        await accounts.create_user(USER)
        await accounts.topup(USER, "10")
        key, _ = await accounts.create_key(config.catalog(), USER)
    finally:
        await store.aclose()
    return key


async def _kill_group(process: trio.Process) -> None:
    """Cancellation of a claude run: the whole process group (it may have spawned shells)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        with trio.move_on_after(3):
            await process.wait()
            return


@dataclass
class Run:
    label: str
    returncode: int
    stdout: str
    stderr: str
    exchanges: list[Exchange]
    seconds: float = 0.0

    @property
    def result(self) -> dict:
        """The ``--output-format json`` result ({} when stdout is not JSON)."""
        try:
            result = json.loads(self.stdout)
        except ValueError:
            return {}
        return result if isinstance(result, dict) else {}

    def messages(self) -> list[Exchange]:
        return [e for e in self.exchanges if e.method == "POST" and e.path.endswith("/messages")]

    def summary(self) -> str:
        lines = [f"{self.label}: exit {self.returncode} after {self.seconds:.1f} s"]
        for e in self.exchanges:
            body = e.body if isinstance(e.body, dict) else {}
            lines.append(f"  {e.status} {e.method} {e.target} {e.body_bytes}B model={body.get('model')} "
                         f"max_tokens={body.get('max_tokens')} thinking={body.get('thinking')} "
                         f"stream={body.get('stream')}")
            if e.status >= 400 or e.status == 0:
                lines.append(f"      -> {e.response_text()[:500]} {e.error or ''}")
        return "\n".join(lines)


@dataclass
class Stack:
    tmp: Path
    db: Path
    gateway_url: str
    simulator_url: str
    proxy_url: str
    exchanges: list[Exchange]
    key: str
    runs: list[Run] = field(default_factory=list)

    async def claude(self, claude_bin: Path, prompt: str, *args: str, base_suffix: str = "",
                     auth: str = "ANTHROPIC_API_KEY", quiet: bool = True, pinned: bool = True,
                     label: str = "") -> Run:
        home = self.tmp / f"home{len(self.runs)}"
        (home / "work").mkdir(parents=True)
        (home / "tmp").mkdir()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "TMPDIR": str(home / "tmp"),
               "TERM": "dumb", "LANG": "C.UTF-8", "ANTHROPIC_BASE_URL": self.proxy_url + base_suffix,
               auth: self.key, **(QUIET if quiet else {}), **(PINNED if pinned else {})}
        start, began = len(self.exchanges), trio.current_time()
        returncode, stdout, stderr = -1, b"", f"timed out after {CLAUDE_TIMEOUT} s (killed)".encode()
        with trio.move_on_after(CLAUDE_TIMEOUT):
            result = await trio.run_process(
                [str(claude_bin), "-p", prompt, "--output-format", "json", *args], cwd=home / "work", env=env,
                capture_stdout=True, capture_stderr=True, check=False, start_new_session=True,
                deliver_cancel=_kill_group)
            returncode, stdout, stderr = result.returncode, result.stdout, result.stderr
        with trio.move_on_after(10):   # the proxy notes an answer's end just after relaying its last byte
            while any(e.ended == 0 for e in self.exchanges[start:]):
                await trio.sleep(0.01)
        run = Run(label or " ".join(args) or "default", returncode, stdout.decode(errors="replace"),
                  stderr.decode(errors="replace"), list(self.exchanges[start:]), trio.current_time() - began)
        self.runs.append(run)
        return run

    async def charges(self, request_ids: list[str]) -> dict[str, int]:
        """Ledger charges by request id, waiting (bounded) for streams to settle."""
        found: dict[str, int] = {}
        store = await open_store(str(self.db))
        try:
            with trio.move_on_after(10):
                while True:
                    found = {e.ref: e.delta for e in await store.ledger(USER) if e.kind == "charge"}
                    if all(r in found for r in request_ids):
                        break
                    await trio.sleep(0.1)
        finally:
            await store.aclose()
        return found


@pytest.fixture
async def stack(tmp_path):
    processes: list[trio.Process] = []
    env = _clean_env(CHEAPLM_LOG_LEVEL="DEBUG")
    try:
        db = tmp_path / "ledger.db"
        key = await _account(db)
        sim_url = await _start(processes, [sys.executable, "-m", "proxy", "simulator", "--port", "0", "--record"],
                               tmp_path / "simulator.log", re.compile(r"simulated upstream listening on (\S+)"), env)
        gateway_url = await _start(processes, [sys.executable, "-m", "proxy", "serve", "--port", "0", "--db",
                                               str(db), "--upstream-url", sim_url],
                                   tmp_path / "gateway.log", re.compile(r"CheapLM gateway listening on (\S+)"), env)
        assert key.startswith("sk-cl-")
        async with trio.open_nursery() as nursery:
            proxy_url, exchanges = await nursery.start(serve_recording_proxy, gateway_url)
            yield Stack(tmp_path, db, gateway_url, sim_url, proxy_url, exchanges, key)
            nursery.cancel_scope.cancel()   # the proxy's keep-alive connections first: they hold up a graceful stop
    finally:
        for process in reversed(processes):
            await _stop(process)


# --- what we want from every run ---------------------------------------------------


async def problems(stack: Stack, run: Run) -> list[str]:
    """What falls short of: exit 0 with the simulator's text in the JSON result, no
    gateway 4xx/5xx but telemetry, a ledger charge for every metered request."""
    found: list[str] = []
    if run.returncode != 0:
        found.append(f"claude exited {run.returncode}; stderr: {run.stderr[-1500:]!r}")
    result = run.result
    if not result:
        found.append(f"stdout is not a JSON result: {run.stdout[-1500:]!r}")
    elif result.get("is_error") is not False or SIM_TEXT not in str(result.get("result")):
        found.append(f"result: is_error={result.get('is_error')} api_error_status="
                     f"{result.get('api_error_status')} result={str(result.get('result'))[:300]!r}")
    for e in run.exchanges:
        if not e.path.startswith(TELEMETRY) and (e.status >= 400 or e.status == 0):
            found.append(f"gateway answered {e.status} to {e.method} {e.target}: {e.response_text()[:400]}")
    metered = [e for e in run.messages() if e.status == 200]
    if not metered:
        found.append("no /v1/messages request was answered 200")
    ids = [e.response_headers.get("request-id", "") for e in metered]
    charges = await stack.charges(ids)
    for request_id in ids:
        if charges.get(request_id, 0) >= 0:
            found.append(f"no ledger charge for {request_id or 'an answer without request-id'}")
    return found


def fell_short(found: list[str], runs: list[Run]) -> None:
    assert not found, "\n".join(["Claude Code through the gateway fell short:", *(f"- {f}" for f in found),
                                  "exchanges:", *(r.summary() for r in runs)])


# --- the tests -----------------------------------------------------------------------


async def test_print_mode_out_of_the_box(stack, claude_bin):
    """No model pinning: Claude Code's own ids for its default model and its aliases
    (claude-{opus,sonnet,haiku}-5-5 in 2.1.332, with max_tokens 128000 and adaptive
    thinking) must be served."""
    found, runs = [], []
    for model in (None, "sonnet", "opus", "haiku"):
        run = await stack.claude(claude_bin, "say hi [sim mode=text]", *(["--model", model] if model else []),
                                 pinned=False, label=f"--model {model}" if model else "default model")
        runs.append(run)
        found += [f"{run.label}: {f}" for f in await problems(stack, run)]
    fell_short(found, runs)


async def test_print_mode_pinned_models(stack, claude_bin):
    """ANTHROPIC_DEFAULT_{SONNET,OPUS,HAIKU}_MODEL pinned to catalog ids; base URL with
    and without /v1; the key as x-api-key and as a bearer token."""
    cases = [("sonnet", "", "ANTHROPIC_API_KEY", "claude-sonnet-4.5"),
             ("opus", "/v1", "ANTHROPIC_API_KEY", "claude-opus-4.6"),
             ("haiku", "", "ANTHROPIC_AUTH_TOKEN", "claude-haiku-4.5")]
    found, runs = [], []
    for alias, suffix, auth, model in cases:
        run = await stack.claude(claude_bin, "say hi [sim mode=text]", "--model", alias, base_suffix=suffix,
                                 auth=auth, label=f"--model {alias} base{suffix or ' (no /v1)'} {auth}")
        runs.append(run)
        found += [f"{run.label}: {f}" for f in await problems(stack, run)]
        if {e.body["model"] for e in run.messages()} != {model}:
            found.append(f"{run.label}: models sent {sorted({e.body['model'] for e in run.messages()})}")
        if not all(e.target == f"{suffix}/v1/messages?beta=true" for e in run.messages()):
            found.append(f"{run.label}: paths {sorted({e.target for e in run.messages()})}")
    fell_short(found, runs)


async def test_print_mode_without_quiet_switches(stack, claude_bin):
    """Without CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC & co. Claude Code also probes the
    base URL (HEAD /api/hello today) and may post telemetry: only telemetry may fail."""
    run = await stack.claude(claude_bin, "say hi [sim mode=text]", quiet=False, label="no quiet switches")
    fell_short(await problems(stack, run), [run])


@pytest.mark.parametrize("pinned", [True, False], ids=["pinned-sonnet", "default-sonnet"])
async def test_tool_loop_with_thinking(stack, claude_bin, pinned):
    """Two turns: the simulator answers the first with thinking + tool_use (Read, the
    only tool), Claude Code runs it and sends the tool_result with its assistant turn,
    which must start with the signed thinking block."""
    run = await stack.claude(claude_bin, "read the file sim", "--model", "sonnet", "--tools", "Read",
                             "--allowedTools", "Read", pinned=pinned, label=f"tool loop (pinned={pinned})")
    found = await problems(stack, run)
    answered = [e for e in run.messages() if e.status == 200]
    if answered:
        first = answered[0].body
        if (first.get("thinking") or {}).get("type") not in ("enabled", "adaptive"):
            found.append(f"the first request has no thinking: {first.get('thinking')}")
        if "Read" not in [t["name"] for t in first.get("tools", [])]:   # (5-5 models add a deferred placeholder)
            found.append(f"tools: {[t['name'] for t in first.get('tools', [])]}")
    follow_ups = [e for e in answered if e.body["messages"][-1]["role"] == "user"
                  and any(b.get("type") == "tool_result" for b in e.body["messages"][-1]["content"]
                          if isinstance(b, dict))]
    if not follow_ups:
        found.append("no request carried a tool_result: the tool loop did not complete")
    else:
        # The client's view of the turn has no thinking (the gateway filters it from
        # streams); what the upstream receives must start with its signed thinking block,
        # put back by the gateway.
        async with httpx.AsyncClient() as http:
            seen = (await http.get(stack.simulator_url + "/_sim/requests")).json()["data"]
        upstream = [s["body"] for s in seen if s["path"] == "/v1/messages" and s.get("body")
                    and s["body"]["messages"][-1]["role"] == "user"
                    and isinstance(s["body"]["messages"][-1]["content"], list)
                    and any(isinstance(b, dict) and b.get("type") == "tool_result"
                            for b in s["body"]["messages"][-1]["content"])]
        messages = upstream[-1]["messages"] if upstream else follow_ups[-1].body["messages"]
        assistant, last = messages[-2], messages[-1]
        kinds = [b["type"] for b in assistant["content"]] if assistant["role"] == "assistant" else []
        if not kinds or kinds[0] != "thinking" or not assistant["content"][0].get("signature", "").startswith("EqSig"):
            found.append(f"the assistant turn the upstream got with the tool_result does not start with its "
                         f"signed thinking block (blocks: {kinds})")
        tool_ids = [b["id"] for b in assistant["content"] if b["type"] == "tool_use"] if kinds else []
        if [b["tool_use_id"] for b in last["content"] if b.get("type") == "tool_result"] != tool_ids:
            found.append(f"tool_result ids do not match the tool_use ids {tool_ids}")
    if run.result and run.result.get("num_turns") != 2:
        found.append(f"num_turns={run.result.get('num_turns')}, expected 2")
    fell_short(found, [run])
