"""Bench figures from raw results. Pure: no I/O.

Definitions (README "Benchmarks"):
- Closed loop: users start spread over a ramp (default one stream's length); requests
  sent during it are warm-up: their deltas count towards CPU per event and delivery,
  but latencies and rates come from the steady state after it.
- TTFT: request sent (or due, in open loop) -> first content delta received.
- inter-event gap: time between consecutive content deltas as received (deltas in one
  read count as 0 apart).
- end-to-end: request sent -> last byte received.
- stall: a gap longer than twice the paced interval.
- output tokens/s: content deltas received within the measurement window x tokens per
  delta / the window's length (closed loop: ramp end -> ramp end + duration; open loop:
  first request -> last completion). Requests/s likewise, from completions.
- CPU per relayed event: gateway CPU seconds in the phase / content deltas it relayed.
- CPU per request: gateway CPU seconds in the phase / requests sent in it (warm-up,
  failed and streamed ones included).
- RSS per open stream: (peak RSS in the phase - idle RSS) / concurrent streams.
- stream capacity: the highest concurrency at which an arm delivered every expected
  delta, with no stall and errors under 0.1%.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Iterable, Sequence

from .loadgen import Result

SATURATED = 0.85  # share of one core at which a harness process is called saturated


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolation percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 3)


@dataclass
class Phase:
    """Raw material of one (scenario, arm, load) cell, possibly over several rounds."""

    scenario: str
    arm: str
    load: int                       # concurrency (closed loop) or requests/s (open loop)
    mode: str = "closed"
    results: list[Result] = field(default_factory=list)
    wall: float = 0.0               # measurement windows, summed over rounds
    elapsed: float = 0.0            # whole phases, summed over rounds (for CPU shares)
    window_deltas: int = 0
    window_completions: int = 0
    relay_cpu: float | None = None          # the measured relay process: the gateway, or the floor
    relay_rss_peak: int | None = None
    relay_rss_idle: int | None = None
    loadgen_cpu: float = 0.0
    simulator_cpu: float | None = None


    def add_round(self, results: list[Result], window: tuple[float, float], elapsed: float) -> None:
        start, end = window
        self.results.extend(results)
        self.wall += end - start
        self.elapsed += elapsed
        self.window_deltas += sum(1 for r in results for t in r.delta_times() if start <= t <= end)
        self.window_completions += sum(1 for r in results if r.ok and start <= r.end <= end)


@dataclass
class Stats:
    scenario: str
    arm: str
    load: int
    mode: str
    requests: int
    errors: int
    error_sample: str | None
    ttft_p50_ms: float | None
    ttft_p99_ms: float | None
    gap_p50_ms: float | None
    gap_p99_ms: float | None
    e2e_p50_ms: float | None
    e2e_p99_ms: float | None
    tokens_per_s: float
    requests_per_s: float
    deltas: int
    expected_deltas: int
    stalls: int
    cpu_us_per_event: float | None
    cpu_ms_per_request: float | None
    rss_mib: float | None
    rss_kib_per_stream: float | None
    loadgen_core: float
    simulator_core: float | None
    flags: list[str]

    def as_dict(self) -> dict:
        return asdict(self)


def summarize(phase: Phase, *, deltas_per_stream: int, tokens_per_delta: int, gap_s: float,
              harness_cores: int = 1) -> Stats:
    results = phase.results
    ok = [r for r in results if r.ok]
    measured = [r for r in ok if not r.warmup]
    errors = [r for r in results if not r.ok]
    ttfts = [r.first_delta - r.start for r in measured if r.first_delta is not None]
    gaps = [g for r in measured for g in r.gaps]
    delivered = sum(r.deltas for r in results)
    stalls = sum(1 for g in gaps if gap_s and g > 2 * gap_s)
    wall = phase.wall or 1e-9
    elapsed = phase.elapsed or wall
    flags: list[str] = []
    loadgen_core = phase.loadgen_cpu / elapsed
    simulator_core = None if phase.simulator_cpu is None else phase.simulator_cpu / elapsed
    if loadgen_core >= SATURATED:
        flags.append("loadgen-saturated")
    if simulator_core is not None and simulator_core >= SATURATED:
        flags.append("simulator-saturated")
    if simulator_core is not None and loadgen_core + simulator_core >= SATURATED * harness_cores:
        flags.append("harness-saturated")  # the simulator and load generator share their cores
    tokens_per_s = phase.window_deltas * tokens_per_delta / wall
    cpu = None
    if phase.relay_cpu is not None and delivered:
        cpu = round(phase.relay_cpu / delivered * 1e6, 2)
    cpu_request = None
    if phase.relay_cpu is not None and results:
        cpu_request = round(phase.relay_cpu / len(results) * 1e3, 3)
    rss = None if phase.relay_rss_peak is None else round(phase.relay_rss_peak / 2**20, 1)
    per_stream = None
    if phase.relay_rss_peak is not None and phase.relay_rss_idle is not None and phase.mode == "closed" \
            and deltas_per_stream > 1:  # streams only: a tiny request is not "open" long enough to count
        per_stream = round(max(0, phase.relay_rss_peak - phase.relay_rss_idle) / phase.load / 1024, 1)
    return Stats(
        scenario=phase.scenario, arm=phase.arm, load=phase.load, mode=phase.mode, requests=len(results),
        errors=len(errors), error_sample=errors[0].error if errors else None,
        ttft_p50_ms=ms(percentile(ttfts, 50)), ttft_p99_ms=ms(percentile(ttfts, 99)),
        gap_p50_ms=ms(percentile(gaps, 50)), gap_p99_ms=ms(percentile(gaps, 99)),
        e2e_p50_ms=ms(percentile([r.end - r.start for r in measured], 50)),
        e2e_p99_ms=ms(percentile([r.end - r.start for r in measured], 99)),
        tokens_per_s=round(tokens_per_s, 1), requests_per_s=round(phase.window_completions / wall, 1),
        deltas=delivered, expected_deltas=len(results) * deltas_per_stream, stalls=stalls,
        cpu_us_per_event=cpu, cpu_ms_per_request=cpu_request, rss_mib=rss, rss_kib_per_stream=per_stream,
        loadgen_core=round(loadgen_core, 2),
        simulator_core=None if simulator_core is None else round(simulator_core, 2), flags=flags)


def flag_simulator_ceiling(stats: Sequence[Stats]) -> None:
    """Mark rows whose throughput is within 10% of the simulator's own ceiling: the best
    the direct arm (simulator and load generator alone) reached in that scenario. There
    the harness, not the gateway, may be what sets the pace."""
    for scenario in {s.scenario for s in stats}:
        rows = [s for s in stats if s.scenario == scenario]
        streaming = scenario != "nonstream"
        rate = (lambda s: s.tokens_per_s) if streaming else (lambda s: s.requests_per_s)  # noqa: E731
        ceiling = max((rate(s) for s in rows if s.arm == "direct"), default=0)
        for s in rows:
            if ceiling and rate(s) >= 0.9 * ceiling and "at-simulator-ceiling" not in s.flags:
                s.flags.append("at-simulator-ceiling")


def capacity(stats: Iterable[Stats]) -> int | None:
    """Highest load with every delta delivered, no stall, errors < 0.1% (closed loop)."""
    best = None
    for s in sorted(stats, key=lambda s: s.load):
        if s.mode != "closed" or not s.requests:
            continue
        if s.deltas >= s.expected_deltas and s.stalls == 0 and s.errors / s.requests < 0.001:
            best = s.load
        else:
            break
    return best


def added(gateway: Stats, direct: Stats, field_name: str) -> float | None:
    a, b = getattr(gateway, field_name), getattr(direct, field_name)
    return None if a is None or b is None else round(a - b, 3)
