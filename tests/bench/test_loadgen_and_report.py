"""The bench harness: its pure metrics, the claude-code scenario's request, and --quick
smoke runs (which assert that the harness works and reports zero errors, never a timing)."""

import json
import subprocess
import sys
from pathlib import Path

import trio

from bench import claude_code, scenarios
from bench.loadgen import Result
from bench.metrics import Phase, Stats, capacity, flag_simulator_ceiling, percentile, summarize

ROOT = Path(__file__).resolve().parents[2]


def test_percentile():
    assert percentile([], 50) is None
    assert percentile([5.0], 99) == 5.0
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile(list(range(101)), 99) == 99
    assert percentile([3, 1, 2], 0) == 1 and percentile([3, 1, 2], 100) == 3


def result(start, first, end, deltas, gaps, error=None):
    return Result(start=start, status=200, first_delta=first, end=end, deltas=deltas, gaps=gaps, error=error)


def test_summarize_counts_stalls_errors_and_cpu():
    phase = Phase("stream", "gateway", 2, relay_cpu=0.0007, relay_rss_peak=10 * 2**20,
                  relay_rss_idle=9 * 2**20, loadgen_cpu=1.9)
    phase.add_round([
        result(0.0, 0.010, 1.0, 4, [0.02, 0.02, 0.05]),
        result(0.0, 0.030, 1.0, 3, [0.02, 0.02], error="stream ended without its end marker"),
    ], (0.0, 2.0), 2.0)
    stats = summarize(phase, deltas_per_stream=4, tokens_per_delta=4, gap_s=0.02)
    assert stats.requests == 2 and stats.errors == 1 and stats.error_sample.startswith("stream ended")
    assert stats.ttft_p50_ms == 10.0 and stats.stalls == 1
    assert stats.deltas == 7 and stats.expected_deltas == 8
    assert stats.tokens_per_s == 14.0 and stats.cpu_us_per_event == 100.0 and stats.cpu_ms_per_request == 0.35
    assert stats.rss_kib_per_stream == 512.0 and "loadgen-saturated" in stats.flags
    assert "harness-saturated" not in stats.flags  # no simulator figure: nothing to add up


def stats(arm, load, requests, rps, deltas=None, errors=0, stalls=0):
    return Stats("stream", arm, load, "closed", requests, errors, None, 1, 1, 1, 1, 1, 1, 1.0, rps,
                 deltas if deltas is not None else requests * 64, requests * 64, stalls, None, None, None, None, 0.1,
                 None, [])


def test_capacity_is_highest_clean_load_before_the_first_failure():
    rows = [stats("gateway", 1, 10, 1), stats("gateway", 8, 80, 8), stats("gateway", 32, 320, 30, stalls=2),
            stats("gateway", 128, 1280, 100)]
    assert capacity(rows) == 8
    assert capacity([stats("gateway", 1, 10, 1, deltas=10 * 64 - 1)]) is None


def test_simulator_ceiling_flag_marks_rows_near_the_best_direct_throughput():
    rows = [stats("direct", 1, 10, 1.0), stats("gateway", 1, 10, 1.0), stats("direct", 8, 80, 8.0),
            stats("gateway", 8, 60, 6.0), stats("direct", 32, 100, 10.0), stats("gateway", 32, 95, 9.5)]
    for r, tokens in zip(rows, (100, 100, 800, 600, 1000, 950)):
        r.tokens_per_s = tokens
    flag_simulator_ceiling(rows)
    assert [bool(r.flags) for r in rows] == [False, False, False, False, True, True]


