"""``cheaplm code create|list``: top-up redemption codes."""

from __future__ import annotations

import argparse
import time

from ..accounts.checks import parse_expiry, usd
from ..accounts.codes import describe_code
from ..money import format_usd, scale
from . import output
from .context import Command, json_flag


def add(sub, common: argparse.ArgumentParser) -> None:
    code = sub.add_parser("code", help="top-up redemption codes").add_subparsers(dest="action", required=True)
    create = code.add_parser("create", parents=[common], help="print N single-use codes (only hashes stored)")
    create.add_argument("--paid", required=True, help="USD paid for each; it buys paid x the value multiplier")
    create.add_argument("--count", type=int, default=1)
    create.add_argument("--expires", metavar="DATE", help="last valid day (UTC) or ISO date-time")
    create.set_defaults(run=create_codes)
    json_flag(code.add_parser("list", parents=[common], help="every code: value, status, who redeemed it")
              ).set_defaults(run=list_codes)


async def create_codes(c: Command) -> None:
    paid = usd(c.args.paid, "the paid amount", "paid")
    async with c.ledger() as store:
        lib = c.accounts(store)
        expires = None if c.args.expires is None else parse_expiry(c.args.expires, lib.clock())
        codes = await lib.create_codes(paid, c.args.count, expires, actor=c.actor)
    print("\n".join(codes))
    output.note(f"({len(codes)} code(s), each ${format_usd(paid)} paid, "
                f"${format_usd(scale(paid, c.config.value_multiplier))} of API value; shown once)")


async def list_codes(c: Command) -> None:
    async with c.ledger() as store:
        codes = await c.accounts(store).codes()
    now = time.time()
    output.rows((describe_code(code, now) for code in codes), c.as_json)
