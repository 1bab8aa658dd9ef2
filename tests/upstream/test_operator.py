"""The operator's side of the channels without the network: overrides applied once per
change, the sync task's rounds (on trio's MockClock), and how ``cheaplm upstream list``
combines the instances' snapshots."""

from __future__ import annotations

import logging

import trio

from proxy.config import ChannelConfig, Config, UpstreamConfig
from proxy.upstream.listing import channel_names, clock_time, configured_rows, live_rows
from proxy.upstream.channels import open_upstream
from proxy.upstream.operator import Overrides, sync_channels
from proxy.upstream.router import Channel, Router, RoutingPolicy
from storage.base import ChannelOverride, ChannelSnapshot, StoreUnavailable


class _Nowhere:
    idle_timeout = 1.0
    label = "nowhere"
    url_label = "http://nowhere.example"


def _router(*names: str) -> Router:
    return Router([Channel(n, _Nowhere(), priority=i) for i, n in enumerate(names)], RoutingPolicy())


def _override(name: str, enabled: bool, version: int, reason: str = "", set_at: float = 0.0) -> ChannelOverride:
    return ChannelOverride(name, enabled, reason, set_at, version)


def _state(router: Router, name: str) -> str:
    return router.state.health(name).state(0.0)


def test_an_override_is_applied_once_per_change():
    router = _router("a", "b")
    overrides = Overrides(router)
    assert overrides.apply([_override("a", False, 1, "maintenance"), _override("ghost", False, 1)]) == ["a"]
    assert _state(router, "a") == "disabled" and _state(router, "b") == "healthy"
    assert router.state.health("a").disabled_reason == "disabled by the operator: maintenance"
    assert overrides.apply([_override("a", False, 1, "maintenance")]) == []
    assert overrides.apply([_override("a", True, 2)]) == ["a"] and _state(router, "a") == "healthy"
    # The credential is refused after the operator's enable: the same override does not undo that.
    router.state.health("a").disable("upstream answered 401: its credential was refused")
    assert overrides.apply([_override("a", True, 2)]) == [] and _state(router, "a") == "disabled"
    assert overrides.apply([_override("a", True, 3)]) == ["a"] and _state(router, "a") == "healthy"


def test_an_enable_overrides_the_configuration_and_leaves_a_cooldown_alone():
    router = _router("a", "b")
    router.state.health("a").disable("disabled in the configuration")
    router.state.health("b").rate_limited(0.0, 30)
    Overrides(router).apply([_override("a", True, 1), _override("b", True, 1)])
    assert _state(router, "a") == "healthy" and _state(router, "b") == "cooling"


def test_a_single_upstream_is_a_one_channel_router_that_publishes_its_row_without_its_key():
    config = Config(upstream=UpstreamConfig(url="http://user:sk-secret@up.example:8443/v1?key=sk-secret",
                                            api_key="sk-secret"))
    upstream = open_upstream(config, config.catalog())
    [row] = upstream.describe(0.0)
    assert row["name"] == "default" and row["url"] == "http://up.example:8443/v1"
    assert upstream.label == "http://up.example:8443/v1" and "sk-secret" not in repr(row)
    router = _router("a")
    assert [r["name"] for r in router.describe(0.0)] == ["a"]


class _FakeChannelStore:
    """The ChannelStore concern in memory; ``down`` makes every call unavailable."""

    def __init__(self) -> None:
        self.overrides: list[ChannelOverride] = []
        self.published: list[tuple[float, list[dict]]] = []
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise StoreUnavailable("the ledger is unavailable: locked", 1)

    async def channel_overrides(self):
        self._check()
        return list(self.overrides)

    async def publish_channels(self, channels):
        self._check()
        self.published.append((trio.current_time(), list(channels)))


