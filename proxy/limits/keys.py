"""Per-key rate limits: requests per minute, tokens per minute, concurrent requests.

Exact on one node: ``admit`` runs without awaiting, so under any concurrency a key with
``rpm=10`` admits exactly ten requests in any sixty seconds. Windows slide (a log of
admission times, not a fixed minute), so a burst at the edge of a minute cannot pass
twice the limit.

Tokens (input + output) cannot be known when a request starts: an admission reserves
its estimated prompt plus ``max_tokens`` (at most the whole budget, so a large request
may still run alone), and ``finish`` replaces the reservation with what the request
really used, as Anthropic's own limiter does. A request refused before the upstream was
contacted (its hold refused) is ``cancel``-ed and counts for nothing.

Spend caps per day and month are money, not rate: the store enforces them with the
hold, like the balance, so concurrency cannot overshoot them.

A key without limits costs one attribute check. The state lives in the process; this
is the in-process ``KeyLimiter`` of limits/base.py (nothing here awaits, so it is exact).
"""

from __future__ import annotations

from collections import deque
from datetime import datetime, timezone
from typing import Callable

from .. import errors
from storage.base import KeyLimits

__all__ = ["KeyLimits", "Limiter", "Admission", "WINDOW", "CONCURRENCY", "RPM", "TPM", "limit_headers", "refusal"]

WINDOW = 60.0


class _Window:
    """One key's recent admissions."""

    __slots__ = ("requests", "tokens", "token_sum", "in_flight")

    def __init__(self) -> None:
        self.requests: deque[float] = deque()
        self.tokens: deque[_Tokens] = deque()  # adjusted when a request finishes
        self.token_sum = 0
        self.in_flight = 0

    def prune(self, now: float) -> None:
        horizon = now - WINDOW
        while self.requests and self.requests[0] <= horizon:
            self.requests.popleft()
        while self.tokens and self.tokens[0].at <= horizon:
            entry = self.tokens.popleft()
            self.token_sum -= entry.tokens
            entry.live = False

    def idle(self) -> bool:
        return not self.requests and not self.tokens and not self.in_flight

    def tokens_free_in(self, needed: int, budget: int, now: float) -> float:
        """Seconds until ``needed`` more tokens fit the budget, as entries leave the window."""
        used = self.token_sum
        if used + needed <= budget:
            return 0.0
        for entry in self.tokens:
            used -= entry.tokens
            if used + needed <= budget:
                return max(entry.at + WINDOW - now, 0.0)
        return WINDOW


class _Tokens:
    """One admission's tokens; ``live`` while it is in the window (so that finishing or
    cancelling it costs O(1), however many requests the window holds)."""

    __slots__ = ("at", "tokens", "live")

    def __init__(self, at: float, tokens: int) -> None:
        self.at, self.tokens, self.live = at, tokens, True

    def replace(self, window: "_Window", tokens: int) -> None:
        """Count ``tokens`` instead, if it is still in the window."""
        if self.live:
            window.token_sum += tokens - self.tokens
            self.tokens = tokens


class Admission:
    """A request let through: it holds a concurrency slot and a token reservation until
    it finishes (or is cancelled), exactly once."""

    __slots__ = ("limiter", "key_id", "limits", "_request", "_tokens", "done", "headers")

    def __init__(self, limiter: "Limiter", key_id: int, limits: KeyLimits, request_at: float | None,
                 tokens_entry: "_Tokens | None", headers: list[tuple[bytes, bytes]]) -> None:
        self.limiter, self.key_id, self.limits = limiter, key_id, limits
        self._request, self._tokens = request_at, tokens_entry
        self.done = False
        self.headers = headers  # anthropic-ratelimit-* for the response

    def _close(self) -> "_Window | None":
        """The key's window, the first time only (an admission ends once)."""
        if self.done:
            return None
        self.done = True
        return self.limiter.windows.get(self.key_id)

    async def finish(self, tokens_used: int) -> None:
        """The request is over; what it really used replaces its token reservation."""
        window = self._close()
        if window is None:
            return
        if self._tokens is not None:
            self._tokens.replace(window, tokens_used)
        self.limiter.leave(self.key_id, window)

    async def cancel(self) -> None:
        """The request never reached the upstream: it counts for nothing."""
        window = self._close()
        if window is None:
            return
        if self._request is not None and window.requests and window.requests[-1] == self._request:
            window.requests.pop()
        elif self._request is not None and self._request in window.requests:
            window.requests.remove(self._request)
        entry = self._tokens
        if entry is not None:
            entry.replace(window, 0)
            if window.tokens and window.tokens[-1] is entry:  # (the usual case: cancelled at once)
                window.tokens.pop()
                entry.live = False
        self.limiter.leave(self.key_id, window)


