"""Several simulators as channels, over real HTTP, behind the gateway: failover before
the first byte, cooldowns, circuits, disabled credentials, weights and cache affinity.
Every request is billed once, and never for a failure."""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import replace
from functools import partial

import anthropic
import pytest
import trio

from proxy.catalog import default_catalog
from proxy.upstream.base import UpstreamRequest
from proxy.upstream.health import HealthPolicy
from proxy.upstream.router import Attempts, Channel, Router, RoutingPolicy, prompt_prefix, weighted_order
from proxy.simulator.script import Knobs
from proxy.simulator.server import SimulatorState, serve_simulator
from tests.conftest import UPSTREAM_KEY, Sim, make_account, metric_samples
from tests.upstream.conftest import MODEL, _ask, _channel, _gateway, _rows, _simulator
from tests.fakes import SimUpstream
from tests.upstream.conftest import ODD_STATUSES, raw_upstream



async def test_a_529_on_the_primary_is_served_by_the_backup_and_billed_once(nursery, config):
    primary = await _simulator(nursery, fault="529", retry_after=30)
    backup = await _simulator(nursery)
    running, alice = await _gateway(nursery, config, [_channel("primary", primary.url, priority=0),
                                                      _channel("backup", backup.url, priority=1)])
    before = await alice.balance()
    answer = await _ask(alice.anthropic())
    assert answer.content[0].text
    rows = await _rows(running, 1)
    assert len(rows) == 1 and rows[0].status == 200 and rows[0].cost > 0
    assert await alice.balance() == before - rows[0].cost
    assert len(primary.seen()) == 1 and len(backup.seen()) == 1
    # The primary rests for its retry-after: the next requests go straight to the backup.
    for i in range(3):
        await _ask(alice.anthropic(), f"again {i}")
    assert len(primary.seen()) == 1 and len(backup.seen()) == 4
    # The operator sees it all: attempts by channel and outcome, the failover, who served.
    async with alice.http() as http:
        samples = metric_samples((await http.get("/metrics")).text)
    assert samples[("cheaplm_upstream_attempts_total", (("channel", "primary"), ("outcome", "rate_limited")))] == 1
    assert samples[("cheaplm_upstream_attempts_total", (("channel", "backup"), ("outcome", "ok")))] == 4
    assert samples[("cheaplm_upstream_failovers_total", (("channel", "backup"),))] == 1
    assert samples[("cheaplm_channel_state", (("channel", "primary"), ("state", "cooling")))] == 1
    assert sum(v for (n, labels), v in samples.items()
               if n == "cheaplm_requests_total" and ("channel", "backup") in labels) == 4


async def test_a_stream_fails_over_before_its_first_byte_and_not_after(nursery, config):
    primary = await _simulator(nursery, fault="500")
    backup = await _simulator(nursery)
    running, alice = await _gateway(nursery, config, [_channel("primary", primary.url),
                                                      _channel("backup", backup.url, priority=1)])
    text = ""
    async for event in await _ask(alice.anthropic(), stream=True):
        if event.type == "content_block_delta":
            text += event.delta.text
    assert text and len(primary.seen()) == 1 and len(backup.seen()) == 1
    # An error in the middle of a stream is the client's answer: never retried elsewhere.
    # (The directive overrides the primary's own fault: it answers 200, then fails.)
    with pytest.raises(anthropic.APIStatusError):
        async for _ in await _ask(alice.anthropic(), "[sim fault=error_mid fault_after=2]", stream=True):
            pass
    rows = await _rows(running, 2)
    assert len(primary.seen()) == 2 and len(backup.seen()) == 1
    assert primary.seen()[-1].outcome != "complete"
    cut = [r for r in rows if r.status != 200 or r.partial or r.error_type]
    assert len(rows) == 2 and len(cut) == 1 and cut[0].partial and cut[0].cost > 0


