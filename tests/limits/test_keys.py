"""proxy/limits/keys.py: per-key windows, exact, on a clock the test turns by hand.

The tests that take the ``limiter`` fixture run twice: on the in-process limiter and on
the shared one (shared/limits.py, the real Redis), whose semantics are the same. Those
that move the clock stay in-process: Redis's clock (``TIME``, which the shared scripts
use) cannot be turned by a test; tests/shared/ covers the shared windows' time with
short leases and across nodes."""

from __future__ import annotations

import pytest

from proxy import errors
from proxy.limits.keys import KeyLimits, Limiter
from proxy.shared.limits import RedisKeyLimiter
from tests.fakes import HandClock
from tests.shared.redis import redis_limits, redis_prefix, shared_redis  # noqa: F401 (fixtures)


@pytest.fixture(params=["local", "redis"])
async def limiter(request, shared_redis):
    return _limiter()[1] if request.param == "local" else redis_limits(shared_redis).key_limiter()


def _idle(limiter) -> bool:
    """Nothing left for an idle key (in the process: no window; in Redis: no slot)."""
    return limiter.windows == {} if not isinstance(limiter, RedisKeyLimiter) else limiter.running == {}


def _limiter():
    clock = HandClock()
    return clock, Limiter(clock, lambda: 1_800_000_000.0 + clock.now)


async def _refused(limiter, key=1, limits=KeyLimits(rpm=1), tokens=0) -> errors.GatewayError:
    with pytest.raises(errors.GatewayError) as refused:
        await limiter.admit(key, limits, tokens)
    assert refused.value.status == 429 and refused.value.error_type == "rate_limit_error"
    return refused.value


def _header(error_or_headers, name):
    pairs = error_or_headers.headers if hasattr(error_or_headers, "status") else [
        (k.decode(), v.decode()) for k, v in error_or_headers]
    return dict(pairs)[name]


async def test_a_key_without_limits_is_not_tracked(limiter):
    assert await limiter.admit(1, KeyLimits(), 10**6) is None and _idle(limiter)
    if isinstance(limiter, RedisKeyLimiter):
        assert limiter.shared.calls == 0  # never touches Redis


async def test_rpm_admits_exactly_the_limit_in_any_sixty_seconds(limiter):
    limits = KeyLimits(rpm=10)
    admitted = [await limiter.admit(1, limits, 0) for _ in range(10)]
    assert _header(admitted[-1].headers, "anthropic-ratelimit-requests-remaining") == "0"
    refused = await _refused(limiter, limits=limits)
    assert _header(refused, "retry-after") == "60" and "10 requests per minute" in refused.message
    for a in admitted:
        await a.finish(0)
    if isinstance(limiter, RedisKeyLimiter):
        return  # (the window's end: in the process, on the hand clock)
    clock = limiter.clock
    clock.now += 59.9
    await _refused(limiter, limits=limits)  # finishing does not give a request back: the window does
    clock.now += 0.2
    assert await limiter.admit(1, limits, 0) is not None


async def test_the_window_slides_a_burst_at_a_minutes_edge_cannot_pass_twice():
    clock, limiter = _limiter()
    limits = KeyLimits(rpm=4)
    for _ in range(2):
        await (await limiter.admit(1, limits, 0)).finish(0)
    clock.now += 50
    for _ in range(2):
        await (await limiter.admit(1, limits, 0)).finish(0)
    clock.now += 11  # the first two have left the window, the last two have not
    await (await limiter.admit(1, limits, 0)).finish(0)
    await (await limiter.admit(1, limits, 0)).finish(0)
    assert _header(await _refused(limiter, limits=limits), "retry-after") == "49"  # when the oldest leaves


async def test_concurrency_counts_requests_in_flight(limiter):
    limits = KeyLimits(concurrency=2)
    first, second = await limiter.admit(1, limits, 0), await limiter.admit(1, limits, 0)
    await _refused(limiter, limits=limits)
    await first.finish(0)
    await first.finish(0)  # once only
    third = await limiter.admit(1, limits, 0)
    await _refused(limiter, limits=limits)
    await second.cancel()
    await third.finish(0)
    assert _idle(limiter)


