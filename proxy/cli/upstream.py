"""``cheaplm upstream list|enable|disable``: the operator's view and overrides of the
upstream channels (proxy/upstream/control.py)."""

from __future__ import annotations

import argparse

from ..upstream.control import set_upstream_enabled, upstream_list
from ..upstream.listing import COLUMNS
from . import output
from .context import Command, json_flag


def add(sub, common: argparse.ArgumentParser) -> None:
    upstream = sub.add_parser("upstream", help="upstream channels: their state; enable or disable one"
                              ).add_subparsers(dest="action", required=True)
    json_flag(upstream.add_parser("list", parents=[common], help="each channel's state and counters, across "
                                  "running gateways")).set_defaults(run=list_channels)
    enable = upstream.add_parser("enable", parents=[common], help="take a channel back into service (also after "
                                 "its credential was refused)")
    enable.add_argument("name")
    enable.set_defaults(run=set_enabled)
    disable = upstream.add_parser("disable", parents=[common], help="send a channel no more requests")
    disable.add_argument("name")
    disable.add_argument("--reason", default="", help="shown in `upstream list` and /health")
    disable.set_defaults(run=set_enabled)


async def list_channels(c: Command) -> None:
    async with c.ledger() as store:
        listing = await upstream_list(store, c.config)
    output.rows(({k: row[k] for k in COLUMNS} for row in listing.rows), c.as_json, instances=listing.instances)
    if not c.as_json:
        output.note(f"({listing.instances} running gateway instance(s); counters summed)" if listing.instances else
                    "(no gateway is running: as the configuration and the operator's overrides start them)")


async def set_enabled(c: Command) -> None:
    enabled = c.args.action == "enable"
    async with c.ledger() as store:
        override = await set_upstream_enabled(store, c.config, c.args.name, enabled, getattr(c.args, "reason", ""))
    output.line(f"{'enabled' if override.enabled else 'disabled'} upstream channel {override.name} (running "
                f"gateways apply it within {c.config.change_poll_interval:g} s)")
