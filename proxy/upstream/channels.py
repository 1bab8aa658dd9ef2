"""The upstream the relay talks to, built from the configuration: the one place that
turns ``[upstream]`` (or the in-process simulator) or the ``[[upstreams]]`` channels
into an ``Upstream``. The relay does not know which of them it has."""

from __future__ import annotations

from ..catalog import Catalog
from ..config import ChannelConfig, Config, UpstreamConfig
from .base import Upstream
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


def open_upstream(config: Config, catalog: Catalog, simulator_url: str | None = None) -> Upstream:
    """The configured upstream; ``simulator_url`` when the simulator serves instead."""
    if simulator_url is not None:
        return HttpUpstream(simulator_url, config.upstream, label="simulator")
    if not config.channels:
        return HttpUpstream(config.upstream.effective_url, config.upstream,
                            model_ids=provider_model_ids(config.upstream, catalog))
    router = Router([_channel(c, catalog) for c in config.channels], routing_policy(config))
    for channel in config.channels:
        if not channel.enabled:
            router.state.health(channel.name).disable("disabled in the configuration")
    return router
