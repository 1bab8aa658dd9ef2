"""A stateful property test of the ledger (hypothesis RuleBasedStateMachine), against every
Store backend of backends.py: random holds, growth, settles (and their replays), releases,
partial charges, transfers (with idempotency keys, replayed and reused), credits, redeems,
and an instance killed mid-operation (an operation cancelled in flight, the store dropped
without unregistering) whose ledger is reopened from its file by a new instance that
recovers the dead one's holds. After every step: each balance is the sum of its ledger
entries, no balance nor available balance is below zero, every request is settled at most
once and every closed one exactly once, no open hold lacks a live owner, and the store's
own check finds nothing.

CI runs a fixed set of examples (``derandomize``: the same every run). A longer, random run
on demand: ``CHEAPLM_LEDGER_EXAMPLES=500 pytest tests/storage/test_ledger_machine.py -s``
(each example is up to ``CHEAPLM_LEDGER_STEPS`` steps, 25 by default); ``-s`` prints the
number of steps run.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import pytest
import trio
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from storage.base import (CodeRefused, IdempotencyConflict, InsufficientBalance, NotFound, SpendCapReached,
                          StoreError)

from ..conftest import pg_database_url
from .backends import BACKENDS
from .helpers import row

EXAMPLES = int(os.environ.get("CHEAPLM_LEDGER_EXAMPLES", "0"))
STEPS = int(os.environ.get("CHEAPLM_LEDGER_STEPS", "25"))
settings.register_profile("ledger-ci", max_examples=20, stateful_step_count=STEPS, derandomize=True,
                          database=None, deadline=None, suppress_health_check=list(HealthCheck))
settings.register_profile("ledger-long", max_examples=EXAMPLES or 1, stateful_step_count=STEPS, derandomize=False,
                          database=None, deadline=None, suppress_health_check=list(HealthCheck))
PROFILE = "ledger-long" if EXAMPLES else "ledger-ci"

USERS = ("u0", "u1", "u2")
LEASE = 30.0


def machine_for(spec, steps: list[int], database: str | None = None):
    """The state machine class for one backend (``database``: the session's PostgreSQL
    database, where each example gets a schema of its own); ``steps``: [store
    operations, steps checked]."""

    class LedgerMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.dir = tempfile.mkdtemp(prefix="ledger-machine-")
            self.backend = spec.make(Path(self.dir), database)
            self.now = [1_800_000_000.0]
            self.generation = 0
            self.seq = 0
            self.open: dict[int, tuple[str, int, str]] = {}   # hold id -> (user, amount, request id)
            self.closed: dict[str, tuple[int, str]] = {}      # request id -> (hold id, "settled"/"released")
            self.idempotent: dict[str, tuple[str, int]] = {}  # idempotency key -> (receiver, amount)
            self.store = trio.from_thread.run(self._open)
            self.ids = trio.from_thread.run(self._users)

        # -- plumbing --------------------------------------------------------------------
        async def _open(self):
            self.generation += 1
            store = await self.backend.open(f"gen-{self.generation}", clock=lambda: self.now[0])
            await store.register_instance(LEASE)
            return store

        async def _users(self) -> dict[str, tuple[int, int]]:
            ids = {}
            for i, user in enumerate(USERS):
                account = await self.store.create_user(user)
                key = await self.store.create_key(user, f"sk-cl-key{i}xxxx", "h", "k", None, True, (), None)
                ids[user] = (account.id, key.id)
            await self.store.set_key_limits("sk-cl-key2xxxx", {"daily_usd": 6_000})  # u2's key is capped
            return ids

        def call(self, fn, *args):
            steps[0] += 1
            return trio.from_thread.run(fn, *args)

        def request_id(self) -> str:
            self.seq += 1
            return f"req-{self.seq}"

        def pick(self, index: int) -> tuple[int, tuple[str, int, str]]:
            hold_id = sorted(self.open)[index % len(self.open)]
            return hold_id, self.open[hold_id]

        def teardown(self) -> None:
            trio.from_thread.run(self.store.aclose)

        # -- rules -----------------------------------------------------------------------
        @rule(user=st.sampled_from(USERS), amount=st.integers(1, 5_000))
        def credit(self, user, amount):
            self.call(self.store.credit, user, amount, "credit")

        @rule(user=st.sampled_from(USERS), credit=st.integers(1, 3_000), twice=st.booleans())
        def redeem(self, user, credit, twice):
            code_hash = hashlib.sha256(self.request_id().encode()).hexdigest()
            self.call(self.store.create_codes, [(code_hash, "hint")], credit // 30 or 1, credit, None)
            self.call(self.store.redeem_code, code_hash, user)
            if twice:
                with pytest.raises(CodeRefused):
                    self.call(self.store.redeem_code, code_hash, user)

        @rule(user=st.sampled_from(USERS), amount=st.integers(1, 1_500))
        def hold(self, user, amount):
            account_id, key_id = self.ids[user]
            request_id = self.request_id()
            available = self.call(self.store.get_account, user).available
            try:
                hold_id = self.call(self.store.place_hold, account_id, amount, request_id, key_id)
            except InsufficientBalance:
                assert available < amount
                return
            except SpendCapReached:
                assert user == "u2"
                return
            assert available >= amount
            self.open[hold_id] = (user, amount, request_id)

        @precondition(lambda self: self.open)
        @rule(index=st.integers(0, 100), extra=st.integers(1, 2_000))
        def grow(self, index, extra):
            hold_id, (user, amount, request_id) = self.pick(index)
            try:
                self.call(self.store.extend_hold, hold_id, extra)
            except (InsufficientBalance, SpendCapReached):
                return
            self.open[hold_id] = (user, amount + extra, request_id)

        @precondition(lambda self: self.open)
        @rule(index=st.integers(0, 100), share=st.integers(0, 200), partial=st.booleans(), replay=st.booleans())
        def settle(self, index, share, partial, replay):
            hold_id, (user, amount, request_id) = self.pick(index)
            cost = amount * share // 100  # up to twice the hold: the ledger bounds it
            usage = row(request_id, self.ids[user][1], cost, partial=partial, output_tokens=cost)
            if partial:  # a checkpoint first, as a stream's would be
                self.call(self.store.record_progress, [(hold_id, row(request_id, self.ids[user][1], cost // 2,
                                                                       partial=True))])
            before = self.call(self.store.get_account, user)
            after = self.call(self.store.settle, hold_id, usage)
            assert after.balance >= 0 and before.balance - after.balance <= max(cost, 0)
            del self.open[hold_id]
            self.closed[request_id] = (hold_id, "settled")
            if replay:  # a retry after a lost reply: the account, nothing moved again
                again = self.call(self.store.settle, hold_id, usage)
                assert (again.balance, again.held) == (after.balance, after.held)

        @precondition(lambda self: self.open)
        @rule(index=st.integers(0, 100))
        def release(self, index):
            hold_id, (user, _, request_id) = self.pick(index)
            self.call(self.store.release, hold_id, row(request_id, self.ids[user][1], 0, status=502))
            del self.open[hold_id]
            self.closed[request_id] = (hold_id, "released")

        @precondition(lambda self: self.closed)
        @rule(index=st.integers(0, 100))
        def close_again(self, index):
            """A closed hold is never closed a second time for another request."""
            request_id = sorted(self.closed)[index % len(self.closed)]
            hold_id, _ = self.closed[request_id]
            with pytest.raises(NotFound):
                self.call(self.store.settle, hold_id, row("someone-else", self.ids["u0"][1], 1))

        @rule(sender=st.sampled_from(USERS), receiver=st.sampled_from(USERS), amount=st.integers(1, 3_000),
              idem=st.sampled_from((None, "k1", "k2", "k3")), by_key=st.booleans())
        def transfer(self, sender, receiver, amount, idem, by_key):
            account_id, key_id = self.ids[sender]
            key_id = key_id if by_key else None
            before = self.call(self.store.get_account, sender)
            try:
                if idem is None:
                    self.call(self.store.transfer, account_id, receiver, amount, self.request_id(), key_id)
                else:
                    receipt = self.call(self.store.transfer_once, account_id, receiver, amount, self.request_id(),
                                        key_id, f"{sender}:{idem}", f"{receiver}:{amount}")
                    first = self.idempotent.setdefault(f"{sender}:{idem}", (receiver, amount))
                    assert first == (receiver, amount)
                    if receipt.replayed:
                        assert self.call(self.store.get_account, sender).balance == before.balance
            except IdempotencyConflict:
                assert self.idempotent[f"{sender}:{idem}"] != (receiver, amount)
            except InsufficientBalance:
                assert before.available < amount
            except SpendCapReached:
                assert sender == "u2" and by_key
            except StoreError as exc:  # to yourself
                assert sender == receiver, exc

        @rule(in_flight=st.booleans(), user=st.sampled_from(USERS), amount=st.integers(1, 2_000))
        def kill_and_restart(self, in_flight, user, amount):
            """The process dies (mid-operation: a hold being placed is cancelled in flight and
            may or may not have been written); a new instance opens the ledger from its file
            once the dead one's lease has lapsed, and recovers its holds."""
            old = self.store
            if in_flight:
                async def cut():
                    with trio.move_on_after(0):
                        try:
                            await old.place_hold(self.ids[user][0], amount, self.request_id(), self.ids[user][1])
                        except StoreError:
                            pass  # (refused: nothing to recover)
                self.call(cut)
            self.call(old.aclose)  # (no unregister: it died)
            self.now[0] += LEASE + 1
            self.store = self.call(self._open)
            self.call(self.store.recover_orphaned_holds)
            for hold_id, (_, _, request_id) in self.open.items():
                self.closed[request_id] = (hold_id, "recovered")
            self.open.clear()

        # -- invariants ------------------------------------------------------------------
        @invariant()
        def the_ledger_holds(self):
            store = self.store
            assert self.call(store.check) == []
            open_holds = 0
            for user in USERS:
                account = self.call(store.get_account, user)
                entries = self.call(store.ledger, user)
                assert account.balance == sum(e.delta for e in entries)
                assert account.balance >= 0 and account.balance - account.held >= 0
                open_holds += account.held
            assert open_holds == sum(amount for _, amount, _ in self.open.values())
            raw = self.backend.raw()
            try:
                orphans = raw.execute("SELECT COUNT(*) FROM holds WHERE state = 'open' AND (owner IS NULL OR "
                                      "owner NOT IN (SELECT id FROM instances))").fetchone()[0]
                rows = dict(raw.execute("SELECT request_id, COUNT(*) FROM usage GROUP BY request_id").fetchall())
            finally:
                raw.close()
            assert orphans == 0
            for request_id, (_, how) in self.closed.items():  # settled or released exactly once
                if how != "recovered":  # (a recovered hold has a row only if it had progress to charge)
                    assert rows.get(request_id) == 1, request_id
            assert all(count == 1 for count in rows.values())
            steps[1] += 1

    return LedgerMachine


@pytest.mark.parametrize("spec", [s for s in BACKENDS if s.shared], ids=lambda s: s.name)
async def test_the_ledger_under_random_operations_and_crashes(spec, request):
    database = pg_database_url(request) if spec.postgres else None
    steps = [0, 0]
    machine = machine_for(spec, steps, database)
    await trio.to_thread.run_sync(lambda: run_state_machine_as_test(machine, settings=settings.get_profile(PROFILE)))
    print(f"ledger state machine on {spec.name}: {steps[1]} steps checked, {steps[0]} store operations ({PROFILE})")
    assert steps[1] > 0
