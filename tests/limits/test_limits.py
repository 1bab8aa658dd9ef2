"""Per-key limits over real HTTP with the official SDKs, in both wire shapes: requests,
tokens and concurrency per key (the limiter, in the process and shared through Redis),
spend caps per UTC day and month (the store, with the hold). Every count is exact; a
refused request is a 429
``rate_limit_error`` with ``retry-after`` in the endpoint's shape, charged nothing, and
never reaches the upstream."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

import anthropic
import openai
import pytest
import trio

from proxy.adaptors.base import Parsed
from proxy.billing import hold_amount
from proxy.relay.sizing import counted_hold
from proxy.simulator.script import Knobs, counted_tokens
from proxy.cli.main import main
from storage.base import KeyLimits

from tests.conftest import at_once, at_once_held, in_process_config, make_account, serve_in_process
from tests.shared.redis import REDIS_URL, delete_prefixed, redis_prefix  # noqa: F401 (a fixture)

pytestmark = pytest.mark.both_stores  # the ledger fixture: SQLite and PostgreSQL

MODEL = "claude-haiku-4.5"
SHAPES = ("anthropic", "openai")


@pytest.fixture(params=["local", "redis"])
async def limited_gateway(request, nursery, tmp_path, redis_prefix):
    """The in-process gateway, its limits in the process or shared through Redis (the
    same semantics: the tests that take it run on both)."""
    config = in_process_config(tmp_path)
    if request.param == "redis":
        # (a generous timeout: exactness is the subject, not a loaded test machine's latency)
        config = replace(config, redis_url=REDIS_URL, redis_prefix=redis_prefix, redis_timeout=5.0)
    running = await nursery.start(serve_in_process, config)
    yield running
    if running.gateway.shared is not None:
        with trio.CancelScope(shield=True):
            await delete_prefixed(running.gateway.shared)


@dataclass
class Result:
    status: int
    headers: dict[str, str]
    error_type: str | None = None   # the error's type, read from the endpoint's own shape


async def call(account, shape: str, prompt: str, max_tokens: int = 50, stream: bool = False) -> Result:
    """One request through the SDK of ``shape``; a 429 is returned, anything else raises."""
    messages = [{"role": "user", "content": prompt}]
    try:
        if shape == "anthropic":
            raw = await account.anthropic().messages.with_raw_response.create(
                model=MODEL, max_tokens=max_tokens, messages=messages, stream=stream)
        else:
            raw = await account.openai().chat.completions.with_raw_response.create(
                model=MODEL, max_tokens=max_tokens, messages=messages, stream=stream)
        answer = raw.parse()  # (awaitable in the anthropic SDK, not in openai's legacy raw response)
        if inspect.isawaitable(answer):
            answer = await answer
        if stream:
            async for _ in answer:
                pass
        return Result(raw.status_code, dict(raw.headers))
    except (anthropic.RateLimitError, openai.RateLimitError) as refused:
        body = refused.body
        if shape == "anthropic":  # {"type": "error", "error": {...}, "request_id"}; the SDK hands over the body
            assert body["type"] == "error"
            kind = body["error"]["type"]
        else:  # {"error": {"message", "type", "param", "code"}}; the SDK hands over the error object
            kind = body["type"]
            assert body["code"] == "rate_limit_error"
        return Result(refused.status_code, dict(refused.response.headers), kind)


async def fire(account, shape: str, n: int, prompt: str, **kwargs) -> list[Result]:
    return await at_once(n, lambda: call(account, shape, prompt, **kwargs))


async def fire_held(account, shape: str, n: int, prompt: str, while_held=None, **kwargs) -> list[Result]:
    """``fire``, the upstream holding every answer (a stream after its first event) until
    each request is refused or held there: those admitted are in flight together."""
    return await at_once_held(account.running.upstream, n, lambda: call(account, shape, prompt, **kwargs),
                              while_held)


def passed(results: list[Result]) -> list[Result]:
    return [r for r in results if r.status == 200]


def refused(results: list[Result]) -> list[Result]:
    limited = [r for r in results if r.status == 429]
    assert all(r.error_type == "rate_limit_error" and int(r.headers["retry-after"]) >= 1 for r in limited)
    assert len(limited) + len(passed(results)) == len(results)
    return limited


async def charged_exactly(account, served: int, before: int) -> None:
    """``served`` requests are charged, once each, and nothing else: the balance moved by
    their usage rows' costs to the micro-dollar, one charge entry each."""
    account_now = await account.settled(served)
    store = account.running.gateway.store
    rows = await store.usage(account.username, 10_000)
    assert len(rows) == served and all(r.status == 200 for r in rows)
    charges = [e for e in await store.ledger(account.username) if e.kind == "charge"]
    assert sorted(e.ref for e in charges) == sorted(r.request_id for r in rows)
    assert account_now.balance == before - sum(r.cost for r in rows) and account_now.held == 0
    assert await store.check() == []


