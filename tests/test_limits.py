"""proxy/limits.py: per-key windows, exact, on a clock the test turns by hand."""

from __future__ import annotations

import pytest

from proxy import errors
from proxy.limits import KeyLimits, Limiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _limiter():
    clock = Clock()
    return clock, Limiter(clock, lambda: 1_800_000_000.0 + clock.now)


def _refused(limiter, key=1, limits=KeyLimits(rpm=1), tokens=0) -> errors.GatewayError:
    with pytest.raises(errors.GatewayError) as refused:
        limiter.admit(key, limits, tokens)
    assert refused.value.status == 429 and refused.value.error_type == "rate_limit_error"
    return refused.value


def _header(error_or_headers, name):
    pairs = error_or_headers.headers if hasattr(error_or_headers, "status") else [
        (k.decode(), v.decode()) for k, v in error_or_headers]
    return dict(pairs)[name]


def test_a_key_without_limits_is_not_tracked():
    _, limiter = _limiter()
    assert limiter.admit(1, KeyLimits(), 10**6) is None and limiter.windows == {}


def test_rpm_admits_exactly_the_limit_in_any_sixty_seconds():
    clock, limiter = _limiter()
    limits = KeyLimits(rpm=10)
    admitted = [limiter.admit(1, limits, 0) for _ in range(10)]
    assert _header(admitted[-1].headers, "anthropic-ratelimit-requests-remaining") == "0"
    refused = _refused(limiter, limits=limits)
    assert _header(refused, "retry-after") == "60" and "10 requests per minute" in refused.message
    for a in admitted:
        a.finish(0)
    clock.now += 59.9
    _refused(limiter, limits=limits)  # finishing does not give a request back: the window does
    clock.now += 0.2
    assert limiter.admit(1, limits, 0) is not None


def test_the_window_slides_a_burst_at_a_minutes_edge_cannot_pass_twice():
    clock, limiter = _limiter()
    limits = KeyLimits(rpm=4)
    for _ in range(2):
        limiter.admit(1, limits, 0).finish(0)
    clock.now += 50
    for _ in range(2):
        limiter.admit(1, limits, 0).finish(0)
    clock.now += 11  # the first two have left the window, the last two have not
    limiter.admit(1, limits, 0).finish(0)
    limiter.admit(1, limits, 0).finish(0)
    assert _header(_refused(limiter, limits=limits), "retry-after") == "49"  # when the oldest leaves


def test_concurrency_counts_requests_in_flight():
    _, limiter = _limiter()
    limits = KeyLimits(concurrency=2)
    first, second = limiter.admit(1, limits, 0), limiter.admit(1, limits, 0)
    _refused(limiter, limits=limits)
    first.finish(0)
    first.finish(0)  # once only
    third = limiter.admit(1, limits, 0)
    _refused(limiter, limits=limits)
    second.cancel()
    third.finish(0)
    assert limiter.windows == {}  # nothing left for an idle key


def test_tokens_reserve_the_estimate_then_count_what_was_used():
    clock, limiter = _limiter()
    limits = KeyLimits(tpm=10_000)
    a = limiter.admit(1, limits, 6_000)
    assert _header(a.headers, "anthropic-ratelimit-tokens-remaining") == "4000"
    refused = _refused(limiter, limits=limits, tokens=6_000)
    assert "10000 tokens per minute" in refused.message and _header(refused, "retry-after") == "60"
    a.finish(1_500)  # it used far less than it reserved
    clock.now += 30
    b = limiter.admit(1, limits, 6_000)
    assert _header(b.headers, "anthropic-ratelimit-tokens-remaining") == "2500"
    b.finish(6_000)
    clock.now += 30.5  # a's tokens have left the window; b's have not
    assert _header(limiter.admit(1, limits, 4_000).headers, "anthropic-ratelimit-tokens-remaining") == "0"


def test_a_request_larger_than_the_whole_budget_may_run_alone():
    _, limiter = _limiter()
    limits = KeyLimits(tpm=1_000)
    big = limiter.admit(1, limits, 32_000)
    _refused(limiter, limits=limits, tokens=1)
    big.finish(900)
    assert limiter.admit(1, limits, 100) is not None


def test_a_cancelled_request_counts_for_nothing():
    _, limiter = _limiter()
    limits = KeyLimits(rpm=1, tpm=100)
    limiter.admit(1, limits, 100).cancel()
    assert limiter.admit(1, limits, 100) is not None


def test_keys_are_limited_apart():
    _, limiter = _limiter()
    limits = KeyLimits(rpm=1)
    limiter.admit(1, limits, 0)
    assert limiter.admit(2, limits, 0) is not None
    _refused(limiter, key=1, limits=limits)


def test_reset_headers_are_rfc3339_times_when_the_window_is_whole_again():
    clock, limiter = _limiter()
    admission = limiter.admit(1, KeyLimits(rpm=5, tpm=50), 10)
    headers = {k.decode(): v.decode() for k, v in admission.headers}
    assert headers["anthropic-ratelimit-requests-reset"] == "2027-01-15T08:17:40Z"  # Unix 1_800_001_060
    assert headers["anthropic-ratelimit-tokens-reset"] == "2027-01-15T08:17:40Z"
    assert (headers["anthropic-ratelimit-requests-limit"], headers["anthropic-ratelimit-tokens-limit"]) == ("5", "50")


def test_finishing_after_the_window_moved_on_changes_nothing():
    clock, limiter = _limiter()
    limits = KeyLimits(tpm=1_000)
    old = limiter.admit(1, limits, 400)
    clock.now += 61  # a long request: its reservation has left the window
    new = limiter.admit(1, limits, 300)
    old.finish(900)  # what it used belongs to a minute that is over
    assert limiter.windows[1].token_sum == 300
    assert _header(limiter.admit(1, limits, 700).headers, "anthropic-ratelimit-tokens-remaining") == "0"
    new.cancel()


def test_cancelling_an_earlier_admission_gives_back_exactly_its_own():
    _, limiter = _limiter()
    limits = KeyLimits(rpm=3, tpm=1_000)
    first, second = limiter.admit(1, limits, 300), limiter.admit(1, limits, 200)
    first.cancel()
    window = limiter.windows[1]
    assert (len(window.requests), window.token_sum) == (1, 200)
    second.finish(50)
    assert window.token_sum == 50
