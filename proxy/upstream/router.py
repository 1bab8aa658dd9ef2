"""Several upstream channels behind the one ``Upstream`` protocol: choice by priority,
weight and prompt-cache affinity; failover before the first byte; cooldowns and
circuits (``health.py``).

A request goes to the healthy channels of the lowest priority that serve its model,
in weighted random order (a channel whose prompt prefix was served before comes first,
so the upstream's prompt cache stays warm); then to the next priority. It moves on
only while nothing has gone to the client: on a connect error, a first-byte timeout,
or a 429, 529, 500, 502, 503 or 504, within ``max_attempts`` and ``deadline``. Once a
channel answers 200 the request is committed to it; a 4xx other than 401/403 is the
request's own fault and goes back as it is. A 401/403 disables the channel.
A 429/529 rests the channel that said it, and only that one. A 5xx counts against a
channel once the request's fate is known: not at all when every channel tried answered
the request with the same 5xx (the request's doing, not theirs: ``_settle``), and a
request failing again counts once in a channel's run of failures (``health.py``).

The relay sees one response, with the channel that served it and the attempts it took.
The routing state (health, affinity) sits behind ``RoutingState`` so several nodes can
share it later; here it lives in the process.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
from collections import OrderedDict
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import AsyncIterator, Callable, Iterator, Protocol

import orjson
import trio

from .. import errors
from .base import Upstream, UpstreamRequest, UpstreamResponse, UpstreamStream
from .health import ChannelHealth, HealthPolicy
from .status import CREDENTIAL_REFUSED, RETRYABLE, misanswered, upstream_error

log = logging.getLogger("cheaplm.upstream")

RATE_LIMITED = frozenset({429, 529})


@dataclass(frozen=True)
class RoutingPolicy:
    max_attempts: int = 3
    deadline: float = 30.0   # no new attempt starts this long after the first
    affinity: bool = True
    health: HealthPolicy = field(default_factory=HealthPolicy)


@dataclass
class Channel:
    name: str
    upstream: Upstream
    priority: int = 0
    weight: float = 1.0
    models: frozenset[str] | None = None  # catalog model ids; None: every model
    max_concurrency: int | None = None
    in_flight: int = 0
    requests: int = 0
    failures: int = 0
    rested_by: int | None = None  # the status (429 or 529) that rests it, while it rests for that

    def serves(self, model_id: str) -> bool:
        return self.models is None or model_id in self.models

    def has_room(self) -> bool:
        return self.max_concurrency is None or self.in_flight < self.max_concurrency


class RoutingState(Protocol):
    """What routing remembers between requests (in process here; shared across nodes later)."""

    def health(self, channel: str) -> ChannelHealth: ...
    def sticky(self, prefix: str) -> str | None: ...
    def stick(self, prefix: str, channel: str) -> None: ...


class LocalRoutingState:
    AFFINITY_ENTRIES = 100_000

    def __init__(self, policy: HealthPolicy) -> None:
        self._policy = policy
        self._health: dict[str, ChannelHealth] = {}
        self._affinity: OrderedDict[str, str] = OrderedDict()

    def health(self, channel: str) -> ChannelHealth:
        found = self._health.get(channel)
        if found is None:
            found = self._health[channel] = ChannelHealth(self._policy)
        return found

    def sticky(self, prefix: str) -> str | None:
        channel = self._affinity.get(prefix)
        if channel is not None:
            self._affinity.move_to_end(prefix)
        return channel

    def stick(self, prefix: str, channel: str) -> None:
        self._affinity[prefix] = channel
        self._affinity.move_to_end(prefix)
        while len(self._affinity) > self.AFFINITY_ENTRIES:
            self._affinity.popitem(last=False)


def prompt_prefix(body: dict | None) -> str | None:
    """What identifies a conversation's cacheable prefix: its system prompt and first
    message (a hash; None without messages). ``cache_control`` markers are left out:
    clients move them to the newest message each turn, and the prefix stays the same."""
    if not body or not isinstance(body.get("messages"), list) or not body["messages"]:
        return None
    try:
        parts = _unmarked([body.get("system"), body["messages"][0]])
        encoded = orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)
    except (TypeError, RecursionError):  # nested deeper than orjson writes or Python recurses: no affinity
        return None
    return hashlib.blake2b(encoded, digest_size=16).hexdigest()


def _unmarked(value):
    if isinstance(value, dict):
        return {k: _unmarked(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [_unmarked(v) for v in value]
    return value


def weighted_order(channels: list[Channel], rng: random.Random) -> list[Channel]:
    """A weighted random permutation (each next pick proportional to weight)."""
    keyed = [(rng.random() ** (1.0 / c.weight), c) for c in channels if c.weight > 0]
    return [c for _, c in sorted(keyed, key=lambda pair: pair[0], reverse=True)]


class Attempts:
    """One request's way through the channels: what was tried and what they said."""

    def __init__(self) -> None:
        self.count = 0
        self.errors: list[tuple[errors.GatewayError, float | None]] = []  # (error, retry-after)
        # The channels' 5xx answers, judged once the request's fate is known (Router._settle):
        # (its health, the status, whether the attempt was a half-open circuit's probe).
        self.server_errors: list[tuple[ChannelHealth, int, bool]] = []

    def final_error(self) -> errors.GatewayError:
        """The most informative answer when no channel served: a rate limit with the
        shortest retry-after, else the last failure."""
        limited = [(after if after is not None else float("inf"), e) for e, after in self.errors
                   if e.status in RATE_LIMITED]
        if limited:
            return min(limited, key=lambda pair: pair[0])[1]
        return self.errors[-1][0]