@pytest.mark.parametrize("shape", SHAPES)
async def test_rpm_admits_exactly_the_limit_of_fifty_at_once(limited_gateway, shape):
    account = await make_account(limited_gateway, limits=KeyLimits(rpm=10))
    before = await account.balance()
    results = await fire(account, shape, 50, "hi [sim deltas=2]")
    assert len(passed(results)) == 10 and len(refused(results)) == 40
    assert all(int(r.headers["retry-after"]) in range(55, 61) for r in refused(results))
    assert len(limited_gateway.upstream.seen()) == 10  # the refused never reached the upstream
    await charged_exactly(account, 10, before)


@pytest.mark.parametrize("shape", SHAPES)
async def test_a_success_carries_the_ratelimit_headers(limited_gateway, shape):
    account = await make_account(limited_gateway, limits=KeyLimits(rpm=5, tpm=100_000))
    for stream in (False, True):
        headers = (await call(account, shape, "hi [sim deltas=2]", max_tokens=100, stream=stream)).headers
        assert headers["anthropic-ratelimit-requests-limit"] == "5"
        assert headers["anthropic-ratelimit-requests-remaining"] == str(4 - stream)
        assert headers["anthropic-ratelimit-tokens-limit"] == "100000"
        assert int(headers["anthropic-ratelimit-tokens-remaining"]) < 100_000 - 100
        reset = datetime.fromisoformat(headers["anthropic-ratelimit-requests-reset"].replace("Z", "+00:00"))
        assert timedelta(seconds=50) < reset - datetime.now(timezone.utc) <= timedelta(seconds=61)


async def test_a_key_without_limits_has_no_ratelimit_headers(app_alice):
    alice = app_alice
    headers = (await call(alice, "anthropic", "hi [sim deltas=2]")).headers
    assert not [h for h in headers if h.startswith("anthropic-ratelimit")]
    assert alice.running.gateway.meter.limiter.windows == {}


@pytest.mark.parametrize("shape", SHAPES)
async def test_tpm_reserves_prompt_and_max_tokens_then_counts_what_was_used(limited_gateway, shape):
    # each request reserves its estimated prompt (a few tokens) + max_tokens 1000: three fit in 3500
    account = await make_account(limited_gateway, limits=KeyLimits(tpm=3_500))
    before = await account.balance()
    results = await fire_held(account, shape, 12, "hi [sim deltas=3]", max_tokens=1000)
    assert len(passed(results)) == 3 and len(refused(results)) == 9
    assert len(limited_gateway.upstream.seen()) == 3
    await charged_exactly(account, 3, before)
    # they used far less than they reserved: the window now has room again
    assert (await call(account, shape, "hi [sim deltas=2]", max_tokens=1000)).status == 200


@pytest.mark.parametrize("shape", SHAPES)
async def test_concurrency_counts_open_streams(limited_gateway, shape):
    account = await make_account(limited_gateway, limits=KeyLimits(concurrency=3))
    before = await account.balance()
    late: list[Result] = []

    async def one_more() -> None:  # while three streams are open (each has sent its first event)
        late.append(await call(account, shape, "hi [sim deltas=4]", stream=True))

    results = await fire_held(account, shape, 10, "hi [sim deltas=4]", one_more, stream=True)
    assert len(passed(results)) == 3 and len(refused(results)) == 7
    assert len(refused(late)) == 1
    assert len(limited_gateway.upstream.seen()) == 3
    await charged_exactly(account, 3, before)
    # the slots are free again once the streams have ended
    assert len(passed(await fire(account, shape, 3, "hi [sim deltas=2]", stream=True))) == 3


def _hold(running, max_tokens: int) -> int:
    """About what one request holds: max_tokens at the output price, and a few prompt tokens."""
    return hold_amount(running.gateway.catalog.resolve(MODEL), 10, max_tokens)


def _seconds_to(moment: datetime) -> float:
    return (moment - datetime.now(timezone.utc)).total_seconds()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("period", ("daily_usd", "monthly_usd"))
