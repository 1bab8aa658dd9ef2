"""What coding tools send with their default settings: more output than a model's cap,
model ids newer than the catalog, base URLs without /v1, HEAD / probes."""

from dataclasses import replace

import anthropic
import openai
import pytest

from dataclasses import replace

from proxy.adaptors.base import Parsed
from proxy.billing import hold_amount
from proxy.relay.sizing import counted_hold
from proxy.simulator.script import Knobs, counted_tokens
from proxy.serve import serve

from tests.conftest import MESSAGE, http_client, make_account


async def test_claude_code_output_request_is_clamped_to_the_cap(alice, simulator):
    """Claude Code on Sonnet 4.5: max_tokens 32000 with a thinking budget of 31999."""
    raw = await alice.anthropic(timeout=60).messages.with_raw_response.create(
        model="claude-sonnet-4-5-20250929", max_tokens=32000, messages=MESSAGE,
        thinking={"type": "enabled", "budget_tokens": 31999})
    assert raw.headers["x-cheaplm-max-tokens"] == "8192"
    assert raw.headers["x-cheaplm-thinking-budget"] == "8191"
    sent = simulator.seen()[-1].body
    assert sent["max_tokens"] == 8192 and sent["thinking"] == {"type": "enabled", "budget_tokens": 8191}
    assert (await raw.parse()).content[0].type == "thinking"


