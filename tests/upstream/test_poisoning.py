"""Channel poisoning (issue 18): a request that fails the same way on every channel
says more about the request than about the channels. A prompt the upstream answers
with a 500 everywhere, sent in loops, must not open the circuits an innocent client
needs; a channel that fails on its own still has its circuit opened."""

from __future__ import annotations

import anthropic
import pytest
import trio

from proxy.upstream.health import ChannelHealth, HealthPolicy
from tests.upstream.conftest import _ask, _channel, _gateway, _simulator

POISON = "[sim fault=500] this prompt fails on every channel"


async def test_four_poisoning_loops_leave_an_innocent_client_served(nursery, config):
    sims = [await _simulator(nursery) for _ in range(3)]
    running, alice = await _gateway(nursery, config, [_channel(f"c{i}", s.url) for i, s in enumerate(sims)],
                                    failures_to_open=3)
    poisoned = []

    async def poison_loop() -> None:
        for _ in range(8):
            with pytest.raises(anthropic.APIStatusError) as refused:
                await _ask(alice.anthropic(), POISON)
            poisoned.append(refused.value.status_code)

    served = 0
    async with trio.open_nursery() as loops:
        for _ in range(4):
            loops.start_soon(poison_loop)
        for i in range(12):
            answer = await _ask(alice.anthropic(), f"innocent question {i}")
            served += bool(answer.content[0].text)
            await trio.sleep(0.01)
    assert served == 12
    assert len(poisoned) == 32 and set(poisoned) == {500}  # the sender gets its own failure, never a 529
    now = trio.current_time()
    assert {running.gateway.upstream.state.health(f"c{i}").state(now) for i in range(3)} == {"healthy"}
    # Every poisoned request was tried on all three channels (max_attempts = 3).
    assert sum(len(sim.seen()) for sim in sims) == 32 * 3 + 12


async def test_a_channel_failing_on_its_own_still_opens_its_circuit(nursery, config):
    """The other side: one channel answers 500 to everything while the others serve the
    same requests: its failures are its own, and three distinct requests open it."""
    broken = await _simulator(nursery, fault="500")
    good = await _simulator(nursery)
    running, alice = await _gateway(nursery, config, [_channel("broken", broken.url),
                                                      _channel("good", good.url, priority=1)],
                                    failures_to_open=3)
    for i in range(5):
        await _ask(alice.anthropic(), f"q{i}")
    assert len(broken.seen()) == 3
    assert running.gateway.upstream.state.health("broken").state(trio.current_time()) == "open"


async def test_one_channel_alone_is_not_opened_by_one_prompt_in_a_loop(nursery, config):
    """With one channel there is nothing to compare with: the same request failing again
    and again counts once, so the circuit stays closed for everyone else."""
    only = await _simulator(nursery)
    running, alice = await _gateway(nursery, config, [_channel("only", only.url)], failures_to_open=3)
    for _ in range(10):
        with pytest.raises(anthropic.APIStatusError) as refused:
            await _ask(alice.anthropic(), POISON)
        assert refused.value.status_code == 500
    assert (await _ask(alice.anthropic(), "innocent")).content[0].text
    assert running.gateway.upstream.state.health("only").state(trio.current_time()) == "healthy"


def test_a_run_of_failures_counts_each_request_once():
    h = ChannelHealth(HealthPolicy(failures_to_open=3, open_base=5))
    for _ in range(10):
        h.failed(0, "same request")
    assert (h.state(0), h.failures) == ("healthy", 1)
    h.failed(1, "another")
    h.failed(2, "a third")
    assert h.state(2) == "open"
    h.begin(7)  # the probe, though a request seen before, reopens the circuit when it fails
    h.failed(7, "same request")
    assert h.state(7) == "open" and h.until(7) == 17
    h.begin(17)
    h.succeeded()
    h.failed(18, "a third")  # a success ends the run: the request counts again
    assert h.failures == 1
