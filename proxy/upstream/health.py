"""A channel's health, as a pure state machine fed outcomes and the time.

- **healthy**: takes requests.
- **cooling** until T: it answered 429/529; it rests for its ``retry-after`` (or the
  default cooldown), then is healthy again.
- **open** until T: repeated failures (5xx, connect errors, timeouts) opened its
  circuit for a growing interval; when the interval is over, one request is let
  through as a probe (**probing**): success closes the circuit, failure opens it again
  for twice as long.
- **disabled**: its credential was refused (401/403) or the operator disabled it; only
  the operator enables it again.

No clock of its own and no I/O: the router passes ``now`` (trio's clock), so a test
drives it with plain numbers, and a shared store (Redis, for several nodes) can hold
the same fields.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HealthPolicy:
    cooldown: float = 30.0          # seconds a 429/529 rests a channel when it says nothing itself
    max_cooldown: float = 600.0     # the longest retry-after honoured
    failures_to_open: int = 3       # consecutive failures that open the circuit
    open_base: float = 5.0          # the first open interval; doubled each time a probe fails
    open_max: float = 300.0


@dataclass
class ChannelHealth:
    policy: HealthPolicy
    disabled: bool = False
    disabled_reason: str = ""
    cooling_until: float = 0.0
    open_until: float = 0.0
    opened: int = 0              # times the circuit opened in a row (the interval grows with it)
    failures: int = 0            # consecutive failures
    probing: bool = False        # the one request let through an open circuit is in flight
    failing_requests: tuple[str, ...] = ()  # the requests of the current run of failures (ids)

    def state(self, now: float) -> str:
        if self.disabled:
            return "disabled"
        if self.opened and (now < self.open_until or self.probing):
            return "probing" if self.probing else "open"
        if now < self.cooling_until:
            return "cooling"
        return "healthy"

    def available(self, now: float) -> bool:
        """Whether a request may go to this channel now (a half-open circuit takes one)."""
        if self.disabled or now < self.cooling_until:
            return False
        if self.opened:
            return now >= self.open_until and not self.probing
        return True

    def begin(self, now: float) -> None:
        """A request goes to this channel: through an open circuit it is the probe."""
        if self.opened and now >= self.open_until:
            self.probing = True

    def succeeded(self) -> None:
        self.failures = 0
        self.failing_requests = ()
        self.opened = 0
        self.probing = False

    def rate_limited(self, now: float, retry_after: float | None) -> None:
        """429/529: the channel is fine but full; it rests, its circuit untouched."""
        wait = self.policy.cooldown if retry_after is None else min(max(retry_after, 0.0), self.policy.max_cooldown)
        self.cooling_until = max(self.cooling_until, now + wait)
        self.probing = False

    def failed(self, now: float, request: str | None = None, probe: bool | None = None) -> None:
        """A 5xx, connect error or first-byte timeout. ``request`` identifies the request
        that failed: the same request failing again in a run of failures counts once
        (a channel's health follows its failure rate across distinct requests, so one
        prompt sent in a loop opens no circuit). ``probe``: whether the attempt was the
        probe of a half-open circuit (default: whether one is in flight now)."""
        probe = self.probing if probe is None else probe
        self.probing = False
        if request is not None and not probe:
            if request in self.failing_requests:
                return
            self.failing_requests = (*self.failing_requests, request)[-self.policy.failures_to_open:]
        self.failures += 1
        if probe or self.failures >= self.policy.failures_to_open:
            interval = min(self.policy.open_base * 2 ** self.opened, self.policy.open_max)
            self.opened += 1
            self.open_until = now + interval
            self.failures = 0
            self.failing_requests = ()

    def ended(self) -> None:
        """The request ended without saying anything of the channel (the client left)."""
        self.probing = False

    def disable(self, reason: str) -> None:
        self.disabled, self.disabled_reason = True, reason
        self.probing = False

    def enable(self) -> None:
        self.disabled, self.disabled_reason = False, ""
        self.failures = self.opened = 0
        self.failing_requests = ()
        self.probing = False
        self.cooling_until = self.open_until = 0.0

    def until(self, now: float) -> float | None:
        """When a resting channel takes requests again (None: healthy now, or disabled)."""
        if self.disabled:
            return None
        ends = [t for t in (self.cooling_until, self.open_until if self.opened else 0.0) if t > now]
        return max(ends) if ends else None
