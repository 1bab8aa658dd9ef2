"""The supervisor's decisions, pure: restart delays, a worker's end in words, the exit code."""

from __future__ import annotations

import signal

from proxy.workers import policy
from proxy.workers.policy import Restarts


def test_a_crash_loop_backs_off_doubling_up_to_the_cap():
    restarts, delays = Restarts(), []
    for _ in range(10):
        restarts = restarts.after_death(ran_for=0.1)
        delays.append(restarts.delay)
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]
    assert Restarts(10_000).delay == policy.RESTART_MAX  # no overflow however long the loop


def test_a_worker_that_ran_a_while_starts_a_new_streak():
    looping = Restarts(6)
    assert looping.after_death(ran_for=policy.STABLE_AFTER - 1).delay == 30.0
    assert looping.after_death(ran_for=policy.STABLE_AFTER).delay == 0.5
    assert Restarts().delay == 0.0


def test_a_workers_end_in_words():
    assert policy.ending(1) == "exited with code 1"
    assert policy.ending(0) == "exited with code 0"
    assert policy.ending(-signal.SIGKILL) == "was killed by SIGKILL"
    assert policy.ending(-200) == "was killed by signal 200"
    assert policy.ending(None) == "could not be started"


def test_exit_codes_and_the_stop_deadline():
    assert policy.exit_code(signal.SIGTERM, failed=False) == 0
    assert policy.exit_code(signal.SIGINT, failed=False) == 130
    assert policy.exit_code(None, failed=True) == 1
    assert policy.stop_deadline(30.0) == 30.0 + policy.STOP_MARGIN
