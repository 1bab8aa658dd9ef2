"""proxy/metering/: every way a request's hold is closed, against a fake store,
with trio's MockClock for the background retries (no real waiting)."""

from __future__ import annotations

import itertools
import logging
from types import SimpleNamespace

import pytest
import trio

from proxy import errors
from proxy.adaptors.anthropic import AnthropicAdaptor
from proxy.adaptors.base import RequestRules
from proxy.billing import usage_cost
from proxy.catalog import default_catalog
from proxy.metering.meter import GIVE_UP_SETTLING_AFTER, RECLAIM_EVERY, RETRY_PAUSES
from proxy.metering.settle import StreamEnd, settle_answer, settle_stream_end, settle_unfinished, stream_end
from proxy.metering.ticket import CLIENT_CLOSED, Ticket
from proxy.protocol.usage import Usage
from storage.base import (Account, AmountOutOfRange, InsufficientBalance, KeyRecord, NotFound, StoreError,
                          StoreUnavailable)

ACCOUNT = Account(1, "alice", 5_000_000, 0, "")
KEY = KeyRecord(1, 1, "alice", "cheaplm_abcdef", "h", "k")
USAGE = Usage(input_tokens=1200, output_tokens=300)


class FakeStore:
    """Records every call; ``failures[name]`` is a list of exceptions its next calls raise."""

    def __init__(self, **failures):
        self.failures = {name: list(errs) for name, errs in failures.items()}
        self.calls: list[tuple] = []
        self.late = 0  # what charge_recovered charges

    def _maybe_fail(self, name):
        queue = self.failures.get(name)
        if queue:
            raise queue.pop(0)

    async def settle(self, hold_id, row):
        self.calls.append(("settle", hold_id, row))
        self._maybe_fail("settle")
        return ACCOUNT

    async def release(self, hold_id, row):
        self.calls.append(("release", hold_id, row))
        self._maybe_fail("release")
        return ACCOUNT

    async def charge_recovered(self, hold_id, row):
        self.calls.append(("charge_recovered", hold_id, row))
        return self.late

    async def extend_hold(self, hold_id, extra):
        self.calls.append(("extend_hold", hold_id, extra))
        self._maybe_fail("extend_hold")


def _ticket(store, nursery=None, stream=True, max_tokens=1000):
    raw = (b'{"model":"claude-sonnet-4.5","max_tokens":%d,"stream":%s,"messages":[{"role":"user","content":"hi"}]}'
           % (max_tokens, b"true" if stream else b"false"))
    parsed = AnthropicAdaptor().parse(raw, RequestRules(default_catalog()))
    meter = SimpleNamespace(store=store, after_response=nursery, outcomes=[], holds_open=1, closes_pending=0,
                            lease=None)
    meter.record = meter.outcomes.append
    return Ticket(meter, "req_1", KEY, parsed, "messages", hold_id=7, started=0.0, held=100_000)


def _only(store, name):
    calls = [c for c in store.calls if c[0] == name]
    assert len(calls) == 1, store.calls
    return calls[0][2]


# -- Ticket.settle / release / close -----------------------------------------------------------

async def test_settle_charges_the_usage_once_and_closes():
    store = FakeStore()
    ticket = _ticket(store)
    cost, account = await ticket.settle(USAGE)
    row = _only(store, "settle")
    assert ticket.closed and account is ACCOUNT
    assert cost == row.cost == usage_cost(USAGE, ticket.parsed.model.prices)
    assert (row.status, row.partial, row.error_type, row.model) == (200, False, None, "claude-sonnet-4.5")


async def test_a_charge_the_ledger_refuses_releases_the_hold_instead():
    store = FakeStore(settle=[AmountOutOfRange("too big")])
    ticket = _ticket(store)
    cost, _ = await ticket.settle(USAGE)
    assert cost > 0  # (what was asked; the ledger recorded a release)
    assert ticket.closed and _only(store, "release").error_type == "charge_refused"
    assert _only(store, "release").cost == 0


