"""``cheaplm usage``: a user's latest requests."""

from __future__ import annotations

import argparse

from ..money import format_usd
from . import output
from .context import Command, json_flag
from storage.records import iso_time


def add(sub, common: argparse.ArgumentParser) -> None:
    usage = json_flag(sub.add_parser("usage", parents=[common], help="a user's latest requests"))
    usage.add_argument("username")
    usage.add_argument("--limit", type=int, default=20)
    usage.set_defaults(run=show_usage)


async def show_usage(c: Command) -> None:
    async with c.ledger() as store:
        rows = await c.accounts(store).usage(c.args.username, c.args.limit)
    if c.as_json:
        output.document({"data": [{
            "created_at": iso_time(u.created_at), "request_id": u.request_id, "model": u.model, "endpoint": u.endpoint,
            "stream": u.stream, "status": u.status, "input_tokens": u.input_tokens,
            "cache_write_5m_tokens": u.cache_write_5m, "cache_write_1h_tokens": u.cache_write_1h,
            "cache_read_tokens": u.cache_read, "output_tokens": u.output_tokens, "cost_usd": format_usd(u.cost),
            "partial": u.partial, "error_type": u.error_type, "channel": u.channel, "attempts": u.attempts}
            for u in rows]})
        return
    output.table([{
        "time": iso_time(u.created_at), "request": u.request_id, "model": u.model, "endpoint": u.endpoint,
        "stream": int(u.stream), "status": u.status, "in": u.input_tokens,
        "cache_w": u.cache_write_5m + u.cache_write_1h, "cache_r": u.cache_read, "out": u.output_tokens,
        "cost_usd": format_usd(u.cost), "partial": int(u.partial), "channel": u.channel or "-",
        "attempts": "-" if u.attempts is None else u.attempts} for u in rows])