async def test_tokens_reserve_the_estimate_then_count_what_was_used(limiter):
    limits = KeyLimits(tpm=10_000)
    a = await limiter.admit(1, limits, 6_000)
    assert _header(a.headers, "anthropic-ratelimit-tokens-remaining") == "4000"
    refused = await _refused(limiter, limits=limits, tokens=6_000)
    assert "10000 tokens per minute" in refused.message and _header(refused, "retry-after") == "60"
    await a.finish(1_500)  # it used far less than it reserved
    if isinstance(limiter, RedisKeyLimiter):
        b = await limiter.admit(1, limits, 6_000)
        assert _header(b.headers, "anthropic-ratelimit-tokens-remaining") == "2500"
        return  # (the window's end: in the process, on the hand clock)
    clock = limiter.clock
    clock.now += 30
    b = await limiter.admit(1, limits, 6_000)
    assert _header(b.headers, "anthropic-ratelimit-tokens-remaining") == "2500"
    await b.finish(6_000)
    clock.now += 30.5  # a's tokens have left the window; b's have not
    assert _header((await limiter.admit(1, limits, 4_000)).headers, "anthropic-ratelimit-tokens-remaining") == "0"


async def test_a_request_larger_than_the_whole_budget_may_run_alone(limiter):
    limits = KeyLimits(tpm=1_000)
    big = await limiter.admit(1, limits, 32_000)
    await _refused(limiter, limits=limits, tokens=1)
    await big.finish(900)
    assert await limiter.admit(1, limits, 100) is not None


async def test_a_cancelled_request_counts_for_nothing(limiter):
    limits = KeyLimits(rpm=1, tpm=100)
    await (await limiter.admit(1, limits, 100)).cancel()
    assert await limiter.admit(1, limits, 100) is not None


async def test_keys_are_limited_apart(limiter):
    limits = KeyLimits(rpm=1)
    await limiter.admit(1, limits, 0)
    assert await limiter.admit(2, limits, 0) is not None
    await _refused(limiter, key=1, limits=limits)


async def test_reset_headers_are_rfc3339_times_when_the_window_is_whole_again():
    clock, limiter = _limiter()
    admission = await limiter.admit(1, KeyLimits(rpm=5, tpm=50), 10)
    headers = {k.decode(): v.decode() for k, v in admission.headers}
    assert headers["anthropic-ratelimit-requests-reset"] == "2027-01-15T08:17:40Z"  # Unix 1_800_001_060
    assert headers["anthropic-ratelimit-tokens-reset"] == "2027-01-15T08:17:40Z"
    assert (headers["anthropic-ratelimit-requests-limit"], headers["anthropic-ratelimit-tokens-limit"]) == ("5", "50")


async def test_finishing_after_the_window_moved_on_changes_nothing():
    clock, limiter = _limiter()
    limits = KeyLimits(tpm=1_000)
    old = await limiter.admit(1, limits, 400)
    clock.now += 61  # a long request: its reservation has left the window
    new = await limiter.admit(1, limits, 300)
    await old.finish(900)  # what it used belongs to a minute that is over
    assert limiter.windows[1].token_sum == 300
    assert _header((await limiter.admit(1, limits, 700)).headers, "anthropic-ratelimit-tokens-remaining") == "0"
    await new.cancel()


async def test_cancelling_an_earlier_admission_gives_back_exactly_its_own():
    _, limiter = _limiter()
    limits = KeyLimits(rpm=3, tpm=1_000)
    first, second = await limiter.admit(1, limits, 300), await limiter.admit(1, limits, 200)
    await first.cancel()
    window = limiter.windows[1]
    assert (len(window.requests), window.token_sum) == (1, 200)
    await second.finish(50)
    assert window.token_sum == 50


async def test_a_bucket_token_given_back_can_be_taken_again():
    from proxy.limits.bucket import LocalBucket
    now = [0.0]
    bucket = LocalBucket(2, lambda: now[0])
    assert [await bucket.take("k") for _ in range(2)] == [0.0, 0.0]
    assert await bucket.take("k") > 0
    await bucket.give_back("k")
    assert await bucket.take("k") == 0.0 and await bucket.take("k") > 0
    await bucket.give_back("other")  # a full bucket stays full
    assert [await bucket.take("other") for _ in range(3)][-1] > 0