async def test_a_hold_recovered_by_another_instance_is_not_charged_twice():
    store = FakeStore(settle=[NotFound("gone")])
    store.late = 123
    ticket = _ticket(store)
    with pytest.raises(NotFound):
        await ticket.settle(USAGE)
    assert ticket.closed and not [c for c in store.calls if c[0] == "release"]
    # the rest of what the client received is charged late, once
    assert _only(store, "charge_recovered").cost == usage_cost(USAGE, ticket.parsed.model.prices)
    assert ticket.meter.outcomes[-1].cost == 123


async def test_a_stream_stops_at_once_when_the_lease_is_lost():
    store = FakeStore()
    ticket = _ticket(store)
    await ticket.may_relay()  # (no lease watched: nothing to check)
    with trio.CancelScope() as relaying:
        ticket.relaying = relaying
        ticket.stop()
        await trio.sleep_forever()
    assert relaying.cancelled_caught and ticket.lease_lost
    with pytest.raises(errors.GatewayError) as stopped:
        await ticket.may_relay()
    assert stopped.value.status == 503


async def test_no_output_is_relayed_while_the_lease_may_have_lapsed(autojump_clock):
    from proxy.metering.lease import LeaseWatch

    class Instance:
        renewed, beats = True, 0

        async def heartbeat(self):
            self.beats += 1
            return self.renewed

    instance = Instance()
    ticket = _ticket(FakeStore())
    lease = LeaseWatch(instance, 15.0)
    ticket.meter.lease = lease
    stopped = []
    lease.on_lost = lambda: stopped.append(True)
    lease.beat(trio.current_time(), True)
    await ticket.may_relay()
    assert instance.beats == 0  # within the lease: no store call
    await trio.sleep(20)  # (paused past the lease)
    await ticket.may_relay()  # confirmed by a heartbeat that renewed it
    assert instance.beats == 1 and lease.valid()
    await trio.sleep(20)
    instance.renewed = False  # another instance had recovered the holds meanwhile
    with pytest.raises(errors.GatewayError):
        await ticket.may_relay()
    assert instance.beats == 2 and stopped == [True]


async def test_release_of_a_recovered_hold_is_quiet():
    store = FakeStore(release=[NotFound("gone")])
    ticket = _ticket(store)
    await ticket.release(502, "api_error")
    assert ticket.closed


async def test_close_never_raises_a_store_error(caplog):
    store = FakeStore(settle=[StoreError("disk on fire")])
    ticket = _ticket(store, nursery=None)
    with caplog.at_level(logging.ERROR, "cheaplm.metering"):
        await ticket.close(USAGE, 200)
    assert ticket.closed and len(store.calls) == 1
    assert "closing its hold failed" in caplog.text and "left open" in caplog.text


async def test_a_hard_failure_at_close_is_retried_and_the_hold_released_when_the_charge_keeps_failing(
        autojump_clock, caplog):
    """No hold outlives its request: a charge the store refuses hard is tried a few times,
    then the hold is released so the balance it reserves comes back."""
    store = FakeStore(settle=[StoreError("disk on fire")] * (GIVE_UP_SETTLING_AFTER + 1))
    with caplog.at_level(logging.ERROR, "cheaplm.metering"):
        async with trio.open_nursery() as nursery:
            ticket = _ticket(store, nursery)
            await ticket.close(USAGE, 200)
            assert ticket.meter.closes_pending == 1
    assert [c[0] for c in store.calls] == ["settle"] * (GIVE_UP_SETTLING_AFTER + 1) + ["release"]
    assert _only(store, "release").error_type == "ledger_error" and ticket.meter.closes_pending == 0
    assert "released instead" in caplog.text
    assert len(ticket.meter.outcomes) == 1


