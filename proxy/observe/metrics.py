"""Prometheus metrics for one gateway, in its own registry (no process-wide state):
requests, latencies, open streams, tokens, spend, upstream attempts and channel states.

Everything a request contributes is recorded once, from its ``Outcome`` (the hook in
metering and the relay's refusals), plus the upstream router's attempts; gauges that
describe the present (open streams, holds, channel states) are read at scrape time.
"""

from __future__ import annotations

from typing import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from ..outcome import LANES, Outcome

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class _Present:
    """A collector for what is true now: asked at each scrape."""

    def __init__(self, read: Callable[[], Iterable[GaugeMetricFamily]]) -> None:
        self._read = read

    def collect(self):
        yield from self._read()


class _Children:
    """A labelled metric's children, each looked up in the metric once (``labels()`` takes
    a lock and rebuilds its key on every call): the per-request recording goes through here.
    Label values are strings already, as ``labels()`` would make them."""

    __slots__ = ("metric", "children")

    def __init__(self, metric) -> None:
        self.metric = metric
        self.children: dict[tuple[str, ...], object] = {}

    def __call__(self, *values: str):
        child = self.children.get(values)
        if child is None:
            child = self.children[values] = self.metric.labels(*values)
        return child


class Metrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("cheaplm_requests", "Requests answered, by endpoint, model, status and channel",
                                ("endpoint", "model", "status", "channel"), registry=registry)
        self.ttft = Histogram("cheaplm_ttft_seconds", "Time to the first content token",
                              ("endpoint", "model"), buckets=LATENCY_BUCKETS, registry=registry)
        self.duration = Histogram("cheaplm_request_duration_seconds", "Request duration, start to settlement",
                                  ("endpoint", "model"), buckets=LATENCY_BUCKETS, registry=registry)
        self.tokens = Counter("cheaplm_tokens", "Tokens charged, by price lane and model", ("lane", "model"),
                              registry=registry)
        self.spend = Counter("cheaplm_spend_micro_usd", "Micro-USD charged, by model", ("model",),
                             registry=registry)
        self.partial = Counter("cheaplm_partial_charges", "Requests charged for part of an answer",
                               ("endpoint", "error_type"), registry=registry)
        self.attempts = Counter("cheaplm_upstream_attempts", "Upstream attempts by channel and outcome",
                                ("channel", "outcome"), registry=registry)
        self.failovers = Counter("cheaplm_upstream_failovers", "Requests served after another channel failed",
                                 ("channel",), registry=registry)
        self.ledger_latency = Histogram("cheaplm_ledger_batch_seconds", "Ledger write batch latency",
                                        buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
                                        registry=registry)
        self._present: dict[str, Callable[[], Iterable[GaugeMetricFamily]]] = {}
        self._requests, self._ttft, self._duration, self._tokens, self._spend, self._partial, self._attempts, \
            self._failovers = map(_Children, (self.requests, self.ttft, self.duration, self.tokens, self.spend,
                                              self.partial, self.attempts, self.failovers))
        registry.register(_Present(self._collect_present))

    def watch(self, name: str, read: Callable[[], Iterable[GaugeMetricFamily]]) -> None:
        """Gauges read at scrape time (open streams, holds, channel states), once per name."""
        self._present[name] = read

    def _collect_present(self) -> Iterable[GaugeMetricFamily]:
        for read in self._present.values():
            yield from read()

    def record(self, outcome: Outcome) -> None:
        model = outcome.model or ""
        self._requests(outcome.endpoint, model, str(outcome.status), outcome.channel or "").inc()
        if outcome.ttft_ms is not None:
            self._ttft(outcome.endpoint, model).observe(outcome.ttft_ms / 1000)
        if outcome.duration_ms is not None:
            self._duration(outcome.endpoint, model).observe(outcome.duration_ms / 1000)
        for lane in LANES:
            tokens = getattr(outcome, lane)
            if tokens:
                self._tokens(lane, model).inc(tokens)
        if outcome.cost:
            self._spend(model).inc(outcome.cost)
        if outcome.partial:
            self._partial(outcome.endpoint, outcome.error_type or "").inc()
        if outcome.attempts > 1 and outcome.channel:
            self._failovers(outcome.channel).inc()

    def attempt(self, channel: str, outcome: str) -> None:
        self._attempts(channel, outcome).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


def gauge(name: str, documentation: str, labels: tuple[str, ...],
          values: Iterable[tuple[tuple[str, ...], float]]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=labels)
    for label_values, value in values:
        family.add_metric(label_values, value)
    return family