async def test_a_dead_primary_fails_over_on_connect(nursery, config):
    with trio.socket.socket() as sock:  # a port nobody listens on
        await sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    backup = await _simulator(nursery)
    running, alice = await _gateway(nursery, config, [_channel("dead", dead), _channel("backup", backup.url,
                                                                                          priority=1)])
    for i in range(4):
        await _ask(alice.anthropic(), f"q{i}")
    assert len(backup.seen()) == 4
    # Three connect failures opened the dead channel's circuit: it is no longer tried.
    health = running.gateway.upstream.state.health("dead")
    assert health.state(trio.current_time()) == "open"


async def test_every_channel_down_gives_the_most_informative_error_and_charges_nothing(nursery, config):
    a = await _simulator(nursery, fault="529", retry_after=9)
    b = await _simulator(nursery, fault="429", retry_after=4)
    running, alice = await _gateway(nursery, config, [_channel("a", a.url), _channel("b", b.url)])
    before = await alice.account()
    with pytest.raises(anthropic.APIStatusError) as refused:
        await _ask(alice.anthropic())
    assert refused.value.status_code == 429 and refused.value.response.headers["retry-after"] == "4"
    # Both rest now: the next request is refused without trying either, with the shortest wait.
    with pytest.raises(anthropic.APIStatusError) as resting:
        await _ask(alice.anthropic(), "again")
    assert resting.value.status_code == 529 and int(resting.value.response.headers["retry-after"]) <= 4
    assert len(a.seen()) == 1 and len(b.seen()) == 1
    after = await alice.account()
    assert (after.balance, after.held) == (before.balance, 0)
    rows = await running.gateway.store.usage("alice", 10)
    assert all(r.cost == 0 for r in rows)


async def test_a_refused_credential_disables_the_channel_and_another_serves(nursery, config, caplog):
    bad = await _simulator(nursery)
    good = await _simulator(nursery)
    running, alice = await _gateway(nursery, config, [_channel("bad", bad.url, key="sk-wrong"),
                                                      _channel("good", good.url, priority=1)])
    for i in range(3):
        await _ask(alice.anthropic(), f"q{i}")
    assert len(bad.seen()) == 1 and len(good.seen()) == 3
    assert running.gateway.upstream.state.health("bad").state(0) == "disabled"
    assert "upstream channel bad DISABLED" in caplog.text and "sk-wrong" not in caplog.text
    async with alice.http() as http:
        health = (await http.get("/health")).text
    channels = {c["name"]: c for c in json.loads(health)["upstream"]["channels"]}
    assert channels["bad"]["state"] == "disabled" and channels["good"]["state"] == "healthy"
    assert (channels["bad"]["requests"], channels["bad"]["failures"], channels["good"]["requests"]) == (1, 1, 3)
    assert channels["good"]["url"] == good.url and "sk-wrong" not in health and UPSTREAM_KEY not in health


async def test_a_single_channel_with_a_refused_credential_is_a_502(nursery, config):
    bad = await _simulator(nursery)
    running, alice = await _gateway(nursery, config, [_channel("bad", bad.url, key="sk-wrong")])
    with pytest.raises(anthropic.APIStatusError) as refused:
        await _ask(alice.anthropic())
    assert refused.value.status_code == 502
    with pytest.raises(anthropic.APIStatusError) as again:
        await _ask(alice.anthropic(), "again")
    assert again.value.status_code == 502 and len(bad.seen()) == 1


async def test_a_channel_only_serves_its_models(nursery, config):
    haiku = await _simulator(nursery)
    rest = await _simulator(nursery)
    running, alice = await _gateway(nursery, config, [_channel("haiku", haiku.url, models=("claude-haiku-4.5",)),
                                                      _channel("rest", rest.url, priority=1)])
    await _ask(alice.anthropic())
    await alice.anthropic().messages.create(model="claude-sonnet-4.5", max_tokens=20,
                                            messages=[{"role": "user", "content": "hi"}])
    assert [s.model for s in haiku.seen()] == ["claude-haiku-4-5-20251001"]
    assert [s.model for s in rest.seen()] == ["claude-sonnet-4-5-20250929"]