async def test_settle_is_shielded_from_a_cancelled_client():
    store = FakeStore()
    ticket = _ticket(store)
    with trio.CancelScope() as scope:
        scope.cancel()
        await ticket.close(USAGE, CLIENT_CLOSED, partial=True, error_type="client_disconnected")
    assert ticket.closed and _only(store, "settle").status == CLIENT_CLOSED


# -- background retries while the ledger is unavailable (MockClock) ------------------------------

async def test_an_unavailable_ledger_is_retried_in_the_background_until_it_records(autojump_clock):
    store = FakeStore(settle=[StoreUnavailable("locked")] * 4)
    async with trio.open_nursery() as nursery:
        ticket = _ticket(store, nursery)
        started = trio.current_time()
        await ticket.close(USAGE, 200)
        assert ticket.closed  # nothing else closes it from here on
    settles = [c for c in store.calls if c[0] == "settle"]
    assert len(settles) == 5 and all(c[2].cost == settles[0][2].cost for c in settles)
    assert trio.current_time() - started == pytest.approx(sum(RETRY_PAUSES[:4]))


async def test_retries_go_on_past_ten_minutes_for_as_long_as_the_process_lives(autojump_clock):
    store = FakeStore(release=[StoreUnavailable("locked")] * (len(RETRY_PAUSES) + 5))
    async with trio.open_nursery() as nursery:
        ticket = _ticket(store, nursery)
        started = trio.current_time()
        await ticket.close(None, 502, error_type="api_error")
    assert len(store.calls) == len(RETRY_PAUSES) + 6  # the last one recorded it
    assert trio.current_time() - started == pytest.approx(sum(RETRY_PAUSES) + 5 * RECLAIM_EVERY)
    assert ticket.meter.closes_pending == 0


async def test_a_hard_failure_during_retries_turns_the_charge_into_a_release(autojump_clock):
    store = FakeStore(settle=[StoreUnavailable("locked")] + [StoreError("corrupt")] * GIVE_UP_SETTLING_AFTER)
    async with trio.open_nursery() as nursery:
        await _ticket(store, nursery).close(USAGE, 200)
    assert [c[0] for c in store.calls] == ["settle"] * (GIVE_UP_SETTLING_AFTER + 1) + ["release"]


async def test_without_a_background_nursery_the_hold_is_left_to_recovery(caplog):
    store = FakeStore(settle=[StoreUnavailable("locked")])
    ticket = _ticket(store, nursery=None)
    with caplog.at_level(logging.ERROR, "cheaplm.metering"):
        await ticket.close(USAGE, 200)
    assert ticket.closed and len(store.calls) == 1 and "left open" in caplog.text


# -- a whole answer and a complete stream ------------------------------------------------------

async def test_a_whole_answer_not_recorded_is_not_delivered_and_its_hold_released_later(autojump_clock):
    store = FakeStore(settle=[StoreUnavailable("locked", retry_after=3)])
    async with trio.open_nursery() as nursery:
        ticket = _ticket(store, nursery, stream=False)
        with pytest.raises(errors.GatewayError) as refused:
            await settle_answer(ticket, USAGE)
    assert refused.value.status == 503 and ("retry-after", "3") in refused.value.headers
    assert _only(store, "release").error_type == "ledger_unavailable" and _only(store, "release").cost == 0


async def test_a_whole_answer_the_ledger_fails_hard_on_leaves_the_ticket_to_its_owner():
    store = FakeStore(settle=[StoreError("corrupt")])
    ticket = _ticket(store, stream=False)
    with pytest.raises(errors.GatewayError) as refused:
        await settle_answer(ticket, USAGE)
    assert refused.value.status == 503 and not ticket.closed  # the relay releases it


async def test_a_stream_end_not_recorded_is_charged_later_as_partial(autojump_clock):
    store = FakeStore(settle=[StoreUnavailable("locked")])
    async with trio.open_nursery() as nursery:
        ticket = _ticket(store, nursery)
        with pytest.raises(errors.GatewayError) as refused:
            await settle_stream_end(ticket, USAGE)
    assert refused.value.status == 503
    first, retried = [c[2] for c in store.calls]
    assert (retried.partial, retried.error_type, retried.cost) == (True, "ledger_unavailable", first.cost)


