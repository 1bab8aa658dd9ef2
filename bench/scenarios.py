"""The bench scenarios: what each arm is sent and how its stream is recognised."""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlsplit

from . import claude_code
from .loadgen import Target, build_request

SCENARIOS = ("stream", "stream-openai", "nonstream", "claude-code")
DEFAULT_SCENARIOS = ("stream", "stream-openai", "nonstream")
MODEL = "claude-sonnet-4.5"

ANTHROPIC_MARKERS = (b"event: content_block_delta", b"event: message_stop", b"event: error")
# Claude Code's requests enable thinking: the simulator streams a thinking block before
# the text, which the gateway filters out by default. Only text deltas are counted, so
# that TTFT (to the first text delta) and deltas mean the same on every arm.
CLAUDE_CODE_MARKERS = (b'"text_delta"', b"event: message_stop", b"event: error")
OPENAI_MARKERS = (b'"delta":{"content":"', b"data: [DONE]", b'data: {"error"')


@dataclass(frozen=True)
class Shape:
    """The paced stream every streaming scenario asks the simulator for."""

    deltas: int = 64
    delta_bytes: int = 16
    gap_ms: float = 20.0
    ttft_ms: float = 0.0

    @property
    def tokens_per_delta(self) -> int:
        return -(-self.delta_bytes // 4)

    def directive(self, stream: bool, mode: str | None = None) -> str:
        if not stream:
            return "[sim deltas=1 delta_bytes=8 gap_ms=0 ttft_ms=0]"
        return (f"[sim deltas={self.deltas} delta_bytes={self.delta_bytes} gap_ms={self.gap_ms:g} "
                f"ttft_ms={self.ttft_ms:g}{f' mode={mode}' if mode else ''}]")


def _hostport(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80)


def anthropic_target(name: str, url: str, key: str | None, shape: Shape, stream: bool) -> Target:
    host, port = _hostport(url)
    body = json.dumps({"model": MODEL, "max_tokens": 1024, "stream": stream,
                       "messages": [{"role": "user", "content": "bench " + shape.directive(stream)}]}).encode()
    headers = {"anthropic-version": "2023-06-01"}
    if key:
        headers["x-api-key"] = key
    delta, end, error = ANTHROPIC_MARKERS
    return Target(name, host, port, build_request("POST", host, port, "/v1/messages", headers, body),
                  delta, end, error, stream)


def openai_target(name: str, url: str, key: str, shape: Shape) -> Target:
    host, port = _hostport(url)
    body = json.dumps({"model": MODEL, "max_tokens": 1024, "stream": True,
                       "messages": [{"role": "user", "content": "bench " + shape.directive(True)}]}).encode()
    delta, end, error = OPENAI_MARKERS
    return Target(name, host, port, build_request("POST", host, port, "/v1/chat/completions",
                                                  {"authorization": f"Bearer {key}"}, body),
                  delta, end, error, True)


def claude_code_body(shape: Shape, max_tokens: int = claude_code.MAX_TOKENS,
                     model: str = claude_code.MODEL) -> bytes:
    """The `claude-code` scenario's request body (bench/claude_code.py), the paced
    stream's directive in its last user turn."""
    return claude_code.encode(claude_code.body(shape.directive(True, mode="text"), max_tokens=max_tokens,
                                               model=model))


def claude_code_target(name: str, url: str, key: str | None, body: bytes) -> Target:
    host, port = _hostport(url)
    headers = dict(claude_code.HEADERS)
    if key:
        headers["x-api-key"] = key
    delta, end, error = CLAUDE_CODE_MARKERS
    return Target(name, host, port, build_request("POST", host, port, claude_code.PATH, headers, body),
                  delta, end, error, True)


def targets(scenario: str, shape: Shape, direct_url: str, gateway_url: str, gateway_key: str,
            peer_url: str | None = None, peer_key: str | None = None, floor_url: str | None = None, *,
            cc_max_tokens: int = claude_code.MAX_TOKENS, cc_model: str = claude_code.MODEL) -> list[Target]:
    """The arms of a scenario, direct first. The OpenAI scenario's direct arm is the
    Anthropic stream straight from the simulator (which speaks only Anthropic); the
    floor relays Anthropic bytes only, so it has no arm there."""
    if scenario == "claude-code":
        body = claude_code_body(shape, cc_max_tokens, cc_model)
        arms = [claude_code_target("direct", direct_url, None, body),
                claude_code_target("gateway", gateway_url, gateway_key, body)]
        if peer_url:
            arms.append(claude_code_target("peer", peer_url, peer_key, body))
        if floor_url:
            arms.append(claude_code_target("floor", floor_url, None, body))
        return arms
    stream = scenario != "nonstream"
    arms = [anthropic_target("direct", direct_url, None, shape, stream)]
    if scenario == "stream-openai":
        arms.append(openai_target("gateway", gateway_url, gateway_key, shape))
        if peer_url:
            arms.append(openai_target("peer", peer_url, peer_key or "", shape))
    else:
        arms.append(anthropic_target("gateway", gateway_url, gateway_key, shape, stream))
        if peer_url:
            arms.append(anthropic_target("peer", peer_url, peer_key, shape, stream))
        if floor_url:
            arms.append(anthropic_target("floor", floor_url, None, shape, stream))
    return arms
