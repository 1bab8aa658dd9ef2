"""``cheaplm db check|migrate|copy``: the ledger's invariants, its schema, a copy of it."""

from __future__ import annotations

import argparse

from . import output
from .context import Command, json_flag
from storage import copy_store, describe_location, open_store


def add(sub, common: argparse.ArgumentParser) -> None:
    db = sub.add_parser("db", help="ledger maintenance").add_subparsers(dest="action", required=True)
    json_flag(db.add_parser("check", parents=[common], help="verify the ledger's invariants (exit 1 on a problem)")
              ).set_defaults(run=check)
    db.add_parser("migrate", parents=[common], help="apply the schema migrations the ledger needs (say which)"
                  ).set_defaults(run=migrate)
    copy = db.add_parser("copy", parents=[common], help="copy a ledger into a new one (any backends) and verify it")
    copy.add_argument("--from", dest="source", metavar="URL", required=True, help="the ledger to copy")
    copy.add_argument("--to", dest="target", metavar="URL", required=True, help="a new or empty ledger")
    copy.set_defaults(run=copy_ledger)


async def migrate(c: Command) -> int:
    """Apply what the ledger needs, and say what that was."""
    url = c.config.database_url
    store = await open_store(url, create=False, busy_timeout=c.config.store_busy_timeout)
    await store.aclose()
    applied = store.applied_migrations
    output.line(f"applied {len(applied)} migration(s) to {describe_location(url)}: {', '.join(applied)}" if applied
                else f"the ledger at {describe_location(url)} needs no migration")
    return 0


async def copy_ledger(c: Command) -> int:
    """Copied and verified, or one line why not."""
    args = c.args
    copied = await copy_store(args.source, args.target, busy_timeout=c.config.store_busy_timeout)
    output.line(f"copied {describe_location(args.source)} to {describe_location(args.target)}: "
                + ", ".join(f"{n} {table}" for table, n in copied.rows.items())
                + f"; every account's balance, held and ledger sum match ({copied.accounts} accounts)")
    return 0


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