# -- a stream that did not end in a recorded settlement -------------------------------------------

FAILURE = errors.upstream_timeout("stream (no data within the idle timeout)")


@pytest.mark.parametrize("saw_start, saw_stop, upstream_error, failure, disconnected, delivered",
                         list(itertools.product([False, True], [False, True], [None, {"type": "overloaded_error"}],
                                                [None, FAILURE], [False, True], [0, 5])))
def test_stream_end_covers_every_combination(saw_start, saw_stop, upstream_error, failure, disconnected,
                                             delivered):
    end = stream_end(saw_start, saw_stop, upstream_error, failure, disconnected, delivered)
    if saw_stop and upstream_error is None and failure is None and not disconnected:
        assert end == StreamEnd("full", 200, None)
        return
    # The most specific reason wins: the upstream's own error, then ours, then the client's.
    if upstream_error is not None:
        assert (end.status, end.error_type) == (200, "overloaded_error")
    elif failure is not None:
        assert (end.status, end.error_type) == (504, "timeout_error")
    elif disconnected:
        assert (end.status, end.error_type) == (CLIENT_CLOSED, "client_disconnected")
    else:
        assert (end.status, end.error_type) == (500, "gateway_error")
    # Charged only for what reached the client, and only once the stream had started.
    assert end.charge == ("partial" if saw_start and delivered else "none")


def _tap(saw_start=True, saw_stop=False, error=None, output=2):
    return SimpleNamespace(saw_message_start=saw_start, saw_message_stop=saw_stop, error=error,
                           usage=Usage(input_tokens=50, output_tokens=output))


async def test_a_disconnected_stream_is_charged_for_what_it_delivered():
    store = FakeStore()
    ticket = _ticket(store)
    await settle_unfinished(ticket, _tap(output=2), delivered=9, disconnected=True, failure=None)
    row = _only(store, "settle")
    assert (row.partial, row.status, row.output_tokens, row.input_tokens) == (True, CLIENT_CLOSED, 9, 50)


async def test_a_partial_charge_never_passes_max_tokens():
    store = FakeStore()
    ticket = _ticket(store, max_tokens=20)
    await settle_unfinished(ticket, _tap(output=2), delivered=500, disconnected=True, failure=None)
    assert _only(store, "settle").output_tokens == 20


async def test_a_partial_charge_never_passes_the_hold():
    store = FakeStore()
    ticket = _ticket(store, max_tokens=1000)
    ticket.held = 1_000  # $0.001: less than 1000 output tokens of sonnet ($0.015)
    await settle_unfinished(ticket, _tap(output=2), delivered=1000, disconnected=True, failure=None)
    row = _only(store, "settle")
    assert row.partial and row.cost == 1_000
    ticket.progress, ticket.tap = SimpleNamespace(tokens=5000), _tap(output=2)
    assert ticket.checkpoint_row().cost == 1_000 and ticket.checkpoint_row().output_tokens == 1000


async def test_a_stream_that_delivered_nothing_is_released():
    store = FakeStore()
    await settle_unfinished(_ticket(store), _tap(saw_start=True), delivered=0, disconnected=False,
                            failure=FAILURE)
    assert _only(store, "release").status == 504


async def test_a_stream_that_completed_after_all_is_charged_in_full():
    store = FakeStore()
    await settle_unfinished(_ticket(store), _tap(saw_stop=True, output=30), delivered=30, disconnected=False,
                            failure=None)
    row = _only(store, "settle")
    assert (row.partial, row.status, row.output_tokens) == (False, 200, 30)


async def test_with_an_after_response_nursery_the_settlement_runs_after_the_handler():
    store = FakeStore()
    async with trio.open_nursery() as nursery:
        ticket = _ticket(store, nursery)
        await settle_unfinished(ticket, _tap(), delivered=4, disconnected=True, failure=None)
        assert ticket.closed and store.calls == []  # scheduled, not yet run
    assert _only(store, "settle").output_tokens == 4


