"""The upstream the relay talks to, built from the configuration: the one place that
turns ``[upstream]`` (or the in-process simulator) into an ``Upstream``. Several
channels with failover will be assembled here, behind the same protocol, so the relay
does not change when they come."""

from __future__ import annotations

from ..catalog import Catalog
from ..config import UpstreamConfig
from .http import HttpUpstream


def provider_model_ids(config: UpstreamConfig, catalog: Catalog) -> dict[str, str]:
    """``[upstream.model_ids]`` keyed by catalog model id (an alias in the config names
    its model; the config check has refused ids the catalog does not know)."""
    ids: dict[str, str] = {}
    for name, provider_id in config.model_ids:
        model = catalog.resolve(name)
        if model is not None:
            ids[model.id] = provider_id
    return ids


def open_upstream(config: UpstreamConfig, catalog: Catalog, simulator_url: str | None = None) -> HttpUpstream:
    """The configured upstream; ``simulator_url`` when the simulator serves instead."""
    if simulator_url is not None:
        return HttpUpstream(simulator_url, config, label="simulator")
    return HttpUpstream(config.effective_url, config, model_ids=provider_model_ids(config, catalog))
