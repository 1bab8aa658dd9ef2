"""``cheaplm db check``: the ledger's invariants."""

from __future__ import annotations

import argparse

from . import output
from .context import Command, json_flag


def add(sub, common: argparse.ArgumentParser) -> None:
    db = sub.add_parser("db", help="ledger maintenance").add_subparsers(dest="action", required=True)
    json_flag(db.add_parser("check", parents=[common], help="verify the ledger's invariants (exit 1 on a problem)")
              ).set_defaults(run=check)


async def check(c: Command) -> int:
    """One line per broken invariant (exit 1), or a summary (exit 0)."""
    async with c.ledger() as store:
        problems = await store.check()
        stats = await store.stats()
    if c.as_json:
        output.document({"ok": not problems, "problems": problems, "accounts": stats.accounts,
                         "ledger_entries": stats.ledger_entries, "open_holds": stats.open_holds})
    else:
        for problem in problems:
            output.line(problem)
        if not problems:
            output.line(f"ok: {stats.accounts} accounts, {stats.ledger_entries} ledger entries, "
                        f"{stats.open_holds} open holds")
    return 1 if problems else 0