class Limiter:
    """Every key's windows, in this process. ``clock``: monotonic seconds (trio's);
    ``wall``: Unix seconds, for the ``-reset`` headers."""

    def __init__(self, clock: Callable[[], float], wall: Callable[[], float]) -> None:
        self.clock, self.wall = clock, wall
        self.windows: dict[int, _Window] = {}

    async def admit(self, key_id: int, limits: KeyLimits, tokens: int) -> Admission | None:
        """Let a request through, or raise a 429 ``rate_limit_error`` saying when to retry.
        None for a key without limits."""
        if not limits.limited:
            return None
        now = self.clock()
        window = self.windows.get(key_id)
        if window is None:
            window = self.windows[key_id] = _Window()
        window.prune(now)
        reserve = min(tokens, limits.tpm) if limits.tpm else 0
        refusal = self._refusal(window, limits, reserve, now)
        if refusal is not None:
            if window.idle():
                del self.windows[key_id]
            raise refusal
        request_at = entry = None
        if limits.rpm:
            request_at = now
            window.requests.append(request_at)
        if limits.tpm:
            entry = _Tokens(now, reserve)
            window.tokens.append(entry)
            window.token_sum += reserve
        window.in_flight += 1
        return Admission(self, key_id, limits, request_at, entry, self._headers(window, limits, now))

    def leave(self, key_id: int, window: _Window) -> None:
        window.in_flight -= 1
        if window.idle() and self.windows.get(key_id) is window:
            del self.windows[key_id]

    def _refusal(self, window: _Window, limits: KeyLimits, reserve: int, now: float) -> errors.GatewayError | None:
        if limits.concurrency and window.in_flight >= limits.concurrency:
            return refusal(limits, CONCURRENCY, 1.0, self._headers(window, limits, now))
        if limits.rpm and len(window.requests) >= limits.rpm:
            return refusal(limits, RPM, window.requests[0] + WINDOW - now, self._headers(window, limits, now))
        if limits.tpm and window.token_sum + reserve > limits.tpm:
            wait = window.tokens_free_in(reserve, limits.tpm, now)
            return refusal(limits, TPM, wait, self._headers(window, limits, now))
        return None

    def _headers(self, window: _Window, limits: KeyLimits, now: float) -> list[tuple[bytes, bytes]]:
        wall = self.wall() - now  # (monotonic -> Unix)
        requests_reset = window.requests[0] + WINDOW if window.requests else now
        tokens_reset = window.tokens[-1].at + WINDOW if window.tokens else now
        return limit_headers(limits, len(window.requests), wall + requests_reset, window.token_sum, wall + tokens_reset)


CONCURRENCY, RPM, TPM = "concurrency", "rpm", "tpm"  # why a request was refused


def limit_headers(limits: KeyLimits, requests: int, requests_reset: float, tokens: int,
                  tokens_reset: float) -> list[tuple[bytes, bytes]]:
    """Anthropic's rate-limit headers: the limit, what remains (``requests`` and
    ``tokens`` are in the window), and when it is whole again (Unix seconds)."""
    headers: list[tuple[bytes, bytes]] = []
    if limits.rpm:
        headers += _triple(b"requests", limits.rpm, limits.rpm - requests, rfc3339(requests_reset))
    if limits.tpm:
        headers += _triple(b"tokens", limits.tpm, max(limits.tpm - tokens, 0), rfc3339(tokens_reset))
    return headers


def rfc3339(unix: float) -> bytes:
    moment = datetime.fromtimestamp(unix, timezone.utc).replace(microsecond=0)
    return moment.isoformat().replace("+00:00", "Z").encode()


def refusal(limits: KeyLimits, reason: str, wait: float, headers: list[tuple[bytes, bytes]]) -> errors.GatewayError:
    """The 429 of a key's limit (``reason``: CONCURRENCY, RPM or TPM), retry in ``wait`` s."""
    what = {CONCURRENCY: f"{limits.concurrency} concurrent requests", RPM: f"{limits.rpm} requests per minute",
            TPM: f"{limits.tpm} tokens per minute"}[reason]
    return _limited(what, wait, headers)


def _triple(kind: bytes, limit: int, remaining: int, reset: bytes) -> list[tuple[bytes, bytes]]:
    prefix = b"anthropic-ratelimit-" + kind
    return [(prefix + b"-limit", str(limit).encode()), (prefix + b"-remaining", str(max(remaining, 0)).encode()),
            (prefix + b"-reset", reset)]


def _limited(what: str, wait: float, headers: list[tuple[bytes, bytes]]) -> errors.GatewayError:
    seconds = max(1, int(wait + 0.999))
    extra = tuple((k.decode(), v.decode()) for k, v in headers)
    return errors.GatewayError(429, f"Rate limit reached for this key: {what}. Retry in {seconds} s.",
                               "rate_limit_error", headers=(("retry-after", str(seconds)), *extra))
