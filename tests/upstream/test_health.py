"""proxy/upstream/health.py: a channel's states, driven with plain numbers for time."""

from proxy.upstream.health import ChannelHealth, HealthPolicy

POLICY = HealthPolicy(cooldown=30, max_cooldown=600, failures_to_open=3, open_base=5, open_max=40)


def test_a_rate_limited_channel_rests_for_its_retry_after_then_is_healthy():
    h = ChannelHealth(POLICY)
    h.rate_limited(100, 7)
    assert (h.state(100), h.available(106.9), h.available(107), h.state(107)) == ("cooling", False, True, "healthy")
    assert h.until(100) == 107


def test_without_retry_after_the_default_cooldown_and_never_beyond_the_maximum():
    h = ChannelHealth(POLICY)
    h.rate_limited(0, None)
    assert h.until(0) == 30
    h.rate_limited(0, 10**9)
    assert h.until(0) == 600
    h.rate_limited(0, -5)  # a nonsense retry-after never shortens a rest already due
    assert h.until(0) == 600


def test_failures_open_the_circuit_then_one_probe_closes_it():
    h = ChannelHealth(POLICY)
    h.failed(0)
    h.failed(1)
    assert h.available(1)  # two failures: still healthy
    h.failed(2)
    assert (h.state(2), h.available(6.9)) == ("open", False)
    assert h.available(7)
    h.begin(7)
    assert (h.state(7), h.available(7)) == ("probing", False)  # only one probe at a time
    h.succeeded()
    assert (h.state(8), h.available(8), h.opened) == ("healthy", True, 0)


def test_a_failed_probe_opens_the_circuit_for_twice_as_long_up_to_the_maximum():
    h = ChannelHealth(POLICY)
    for t in range(3):
        h.failed(t)
    assert (h.state(2), h.open_until) == ("open", 2 + POLICY.open_base)  # opened at the third failure
    intervals = []
    for _ in range(5):
        start = h.open_until
        h.begin(start)
        h.failed(start)
        intervals.append(h.open_until - start)
    assert intervals == [10, 20, 40, 40, 40]


def test_a_probe_that_ended_without_an_answer_lets_the_next_one_through():
    h = ChannelHealth(POLICY)
    for t in range(3):
        h.failed(t)
    h.begin(10)
    assert not h.available(10)
    h.ended()  # the client left while the probe was in flight
    assert h.available(10)


def test_disabled_until_enabled_whatever_else_happens():
    h = ChannelHealth(POLICY)
    h.disable("upstream answered 401")
    h.succeeded()
    assert (h.state(0), h.available(10**6), h.until(0)) == ("disabled", False, None)
    h.enable()
    assert (h.state(0), h.available(0)) == ("healthy", True)