async def test_the_circuit_lets_one_probe_through_and_closes_on_success(autojump_clock):
    """On trio's mock clock: the open interval passes without real time."""
    flaky = SimUpstream(SimulatorState(knobs=Knobs(fault="500")))
    backup = SimUpstream()
    policy = RoutingPolicy(health=HealthPolicy(failures_to_open=2, open_base=0.3, open_max=1))
    router = Router([Channel("flaky", flaky), Channel("backup", backup, priority=1)], policy)
    for i in range(4):
        assert (await router.send(_sim_request(f"q{i}"))).status == 200
    assert len(flaky.seen()) == 2 and len(backup.seen()) == 4  # opened after two failures
    flaky.state.knobs = Knobs()  # it recovers
    await trio.sleep(0.2)
    await router.send(_sim_request("still open"))
    assert len(flaky.seen()) == 2  # not yet
    await trio.sleep(0.15)
    assert (await router.send(_sim_request("probe"))).status == 200
    await router.send(_sim_request("after"))
    assert len(flaky.seen()) == 4 and len(backup.seen()) == 5
    assert router.state.health("flaky").state(trio.current_time()) == "healthy"


def _sim_request(text: str) -> UpstreamRequest:
    body = {"model": MODEL, "messages": [{"role": "user", "content": text}], "max_tokens": 5}
    model = default_catalog().resolve(MODEL)
    return UpstreamRequest("/v1/messages", model, {}, lambda model_id: json.dumps({**body, "model": model_id}).encode(),
                           body)


# -- choice, without the network --------------------------------------------------------------------

class _Nowhere:
    idle_timeout = 1.0
    label = url_label = "http://nowhere.invalid"


def _request(text: str = "hi", system: str | None = None) -> UpstreamRequest:
    body = {"model": MODEL, "messages": [{"role": "user", "content": text}], "max_tokens": 5}
    if system is not None:
        body["system"] = system
    return UpstreamRequest("/v1/messages", default_catalog().resolve(MODEL), {}, lambda m: b"", body)


def test_weights_spread_traffic_within_statistical_bounds():
    rng = random.Random(1234)
    channels = [Channel("a", _Nowhere(), weight=1), Channel("b", _Nowhere(), weight=3), Channel("z", _Nowhere(),
                                                                                                weight=0)]
    firsts = Counter(weighted_order(channels, rng)[0].name for _ in range(20_000))
    # b first with probability 3/4: 15,000 expected, sd about 61; six sd either side.
    assert 14_630 <= firsts["b"] <= 15_370 and firsts["a"] + firsts["b"] == 20_000


def test_lower_priority_first_and_the_sticky_channel_leads_its_priority():
    channels = [Channel("p0a", _Nowhere()), Channel("p0b", _Nowhere()), Channel("p1", _Nowhere(), priority=1)]
    router = Router(channels, RoutingPolicy(), rng=random.Random(7))
    request = _request("first message", system="a long system prompt")
    order = [c.name for c in router.plan(request, 0.0)]
    assert order[-1] == "p1" and set(order[:2]) == {"p0a", "p0b"}
    router.state.stick(request.affinity, "p0b")
    for _ in range(50):  # a later turn of the same conversation
        later = _request("first message", system="a long system prompt")
        later.payload["messages"].append({"role": "assistant", "content": "x"})
        assert [c.name for c in router.plan(later, 0.0)][0] == "p0b"
    # A conversation never seen is spread by weight as usual.
    assert {router.plan(_request(f"other {i}"), 0.0)[0].name for i in range(50)} == {"p0a", "p0b"}


def test_the_prompt_prefix_is_the_system_and_first_message_only():
    a = _request("hello", system="s")
    b = _request("hello", system="s")
    b.payload["messages"].append({"role": "assistant", "content": "later turns do not count"})
    assert prompt_prefix(a.payload) == prompt_prefix(b.payload)
    assert prompt_prefix(_request("hello", system="t").payload) != prompt_prefix(a.payload)
    assert prompt_prefix({"messages": []}) is None
    marked = _request("hello", system="s")
    marked.payload["messages"][0]["content"] = [{"type": "text", "text": "hello",
                                                  "cache_control": {"type": "ephemeral"}}]
    unmarked = _request("hello", system="s")
    unmarked.payload["messages"][0]["content"] = [{"type": "text", "text": "hello"}]
    assert prompt_prefix(marked.payload) == prompt_prefix(unmarked.payload)  # markers move; the prefix stays