def _ignore(channel: str, outcome: str) -> None:
    return None


def _attempt_outcome(status: int) -> str:
    if status == 200:
        return "ok"
    if status in CREDENTIAL_REFUSED:
        return "credential_refused"
    if status in RATE_LIMITED:
        return "rate_limited"
    return "server_error" if status >= 500 or misanswered(status) else "client_error"


def _own_fault(error: errors.GatewayError) -> bool:
    """A refusal raised before anything was sent (the body cannot be written for this
    channel's model id: a 400): the request's fault, no failure of the channel."""
    return error.status < 500


def _retry_after(headers: tuple[tuple[str, str], ...]) -> float | None:
    """The seconds a channel asks to rest (``retry-after-ms``, else ``retry-after``), or
    None when it says nothing usable (absent, an HTTP date, negative, NaN, infinite): the
    default cooldown then, never none at all."""
    found: dict[str, float] = {}
    for name, value in headers:
        lowered = name.lower()
        if lowered not in ("retry-after-ms", "retry-after") or lowered in found:
            continue
        try:
            seconds = float(value) / (1000 if lowered == "retry-after-ms" else 1)
        except ValueError:
            continue
        if math.isfinite(seconds) and seconds >= 0:
            found[lowered] = seconds
    return found.get("retry-after-ms", found.get("retry-after"))