def test_quick_bench_runs_clean(tmp_path):
    run = subprocess.run([sys.executable, "-m", "bench", "--quick", "--floor", "--out", str(tmp_path), "--label",
                          "smoke"],
                         cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "### stream" in run.stdout and "### stream-openai" in run.stdout and "### nonstream" in run.stdout
    data = json.loads((tmp_path / "bench-smoke-quick.json").read_text())
    cells = {(r["scenario"], r["arm"], r["load"]) for r in data["results"]}
    arms = {"stream": ("direct", "gateway", "floor"), "stream-openai": ("direct", "gateway"),
            "nonstream": ("direct", "gateway", "floor")}
    assert cells == {(s, a, c) for s, names in arms.items() for a in names for c in (1, 8, 32)}
    assert all(r["errors"] == 0 and r["requests"] > 0 for r in data["results"])
    streams = [r for r in data["results"] if r["scenario"] != "nonstream"]
    assert all(r["deltas"] == r["expected_deltas"] for r in streams)
    relays = [r for r in data["results"] if r["arm"] in ("gateway", "floor")]
    assert all(r["cpu_us_per_event"] is not None for r in relays if r["scenario"] != "nonstream")
    assert all(r["cpu_ms_per_request"] is not None for r in relays)
    assert data["meta"]["machine"]


def test_delta_times_rebuild_receive_times():
    assert result(0.0, 0.5, 1.0, 3, [0.25, 0.0]).delta_times() == [0.5, 0.75, 0.75]
    assert result(0.0, None, 1.0, 0, []).delta_times() == []


def test_warmup_requests_and_deltas_outside_the_window_are_not_measured():
    """Latencies come from requests sent after the ramp; rates from what happened inside
    the window; CPU per event and delivery from everything."""
    warm = result(0.0, 0.100, 1.1, 4, [0.3, 0.3, 0.35])      # sent in the ramp: deltas at .1 .4 .7 1.05
    steady = result(1.0, 1.005, 2.5, 4, [0.5, 0.5, 0.49])    # deltas at 1.005 1.505 2.005 2.495
    warm.warmup = True
    phase = Phase("stream", "gateway", 2, relay_cpu=0.0008)
    phase.add_round([warm, steady], (1.0, 2.0), 2.6)
    stats = summarize(phase, deltas_per_stream=4, tokens_per_delta=10, gap_s=0.02)
    assert stats.ttft_p50_ms == 5.0                    # the warm-up request's 100 ms is not in it
    assert phase.window_deltas == 3                     # 1.05, 1.005 and 1.505 fall in [1, 2]
    assert stats.tokens_per_s == 30.0 and stats.requests_per_s == 1.0   # the warm-up one ended inside
    assert stats.deltas == 8 and stats.cpu_us_per_event == 100.0


def test_claude_code_body_has_claude_codes_shape_and_size():
    directive = scenarios.Shape().directive(True, mode="text")
    raw = scenarios.claude_code_body(scenarios.Shape())
    body = json.loads(raw)
    assert 115_000 <= len(raw) <= 125_000
    assert raw == scenarios.claude_code_body(scenarios.Shape())  # seeded: the same bytes every time
    assert body["model"] == "claude-sonnet-4-5-20250929" and body["stream"] is True
    assert body["max_tokens"] == 32000 and body["thinking"] == {"type": "enabled", "budget_tokens": 31999}
    assert len(body["tools"]) == 24 and len({t["name"] for t in body["tools"]}) == 24
    assert all(t["input_schema"]["type"] == "object" and len(t["description"]) >= 200 for t in body["tools"]
               if not t["name"].startswith("mcp__"))
    assert sum(len(t["description"]) for t in body["tools"]) > 40_000
    assert 2 <= len(body["system"]) <= 3
    assert sum(b.get("cache_control") == {"type": "ephemeral"} for b in body["system"]) >= 2
    assert json.loads(body["metadata"]["user_id"])["session_id"] and body["context_management"]["edits"]
    messages = body["messages"]
    assert 30 <= len(messages) <= 40
    assert [m["role"] for m in messages] == ["user", "assistant"] * (len(messages) // 2) + ["user"]
    kinds = {b["type"] for m in messages for b in m["content"]}
    assert kinds == {"text", "thinking", "tool_use", "tool_result"}
    for assistant, user in zip(messages[1::2], messages[2::2]):   # a valid tool loop with thinking on
        assert assistant["content"][0]["type"] == "thinking" and assistant["content"][0]["signature"]
        calls = [b["id"] for b in assistant["content"] if b["type"] == "tool_use"]
        assert calls and [b["tool_use_id"] for b in user["content"] if b["type"] == "tool_result"] == calls
    breakpoints = raw.count(b'"cache_control"')
    assert breakpoints <= 4                                      # the API's limit
    assert raw.count(b"[sim ") == 1 and messages[-1]["content"][-1]["text"].count(directive) == 1

    small = json.loads(scenarios.claude_code_body(scenarios.Shape(), max_tokens=8192))
    assert small["max_tokens"] == 8192 and small["thinking"]["budget_tokens"] == 8191
    try:
        claude_code.body(directive, max_tokens=1024)
    except ValueError:
        pass
    else:
        raise AssertionError("a thinking budget under 1024 was accepted")


def test_claude_code_requests_are_what_claude_code_sends():
    target = scenarios.targets("claude-code", scenarios.Shape(), "http://127.0.0.1:1", "http://127.0.0.1:2",
                               "sk-bench", cc_max_tokens=8192)[1]
    head, _, body = target.request.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /v1/messages?beta=true HTTP/1.1"
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert headers["x-app"] == "cli" and headers["x-api-key"] == "sk-bench"
    assert headers["user-agent"].startswith("claude-cli/") and headers["accept"] == "application/json"
    assert "context-management-2025-06-27" in headers["anthropic-beta"].split(",")
    assert int(headers["Content-Length"]) == len(body) and json.loads(body)["max_tokens"] == 8192


def test_claude_code_bench_runs_clean(tmp_path):
    """The scenario end to end at one load, as Claude Code sends it (max_tokens 32000 with
    a budget of 31999, above Sonnet 4.5's cap: the gateway clamps it; the simulator checks
    the conversation's thinking signatures)."""
    run = subprocess.run([sys.executable, "-m", "bench", "--quick", "--scenario", "claude-code", "--concurrency",
                          "4", "--out", str(tmp_path), "--label", "cc"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    data = json.loads((tmp_path / "bench-cc-quick.json").read_text())
    assert {r["arm"] for r in data["results"]} == {"direct", "gateway"}
    assert all(r["errors"] == 0 and r["requests"] > 0 and r["deltas"] == r["expected_deltas"]
               for r in data["results"])
    assert all(r["cpu_ms_per_request"] is not None for r in data["results"] if r["arm"] == "gateway")


def test_chunked_reader_counts_a_marker_once_when_it_ends_inside_the_carried_tail():
    """A delta marker shorter than the longest marker can sit wholly in the bytes carried
    over from one read to the next: it is counted with the read it arrived in, once."""
    from bench.loadgen import Connection, Target

    target = Target("t", "127.0.0.1", 1, b"", *scenarios.CLAUDE_CODE_MARKERS, True)
    reads = [b'data: {"delta":{"type":"text_delta"', b',"text":"ab"}}\n\nevent: message_stop\r\n0\r\n\r\n']

    class Replay(Connection):
        async def _read(self):
            return reads.pop(0)

    result = Result(start=0.0)
    trio.run(Replay(target, memoryview(bytearray(16)))._chunked, b"", result)
    assert result.deltas == 1 and result.ok
