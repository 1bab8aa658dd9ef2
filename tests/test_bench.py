"""The bench harness: its pure metrics, and a --quick smoke run (which asserts that the
harness works and reports zero errors, never a timing)."""

import json
import subprocess
import sys
from pathlib import Path


from bench.loadgen import Result
from bench.metrics import Phase, Stats, capacity, flag_simulator_ceiling, percentile, summarize

ROOT = Path(__file__).resolve().parent.parent


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
    assert stats.tokens_per_s == 14.0 and stats.cpu_us_per_event == 100.0
    assert stats.rss_kib_per_stream == 512.0 and "loadgen-saturated" in stats.flags
    assert "harness-saturated" not in stats.flags  # no simulator figure: nothing to add up


def stats(arm, load, requests, rps, deltas=None, errors=0, stalls=0):
    return Stats("stream", arm, load, "closed", requests, errors, None, 1, 1, 1, 1, 1, 1, 1.0, rps,
                 deltas if deltas is not None else requests * 64, requests * 64, stalls, None, None, None, 0.1,
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