async def test_spend_caps_hold_exactly_under_concurrency(app_gateway, shape, period):
    hold = _hold(app_gateway, 1000)
    account = await make_account(app_gateway, limits=KeyLimits(**{period: hold * 3 + hold // 2}))
    before = await account.balance()
    results = await fire_held(account, shape, 10, "hi [sim deltas=4]", max_tokens=1000, stream=True)
    assert len(passed(results)) == 3 and len(refused(results)) == 7
    assert len(app_gateway.upstream.seen()) == 3
    now = datetime.now(timezone.utc)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    rollover = day + timedelta(days=1) if period == "daily_usd" else (day.replace(day=1) + timedelta(days=32)
                                                                      ).replace(day=1)
    for result in refused(results):  # seconds until the period rolls over (UTC)
        assert abs(int(result.headers["retry-after"]) - _seconds_to(rollover)) < 5
    await charged_exactly(account, 3, before)


async def test_a_spend_cap_counts_what_was_settled_in_the_period_to_the_micro_dollar(gateway, simulator):
    prompt = "hi [sim deltas=2]"
    body = {"model": MODEL, "max_tokens": 1000, "messages": [{"role": "user", "content": prompt}]}
    # the cap is below the worst case: the hold is sized on the simulator's count of the prompt
    exact = counted_hold(Parsed(body, gateway.gateway.catalog.resolve(MODEL), False, 1000, MODEL),
                         counted_tokens(body, Knobs()))
    account = await make_account(gateway, limits=KeyLimits(daily_usd=exact))
    store, prefix = gateway.gateway.store, account.key[:14]
    before = await account.balance()
    assert (await call(account, "anthropic", prompt, max_tokens=1000)).status == 200
    await account.settled(1)
    spent = before - await account.balance()
    assert 0 < spent < exact
    assert (await call(account, "anthropic", prompt, max_tokens=1000)).status == 429  # spent + the hold > the cap
    await store.set_key_limits(prefix, {"daily_usd": exact + spent})  # caps are read with the hold: no cache
    assert (await call(account, "anthropic", prompt, max_tokens=1000)).status == 200
    await account.settled(2)
    assert (await call(account, "anthropic", prompt, max_tokens=1000)).status == 429
    await store.set_key_limits(prefix, {"daily_usd": exact + 2 * spent - 1})  # a micro-dollar short
    assert (await call(account, "anthropic", prompt, max_tokens=1000)).status == 429
    assert len(simulator.seen()) == 2
    await charged_exactly(account, 2, before)


async def test_cheaplm_key_set_reaches_a_running_gateway_within_the_key_cache(nursery, ledger):
    config = replace(in_process_config(ledger), key_cache_seconds=0.3)
    running = await nursery.start(serve_in_process, config)
    account = await make_account(running)
    assert (await call(account, "anthropic", "hi")).status == 200  # (the key is cached now, unlimited)
    argv = ["key", "set", account.key[:14], "--rpm", "1", "--db", config.database_url]
    assert await trio.to_thread.run_sync(main, argv) == 0  # the CLI, on its own connection
    await trio.sleep(0.35)
    results = await fire(account, "openai", 3, "hi")
    assert len(passed(results)) == 1 and len(refused(results)) == 2


async def test_a_stream_whose_real_prompt_passes_the_cap_is_refused_before_it_is_sent(gateway, simulator):
    """The cap cannot cover the worst case, so the hold is sized on the upstream's count of
    the prompt, bigger than its bytes show: the cap has no room for it, and the stream is
    refused (429) before anything is sent or charged. (A prompt that passes its count at
    message_start grows its hold there, bounded by the cap as by the balance: test_metering.)"""
    hold = _hold(gateway, 100)
    account = await make_account(gateway, limits=KeyLimits(daily_usd=hold * 4 + hold // 2))
    before = await account.balance()
    body = {"model": MODEL, "max_tokens": 100, "stream": True,
            "messages": [{"role": "user", "content": "big [sim input_tokens=3000 ttft_ms=300 deltas=4]"}]}
    results = await account.post_at_once(body, 4)
    # each needs 3000 input tokens at $1/M + 100 output at $5/M ($0.0035); the cap is about 4.5 x $0.0005
    assert [r.status_code for r in results] == [429] * 4
    assert all('"rate_limit_error"' in r.text for r in results)
    assert simulator.seen() == [] and len(simulator.seen("/v1/messages/count_tokens")) == 4
    assert await account.balance() == before


@pytest.mark.parametrize("shape", SHAPES)
async def test_a_request_refused_by_its_hold_gives_its_admission_back(limited_gateway, shape):
    account = await make_account(limited_gateway, credit_micro=1, limits=KeyLimits(rpm=1, concurrency=1))
    for _ in range(3):
        with pytest.raises((anthropic.APIStatusError, openai.APIStatusError)) as short:
            await call(account, shape, "hi", max_tokens=1000)
        assert short.value.status_code == 402
    await limited_gateway.gateway.store.credit(account.username, 1_000_000, "credit")
    assert (await call(account, shape, "hi", max_tokens=1000)).status == 200  # the minute's one request
    assert (await call(account, shape, "hi", max_tokens=1000)).status == 429
    assert len(limited_gateway.upstream.seen()) == 1


# -- count_tokens ------------------------------------------------------------------------------