async def test_a_failing_background_settlement_is_logged_not_raised(caplog):
    class Broken(FakeStore):
        async def settle(self, hold_id, row):
            raise RuntimeError("bug")

    with caplog.at_level(logging.ERROR, "cheaplm.metering"):
        async with trio.open_nursery() as nursery:
            await settle_unfinished(_ticket(Broken(), nursery), _tap(), 4, True, None)
    assert "settling request req_1 failed" in caplog.text


# -- the hold grows to the real prompt at message_start --------------------------------------------

async def test_the_hold_is_left_alone_when_the_estimate_covered_the_prompt():
    store = FakeStore()
    ticket = _ticket(store)
    ticket.held = 10**9
    await ticket.cover_real_input(Usage(input_tokens=10))
    assert store.calls == []


async def test_the_hold_grows_to_the_real_prompt():
    store = FakeStore()
    ticket = _ticket(store, max_tokens=1000)
    ticket.held = 1
    await ticket.cover_real_input(Usage(input_tokens=100_000))
    prices = ticket.parsed.model.prices
    needed = usage_cost(Usage(input_tokens=100_000), prices) + usage_cost(Usage(output_tokens=1000), prices)
    assert store.calls == [("extend_hold", 7, needed - 1)] and ticket.held == needed


@pytest.mark.parametrize("failure, status", [(InsufficientBalance(5, 500), 402), (StoreUnavailable("x", 4), 503)])
async def test_a_prompt_the_balance_or_ledger_cannot_cover_ends_the_stream(failure, status):
    store = FakeStore(extend_hold=[failure])
    ticket = _ticket(store)
    ticket.held = 1
    with pytest.raises(errors.GatewayError) as refused:
        await ticket.cover_real_input(Usage(input_tokens=100_000))
    assert refused.value.status == status and ticket.held == 1 and not ticket.closed


# -- the one hook: every way a ticket closes records exactly one outcome -------------------------

@pytest.mark.parametrize("failures, usage, expect", [
    ({}, USAGE, (200, None, True)),
    ({}, None, (502, "api_error", False)),
    ({"settle": [AmountOutOfRange("x")]}, USAGE, (200, "charge_refused", False)),
    ({"settle": [StoreError("corrupt")]}, USAGE, (200, None, True)),
    ({"release": [StoreError("corrupt")]}, None, (502, "api_error", False)),
    ({"settle": [StoreUnavailable("locked")] * 3}, USAGE, (200, None, True)),
    ({"release": [NotFound("gone")]}, None, (502, "api_error", False)),
])
async def test_every_close_records_one_outcome(autojump_clock, failures, usage, expect):
    store = FakeStore(**failures)
    async with trio.open_nursery() as nursery:
        ticket = _ticket(store, nursery)
        ticket.served("backup", 2)
        await ticket.close(usage, 200 if usage else 502, error_type=None if usage else "api_error")
    outcomes = ticket.meter.outcomes
    assert len(outcomes) == 1, outcomes
    outcome = outcomes[0]
    status, error_type, charged = expect
    assert (outcome.status, outcome.channel, outcome.attempts, outcome.key_prefix) == (status, "backup", 2,
                                                                                      KEY.prefix)
    assert outcome.error_type in (error_type, "ledger_error")
    assert (outcome.cost > 0) == charged and outcome.username == "alice"


async def test_the_outcome_tells_the_rate_window_what_was_really_used():
    finished = []
    store = FakeStore()
    ticket = _ticket(store)

    async def finish(tokens):
        finished.append(tokens)
    ticket.admission = SimpleNamespace(finish=finish)
    await ticket.close(USAGE, 200)
    await ticket.close(USAGE, 200)  # (a second close is a bug elsewhere; the hook still runs once)
    assert finished == [1500]