async def test_cache_affinity_keeps_a_conversation_on_one_channel_and_its_cache_warm(nursery, config):
    from bench.affinity import SYSTEM, conversation
    from proxy.simulator.cache import PromptCache

    sims = []
    for _ in range(2):
        state = SimulatorState(api_key=UPSTREAM_KEY, prompt_cache=PromptCache())
        url, _ = await nursery.start(partial(serve_simulator, "127.0.0.1", 0, state=state))
        sims.append(Sim(url, state))
    running, alice = await _gateway(nursery, config, [_channel("a", sims[0].url), _channel("b", sims[1].url)])
    client = alice.anthropic()
    for turn in range(4):
        for index in range(6):
            await client.messages.create(model="claude-sonnet-4.5", max_tokens=20, system=SYSTEM,
                                         messages=conversation(index, 4)[turn])
    for index in range(6):
        served_by = {i for i, sim in enumerate(sims) for seen in sim.seen()
                     if f"Task {index}," in json.dumps(seen.body)}
        assert len(served_by) == 1, (index, served_by)
    rows = sorted(await running.gateway.store.usage("alice", 100), key=lambda r: r.created_at)
    later_turns = rows[6:]
    assert all(r.cache_read > 0 for r in later_turns)


async def test_a_channel_resting_for_the_upstreams_429_is_answered_as_a_rate_limit_and_a_529_as_overload():
    """One [upstream] is a one-channel router: while its only channel rests for a 429, the
    client hears a rate limit (retry-after), not an invented overload."""
    channel = Channel("default", _Nowhere())
    router = Router([channel], RoutingPolicy())
    router._judge(channel, 429, b"{}", (("retry-after", "7"),), Attempts())
    refused = router.nothing_available(_request(), trio.current_time())
    assert (refused.status, refused.error_type, dict(refused.headers)["retry-after"]) == (429, "rate_limit_error",
                                                                                           "7")
    router._judge(channel, 529, b"{}", (("retry-after", "3"),), Attempts())
    refused = router.nothing_available(_request(), trio.current_time())
    assert (refused.status, refused.error_type) == (529, "overloaded_error")


# -- odd answers, bodies a channel cannot take, hostile retry-after values ---------------------