async def test_the_hold_is_sized_on_the_clamped_value(gateway):
    """A balance that covers the clamped request but not the one asked for: served."""
    model = gateway.gateway.catalog.resolve("claude-haiku-4.5")
    body = {"model": "claude-haiku-4.5", "max_tokens": 48000, "messages": MESSAGE}
    counted = counted_tokens(body, Knobs())  # the simulator's count: the hold is sized on it here
    clamped = counted_hold(replace(Parsed(body, model, False, 8192, "m")), counted)
    assert clamped < hold_amount(model, counted + 100, 48000)
    account = await make_account(gateway, "tight", credit_micro=clamped)
    async with account.http() as http:
        response = await http.post("/v1/messages", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["x-cheaplm-max-tokens"] == "8192"


async def test_a_budget_that_cannot_fit_drops_thinking(alice, simulator):
    from proxy.catalog import Catalog, DEFAULT_MODELS, apply_overrides

    gw = alice.running.gateway
    gw.catalog = Catalog.build(apply_overrides(DEFAULT_MODELS, {"claude-sonnet-4": {"max_output": 1000}}))
    gw.rules = replace(gw.rules, catalog=gw.catalog)
    async with alice.http() as http:
        response = await http.post("/v1/messages", json={
            "model": "claude-sonnet-4", "max_tokens": 32000, "messages": MESSAGE,
            "thinking": {"type": "enabled", "budget_tokens": 16000}})
    assert response.status_code == 200 and response.headers["x-cheaplm-thinking-budget"] == "0"
    assert "thinking" not in simulator.seen()[-1].body


async def test_opencode_title_request_on_haiku_streams(alice, simulator):
    async with alice.anthropic().messages.stream(model="claude-haiku-4-5", max_tokens=48000,
                                                 messages=MESSAGE) as stream:
        assert await stream.get_final_text()
    assert simulator.seen()[-1].body["max_tokens"] == 8192


async def test_openai_max_tokens_is_clamped_too(alice, simulator):
    raw = await alice.openai().chat.completions.with_raw_response.create(
        model="claude-sonnet-4.5", max_completion_tokens=32000, messages=[{"role": "user", "content": "hi"}],
        reasoning_effort="high")
    assert raw.headers["x-cheaplm-max-tokens"] == "8192"
    sent = simulator.seen()[-1].body
    assert sent["max_tokens"] == 8192 and sent["thinking"]["budget_tokens"] == 8191


@pytest.fixture
async def strict(nursery, config):
    return await nursery.start(serve, replace(config, max_tokens_policy="reject", model_fallback=False))


async def test_reject_policy_refuses_in_both_shapes(strict):
    account = await make_account(strict, "strict")
    with pytest.raises(anthropic.BadRequestError) as refused:
        await account.anthropic(timeout=60).messages.create(model="claude-sonnet-4.5", max_tokens=32000, messages=MESSAGE)
    assert "32000 > 8192" in refused.value.message
    with pytest.raises(openai.BadRequestError) as refused_openai:
        await account.openai().chat.completions.create(model="claude-sonnet-4.5", max_tokens=32000,
                                                      messages=[{"role": "user", "content": "hi"}])
    assert refused_openai.value.body["param"] == "max_tokens"
    assert (await account.account()).balance == 10_000_000


async def test_a_model_can_choose_its_own_policy(nursery, config):
    running = await nursery.start(serve, replace(config, model_overrides={
        "claude-opus-4.6": {"max_tokens_policy": "reject"}}))
    account = await make_account(running, "mixed")
    with pytest.raises(anthropic.BadRequestError):
        await account.anthropic(timeout=60).messages.create(model="claude-opus-4.6", max_tokens=64000, messages=MESSAGE)
    await account.anthropic(timeout=60).messages.create(model="claude-sonnet-4.6", max_tokens=64000, messages=MESSAGE)


@pytest.mark.parametrize("asked,served,upstream", [
    ("claude-sonnet-5", "claude-sonnet-4.6", "claude-sonnet-4-6"),
    ("claude-opus-4-8", "claude-opus-4.6", "claude-opus-4-6"),
    ("claude-haiku-5-0-20270101", "claude-haiku-4.5", "claude-haiku-4-5-20251001"),
])
async def test_newer_ids_of_a_known_family_fall_back(alice, simulator, asked, served, upstream):
    raw = await alice.anthropic().messages.with_raw_response.create(model=asked, max_tokens=100, messages=MESSAGE)
    assert raw.headers["x-cheaplm-model"] == served
    # the answer names the model as asked (Claude Code keeps thinking only while they match); the header says
    # which one served
    assert (await raw.parse()).model == asked and simulator.seen()[-1].model == upstream
    rows = await alice.running.gateway.store.usage("alice", 1)
    assert rows[0].model == served
    completion = await alice.openai().chat.completions.create(model=asked,
                                                              messages=[{"role": "user", "content": "hi"}])
    assert completion.model == asked
    listed = [m.id for m in (await alice.openai().models.list()).data]
    assert asked not in listed


async def test_an_explicit_alias_wins_over_the_fallback(nursery, config, simulator):
    running = await nursery.start(serve, replace(config, model_overrides={
        "claude-sonnet-4.5": {"aliases": ["claude-sonnet-5"]}}))
    account = await make_account(running, "aliased")
    raw = await account.anthropic().messages.with_raw_response.create(model="claude-sonnet-5", max_tokens=10,
                                                                      messages=MESSAGE)
    assert "x-cheaplm-model" not in raw.headers
    assert simulator.seen()[-1].model == "claude-sonnet-4-5-20250929"


async def test_fallback_off_and_unknown_families_are_404(strict):
    account = await make_account(strict, "nofallback")
    with pytest.raises(anthropic.NotFoundError):
        await account.anthropic().messages.create(model="claude-sonnet-5", max_tokens=10, messages=MESSAGE)
    with pytest.raises(openai.BadRequestError):
        await account.openai().chat.completions.create(model="claude-sonnet-5",
                                                      messages=[{"role": "user", "content": "hi"}])


async def test_unknown_family_is_still_404(alice):
    with pytest.raises(anthropic.NotFoundError):
        await alice.anthropic().messages.create(model="claude-sonata-9", max_tokens=10, messages=MESSAGE)
    with pytest.raises(anthropic.NotFoundError):
        await alice.anthropic().messages.create(model="gpt-4o", max_tokens=10, messages=MESSAGE)


async def test_base_url_probes_and_paths_without_v1(alice):
    async with http_client(alice.running) as http:
        head = await http.head("/")
        root = await http.get("/")
        probe = await http.head("/api/hello")
    assert head.status_code == 200 and probe.status_code == 200 and root.status_code == 200 and root.json()["service"] == "CheapLM gateway"
    async with alice.http() as http:
        messages = await http.post("/messages", json={"model": "claude-haiku-4.5", "max_tokens": 10,
                                                      "messages": MESSAGE})
        count = await http.post("/messages/count_tokens", json={"model": "claude-haiku-4.5", "messages": MESSAGE})
        chat = await http.post("/chat/completions", json={"model": "claude-haiku-4.5",
                                                          "messages": [{"role": "user", "content": "hi"}]})
        models = await http.get("/models")
        one = await http.get("/models/claude-haiku-4.5")
    assert [r.status_code for r in (messages, count, chat, models, one)] == [200] * 5
    assert chat.json()["object"] == "chat.completion" and count.json()["input_tokens"] > 0
