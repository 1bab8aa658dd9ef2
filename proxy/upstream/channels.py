"""The upstream the relay talks to, built from the configuration: the one place that
turns ``[upstream]`` (or the in-process simulator) or the ``[[upstreams]]`` channels
into an ``Upstream``. The relay does not know which of them it has."""

from __future__ import annotations

from ..catalog import Catalog
from ..config import ChannelConfig, Config, UpstreamConfig
from .health import HealthPolicy
from .http import HttpUpstream
from .router import Channel, Router, RoutingPolicy


def provider_model_ids(config: UpstreamConfig, catalog: Catalog) -> dict[str, str]:
    """``model_ids`` keyed by catalog model id (an alias in the config names its model;
    the config check has refused ids the catalog does not know)."""
    ids: dict[str, str] = {}
    for name, provider_id in config.model_ids:
        model = catalog.resolve(name)
        if model is not None:
            ids[model.id] = provider_id
    return ids


def routing_policy(config: Config) -> RoutingPolicy:
    r = config.routing
    return RoutingPolicy(r.max_attempts, r.deadline, r.affinity,
                         HealthPolicy(r.cooldown, failures_to_open=r.failures_to_open, open_base=r.open_base,
                                      open_max=r.open_max))


def _channel(config: ChannelConfig, catalog: Catalog) -> Channel:
    upstream = HttpUpstream(config.upstream.effective_url, config.upstream,
                            label=config.name, model_ids=provider_model_ids(config.upstream, catalog))
    models = None if config.models is None else frozenset(catalog.resolve(m).id for m in config.models)
    return Channel(config.name, upstream, config.priority, config.weight, models, config.max_concurrency)


SINGLE = "default"  # the channel of ``[upstream]`` (or the simulator) when no ``[[upstreams]]`` are given


def open_upstream(config: Config, catalog: Catalog, simulator_url: str | None = None) -> Router:
    """The configured upstream, always a router: ``[[upstreams]]``, or one channel named
    "default" for ``[upstream]`` or, at ``simulator_url``, the simulator."""
    if simulator_url is not None or not config.channels:
        url = simulator_url or config.upstream.effective_url
        only = HttpUpstream(url, config.upstream, label="simulator" if simulator_url else None,
                            model_ids=None if simulator_url else provider_model_ids(config.upstream, catalog))
        return Router([Channel(SINGLE, only, 0, 1.0, None, None)], routing_policy(config))
    router = Router([_channel(c, catalog) for c in config.channels], routing_policy(config))
    for channel in config.channels:
        if not channel.enabled:
            router.state.health(channel.name).disable("disabled in the configuration")
    return router