@pytest.mark.parametrize("response", ODD_STATUSES, ids=["204", "302"])
async def test_a_channel_answering_2xx_or_3xx_other_than_200_fails_over(nursery, config, response):
    from proxy.config import ChannelConfig, RoutingConfig, UpstreamConfig
    from proxy.serve import serve
    from tests.conftest import UPSTREAM_KEY
    odd = await raw_upstream(nursery, response)
    channels = (ChannelConfig("odd", UpstreamConfig(url=odd, api_key="k", first_byte_timeout=5), priority=0),
                ChannelConfig("good", UpstreamConfig(url=config.upstream.url, api_key=UPSTREAM_KEY,
                                                     first_byte_timeout=5), priority=1))
    running = await nursery.start(serve, replace(config, upstream=UpstreamConfig(), channels=channels,
                                                 routing=RoutingConfig()))
    account = await make_account(running)
    body = {"model": "claude-haiku-4.5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    async with account.http() as http:
        answer = await http.post("/v1/messages", json=body)
    assert answer.status_code == 200, answer.text
    rows = await running.gateway.store.usage(account.username, 10)
    assert [(r.status, r.channel, r.attempts) for r in rows] == [(200, "good", 2)]


async def test_a_body_that_cannot_be_written_for_a_channel_is_no_failure_of_that_channel(nursery, config):
    """orjson reads nesting to 1024 but writes to 254: a body deeper than that passes the
    relay untouched (the client's bytes), and only a channel that renames the model must
    write it anew. That is the request's own fault (a 400), not the channel's: three such
    requests must not open the circuit of every channel with [upstream.model_ids]."""
    from proxy.config import ChannelConfig, RoutingConfig, UpstreamConfig
    from proxy.serve import serve
    from tests.conftest import UPSTREAM_KEY
    mapped = UpstreamConfig(url=config.upstream.url, api_key=UPSTREAM_KEY, first_byte_timeout=5,
                            model_ids=(("claude-haiku-4.5", "provider-haiku"),))
    plain = UpstreamConfig(url=config.upstream.url, api_key=UPSTREAM_KEY, first_byte_timeout=5)
    channels = (ChannelConfig("mapped", mapped, priority=0), ChannelConfig("plain", plain, priority=1))
    running = await nursery.start(serve, replace(config, upstream=UpstreamConfig(), channels=channels,
                                                 routing=RoutingConfig(failures_to_open=3)))
    account = await make_account(running)
    deep = b"[" * 300 + b"]" * 300
    raw = (b'{"model":"claude-haiku-4-5-20251001","max_tokens":10,"messages":[{"role":"user","content":"hi"}],'
           b'"x":' + deep + b"}")
    async with account.http() as http:
        for stream in (False, True, False, True):
            body = raw if not stream else raw.replace(b'"max_tokens"', b'"stream":true,"max_tokens"')
            answer = await http.post("/v1/messages", content=body, headers={"content-type": "application/json"})
            assert answer.status_code in (200, 400), answer.text
        health = (await http.get("/health")).json()["upstream"]["channels"]
        assert {c["name"]: c["state"] for c in health} == {"mapped": "healthy", "plain": "healthy"}
        assert {c["name"]: c["failures"] for c in health}["mapped"] == 0
        normal = await http.post("/v1/messages", json={"model": "claude-haiku-4.5", "max_tokens": 10,
                                                       "messages": [{"role": "user", "content": "hi"}]})
    assert normal.status_code == 200
    rows = await running.gateway.store.usage(account.username, 10)
    assert rows[0].channel == "mapped"


@pytest.mark.parametrize("depth", [300, 1000])
async def test_a_deeply_nested_first_message_is_served_or_refused_never_a_500(nursery, config, depth):
    """Cache affinity hashes the system prompt and first message: nesting deeper than
    orjson writes (254) or than Python recurses must not make the router raise (an
    unhandled 500 with a traceback in the log for each such request)."""
    from proxy.config import ChannelConfig, RoutingConfig, UpstreamConfig
    from proxy.serve import serve
    from tests.conftest import UPSTREAM_KEY
    up = UpstreamConfig(url=config.upstream.url, api_key=UPSTREAM_KEY, first_byte_timeout=5)
    channels = (ChannelConfig("a", up), ChannelConfig("b", up))
    running = await nursery.start(serve, replace(config, upstream=UpstreamConfig(), channels=channels,
                                                 routing=RoutingConfig()))
    account = await make_account(running)
    deep = b"[" * depth + b"]" * depth
    raw = (b'{"model":"claude-haiku-4-5-20251001","max_tokens":10,"messages":[{"role":"user","content":'
           b'[{"type":"text","text":"hi","x":' + deep + b'}]}]}')
    async with account.http() as http:
        answer = await http.post("/v1/messages", content=raw, headers={"content-type": "application/json"})
    assert answer.status_code in (200, 400), (answer.status_code, answer.text)
    await account.settled(1)


@pytest.mark.parametrize("headers, rests", [
    ((("retry-after", "nan"),), 30.0),            # NaN: was no rest at all (every comparison false)
    ((("retry-after", "inf"),), 30.0),
    ((("retry-after", "-5"),), 30.0),             # garbage: the default cooldown, not none
    ((("retry-after-ms", "abc"), ("retry-after", "7")), 7.0),  # the usable header is still read
    ((("retry-after", "Wed, 21 Oct 2099 07:28:00 GMT"),), 30.0),
    ((("retry-after", "12"),), 12.0),
    ((("retry-after", "1e308"),), 600.0),
])
def test_a_rate_limited_channel_rests_whatever_its_retry_after_says(headers, rests):
    from proxy.upstream.health import ChannelHealth, HealthPolicy
    from proxy.upstream.router import _retry_after
    health = ChannelHealth(HealthPolicy(cooldown=30.0, max_cooldown=600.0))
    health.rate_limited(100.0, _retry_after(headers))
    assert health.state(100.0 + rests - 0.5) == "cooling"
    assert health.state(100.0 + rests + 0.5) == "healthy"