async def test_the_sync_task_applies_overrides_before_it_reports_started_then_every_interval(autojump_clock,
                                                                                            caplog):
    store = _FakeChannelStore()
    store.overrides = [_override("a", False, 1)]
    router = _router("a", "b")
    async with trio.open_nursery() as nursery:
        await nursery.start(sync_channels, store, router, 2.0)
        assert _state(router, "a") == "disabled" and len(store.published) == 1
        assert store.published[0][1][0]["state"] == "disabled"
        store.overrides = [_override("a", True, 2)]
        await trio.sleep(2.01)
        assert _state(router, "a") == "healthy" and len(store.published) == 2
        # The store goes away for a while: one warning, the gateway goes on, and it catches up.
        store.down = True
        store.overrides = [_override("b", False, 1)]
        with caplog.at_level(logging.INFO, logger="cheaplm.upstream"):
            await trio.sleep(6.01)
            assert _state(router, "b") == "healthy"
            store.down = False
            await trio.sleep(2.0)
        assert _state(router, "b") == "disabled"
        warnings = [r for r in caplog.records if "cannot be reached" in r.getMessage()]
        assert len(warnings) == 1 and "reachable again" in caplog.text
        assert [round(t) for t, _ in store.published] == [0, 2, 10]
        nursery.cancel_scope.cancel()


# -- upstream list -------------------------------------------------------------------------------

def _row(name: str, state: str = "healthy", **fields) -> dict:
    row = {"name": name, "url": f"http://{name}.example", "priority": 0, "weight": 1.0, "state": state,
           "resting_seconds": None, "disabled_reason": None, "in_flight": 0, "requests": 0, "failures": 0}
    return {**row, **fields}


def test_live_rows_sum_the_counters_and_show_the_worst_state_with_who_is_in_it():
    snapshots = [
        ChannelSnapshot("i1", 1000.0, (_row("a", "cooling", resting_seconds=30.0, in_flight=1, requests=10,
                                            failures=2), _row("b", requests=5))),
        ChannelSnapshot("i2", 1010.0, (_row("a", "cooling", resting_seconds=25.5, requests=7),
                                       _row("b", "disabled", disabled_reason="upstream answered 401", requests=1,
                                            failures=1))),
    ]
    rows = {r["name"]: r for r in live_rows(snapshots, [])}
    assert rows["a"]["state"] == f"cooling until {clock_time(1035.5)}"
    assert (rows["a"]["in_flight"], rows["a"]["requests"], rows["a"]["failures"]) == (1, 17, 2)
    assert rows["b"]["state"] == "disabled (upstream answered 401) on 1 of 2 instances"
    assert list(rows) == ["a", "b"] and rows["b"]["url"] == "http://b.example"


def test_an_override_newer_than_the_snapshots_shows_as_pending():
    snapshots = [ChannelSnapshot("i1", 1000.0, (_row("a"), _row("b", "disabled", disabled_reason="x")))]
    overrides = [_override("a", False, 3, set_at=1001.0), _override("b", True, 1, set_at=999.0)]
    rows = {r["name"]: r["state"] for r in live_rows(snapshots, overrides)}
    assert rows == {"a": "healthy (disable pending)", "b": "disabled (x)"}


def test_without_a_gateway_the_configuration_and_overrides_are_listed():
    up = UpstreamConfig(url="https://u:sk-secret@one.example/", api_key="sk-secret")
    config = Config(channels=(ChannelConfig("a", up, priority=1), ChannelConfig("b", up, enabled=False),
                              ChannelConfig("c", up, enabled=False)))
    rows = configured_rows(config, [_override("a", False, 1, "broken"), _override("c", True, 1)])
    assert [(r["name"], r["state"], r["requests"]) for r in rows] == [
        ("a", "disabled (disabled by the operator: broken)", "-"),
        ("b", "disabled (disabled in the configuration)", "-"), ("c", "enabled", "-")]
    assert "sk-secret" not in repr(rows) and rows[0]["url"] == "https://one.example"
    assert [r["url"] for r in configured_rows(Config(), [])] == ["(built-in simulator)"]
    assert channel_names(config, []) == ["a", "b", "c"]
    single = ChannelSnapshot("i1", 0.0, tuple(open_upstream(Config(), Config().catalog(), "http://x.example")
                                              .describe(0.0)))
    assert channel_names(Config(), [single]) == ["default"]
    assert channel_names(Config(), [ChannelSnapshot("i1", 0.0, (_row("z"),))]) == ["default", "z"]


def test_an_enable_closes_an_open_circuit():
    """``cheaplm upstream enable`` on a channel whose circuit is open: it takes requests
    again at once (it said "enabled" and changed nothing before)."""
    router = _router("a", "b")
    for request in ("r1", "r2", "r3"):
        router.state.health("a").failed(0.0, request)
    assert _state(router, "a") == "open"
    assert Overrides(router).apply([_override("a", True, 1)]) == ["a"]
    assert _state(router, "a") == "healthy" and router.state.health("a").available(0.0)
