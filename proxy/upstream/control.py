"""The operator's commands on upstream channels, through the store: what they are doing
(``cheaplm upstream list``) and enabling or disabling one (``cheaplm upstream
enable|disable``; running gateways apply it within ``channel_sync_interval``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Config
from .listing import channel_names, configured_rows, live_rows
from storage.base import ChannelOverride, Store


class ChannelError(ValueError):
    """A channel command that cannot be done (one line, shown to the operator)."""


@dataclass(frozen=True)
class UpstreamListing:
    rows: list[dict]   # listing.COLUMNS each
    instances: int     # the live gateway instances they come from (0: from the configuration)


async def upstream_list(store: Store, config: Config) -> UpstreamListing:
    """The channels as the running gateways report them (counters summed across them),
    or as the configuration and the operator's overrides start them when none runs."""
    snapshots = await store.channel_status()
    overrides = await store.channel_overrides()
    if snapshots:
        return UpstreamListing(live_rows(snapshots, overrides), len(snapshots))
    return UpstreamListing(configured_rows(config, overrides), 0)


async def set_upstream_enabled(store: Store, config: Config, name: str, enabled: bool,
                               reason: str = "") -> ChannelOverride:
    """The operator's override of a channel the configuration or a running gateway has."""
    names = channel_names(config, await store.channel_status())
    if name not in names:
        if not names:
            raise ChannelError("there is no upstream channel to enable or disable: one [upstream] serves "
                               "(channels are [[upstreams]] tables)")
        raise ChannelError(f"no upstream channel named {name!r} (channels: {', '.join(names)})")
    return await store.set_channel_enabled(name, enabled, " ".join(reason.split()))