class Router:
    def __init__(self, channels: list[Channel], policy: RoutingPolicy, state: RoutingState | None = None,
                 rng: random.Random | None = None) -> None:
        if not channels:
            raise ValueError("a router needs at least one channel")
        self.channels = channels
        self.policy = policy
        self.state = state if state is not None else LocalRoutingState(policy.health)
        self._rng = rng or random.Random()
        self.label = channels[0].upstream.label if len(channels) == 1 else f"{len(channels)} channels"
        self.observe: Callable[[str, str], None] = _ignore  # (channel, outcome) per attempt: the metrics
        self.idle_timeout = max(c.upstream.idle_timeout for c in channels)

    # -- choice ----------------------------------------------------------------------------------

    def plan(self, request: UpstreamRequest, now: float) -> list[Channel]:
        """The channels to try, in order: by priority, weighted random inside one, the
        conversation's sticky channel first. Resting channels are left out."""
        usable = [c for c in self.channels
                  if c.serves(request.model.id) and c.has_room() and self.state.health(c.name).available(now)]
        order: list[Channel] = []
        for priority in sorted({c.priority for c in usable}):
            order += weighted_order([c for c in usable if c.priority == priority], self._rng)
        prefix = prompt_prefix(request.payload) if self.policy.affinity and len(order) > 1 else None
        if prefix is not None:
            sticky = self.state.sticky(prefix)
            first = [c for c in order if c.name == sticky and c.priority == order[0].priority]
            order = first + [c for c in order if c not in first]
            request.affinity = prefix
        return order

    def nothing_available(self, request: UpstreamRequest, now: float) -> errors.GatewayError:
        """Every channel for this model is resting (or disabled): say when to come back."""
        serving = [c for c in self.channels if c.serves(request.model.id)]
        resting = [(until - now, c.rested_by) for c in serving
                   if (until := self.state.health(c.name).until(now)) is not None]
        waits = [wait for wait, _ in resting]
        if not waits:
            busy = any(not c.has_room() for c in serving)
            if busy:
                return errors.GatewayError(529, "Every upstream channel is at its concurrency limit",
                                           "overloaded_error", headers=(("retry-after", "1"),))
            return errors.GatewayError(502, "No upstream channel is available for this model", "api_error")
        seconds = str(max(1, int(min(waits) + 0.999)))
        if all(status == 429 for _, status in resting):  # the upstream's own rate limit: say it as one
            return errors.GatewayError(429, f"The upstream is rate limiting this gateway; retry in {seconds} s",
                                       "rate_limit_error", headers=(("retry-after", seconds),))
        return errors.GatewayError(529, f"Every upstream channel is resting; retry in {seconds} s",
                                   "overloaded_error", headers=(("retry-after", seconds),))

    # -- outcomes --------------------------------------------------------------------------------

    def _judge(self, channel: Channel, status: int, body: bytes, headers, attempts: Attempts) -> bool:
        """Record an answer's meaning for its channel; True when another channel should try."""
        health = self.state.health(channel.name)
        now = trio.current_time()
        self.observe(channel.name, _attempt_outcome(status))
        if status in CREDENTIAL_REFUSED:
            health.disable(f"upstream answered {status}: its credential was refused")
            log.error("upstream channel %s DISABLED: it answered HTTP %s (its credential was refused); "
                      "enable it again once fixed (cheaplm upstream enable %s)", channel.name, status, channel.name)
        elif status in RATE_LIMITED:
            health.rate_limited(now, _retry_after(headers))
            channel.rested_by = status
        elif status in RETRYABLE or misanswered(status):
            attempts.server_errors.append((health, status, health.probing))
            channel.rested_by = None
        else:
            health.succeeded()
            return False
        channel.failures += 1
        attempts.errors.append((upstream_error(status, body, headers), _retry_after(headers)))
        return True

    def _transport_failed(self, channel: Channel, error: errors.GatewayError, attempts: Attempts) -> None:
        self.observe(channel.name, "timeout" if error.status == 504 else "connect_error")
        self.state.health(channel.name).failed(trio.current_time())
        channel.rested_by = None
        channel.failures += 1
        attempts.errors.append((error, None))

    def _attempts(self, request: UpstreamRequest, attempts: Attempts) -> Iterator[tuple[Channel, ChannelHealth]]:
        """The channels to try in turn (at most ``max_attempts``, none started after the
        deadline), each counted as it begins; a GatewayError when none is available."""
        now = trio.current_time()
        order = self.plan(request, now)
        if not order:
            raise self.nothing_available(request, now)
        give_up = now + self.policy.deadline
        for channel in order[:self.policy.max_attempts]:
            if attempts.count and trio.current_time() >= give_up:
                return
            attempts.count += 1
            channel.requests += 1
            channel.in_flight += 1
            health = self.state.health(channel.name)
            health.begin(trio.current_time())
            yield channel, health

    def _settle(self, request: UpstreamRequest, attempts: Attempts, served: bool) -> None:
        """Count the channels' 5xx answers against them, now that the request's fate is
        known. A request that every channel tried answered with the same 5xx says more
        about the request than the channels (a prompt the upstream fails on): that counts
        against none, else one such prompt sent in a loop would open every circuit. Each
        failure counts as this request's (ChannelHealth.failed: a run of failures counts
        a request once)."""
        failures = attempts.server_errors
        if not failures:
            return
        if (not served and attempts.count >= 2 and len(failures) == attempts.count
                and len({status for _, status, _ in failures}) == 1):
            log.info("a request failed with HTTP %s on each of %s channels: not counted against them",
                     failures[0][1], attempts.count)
            return
        identity = hashlib.blake2b(request.body(), digest_size=16).hexdigest()
        now = trio.current_time()
        for health, _, probe in failures:
            health.failed(now, identity, probe)

    def _served(self, channel: Channel, request: UpstreamRequest, attempts: Attempts, answer) -> None:
        self._settle(request, attempts, served=True)
        answer.channel, answer.attempts = channel.name, attempts.count
        if request.affinity is not None:
            self.state.stick(request.affinity, channel.name)

    # -- the Upstream protocol -------------------------------------------------------------------

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        attempts = Attempts()
        for channel, health in self._attempts(request, attempts):
            try:
                try:
                    response = await channel.upstream.send(request)
                except errors.GatewayError as error:
                    if _own_fault(error):
                        raise
                    self._transport_failed(channel, error, attempts)
                    continue
                if self._judge(channel, response.status, response.body, response.headers, attempts):
                    continue
                self._served(channel, request, attempts, response)
                return response
            finally:
                self._end(channel, health)
        self._settle(request, attempts, served=False)
        raise attempts.final_error()

    @asynccontextmanager
    async def stream(self, request: UpstreamRequest) -> AsyncIterator[UpstreamStream]:
        attempts = Attempts()
        for channel, health in self._attempts(request, attempts):
            committed = False
            try:
                async with channel.upstream.stream(request) as answer:
                    if answer.status != 200:
                        body = await answer.read()
                        if self._judge(channel, answer.status, body, answer.headers, attempts):
                            continue
                        answer = _ReadError(answer, body)
                    else:
                        health.succeeded()
                        self.observe(channel.name, "ok")
                    self._served(channel, request, attempts, answer)
                    committed = True  # from here on nothing is retried: the client is being answered
                    yield answer
                    return
            except errors.GatewayError as error:
                if committed or _own_fault(error):
                    raise
                self._transport_failed(channel, error, attempts)
            finally:
                self._end(channel, health)
        self._settle(request, attempts, served=False)
        raise attempts.final_error()

    @staticmethod
    def _end(channel: Channel, health: ChannelHealth) -> None:
        """The attempt is over, whatever happened (a cancelled probe frees the circuit)."""
        channel.in_flight -= 1
        health.ended()

    def describe(self, now: float) -> list[dict]:
        """Each channel as an operator sees it (/health, ``cheaplm upstream list``): never its key."""
        rows = []
        for c in self.channels:
            health = self.state.health(c.name)
            until = health.until(now)
            rows.append({"name": c.name, "url": c.upstream.url_label, "priority": c.priority, "weight": c.weight,
                         "state": health.state(now), "resting_seconds": None if until is None else round(until - now, 3),
                         "disabled_reason": health.disabled_reason or None, "in_flight": c.in_flight,
                         "requests": c.requests, "failures": c.failures})
        return rows

    async def aclose(self) -> None:
        for channel in self.channels:
            with trio.CancelScope(shield=True):
                await channel.upstream.aclose()


class _ReadError:
    """A non-200 stream answer whose body the router already read (to judge it)."""

    def __init__(self, answer: UpstreamStream, body: bytes) -> None:
        self.status, self.headers, self._body = answer.status, answer.headers, body

    async def chunks(self) -> AsyncIterator[bytes]:
        yield self._body

    async def read(self) -> bytes:
        return self._body
