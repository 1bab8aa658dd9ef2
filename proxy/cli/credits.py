"""``cheaplm topup`` (money paid, or API value given) and ``cheaplm credit`` (API value
given or, negative, taken back: a correction, never below zero), each with its reason
and the operator as actor in the ledger."""

from __future__ import annotations

import argparse
import re

from ..accounts.checks import usd
from ..money import format_usd
from . import output
from .context import Command

_AMOUNT = re.compile(r"-?[0-9.]+")


def add(sub, common: argparse.ArgumentParser) -> None:
    topup = sub.add_parser("topup", parents=[common], help="credit a balance: money paid, or API value")
    topup.add_argument("username")
    topup.add_argument("--paid", help="USD paid; credits paid x the value multiplier (a 'topup' in the ledger)")
    topup.add_argument("--credit", help="USD of API value to credit directly (a 'credit')")
    topup.add_argument("--reason", help="why (the ledger keeps it)")
    topup.set_defaults(run=run_topup)
    credit = sub.add_parser("credit", parents=[common], help="give API value, or take it back with a negative "
                            "amount (a correction; never below zero), with a reason")
    credit.add_argument("username")
    credit.add_argument("amount", help="USD of API value; negative to correct downwards (e.g. -- -2.50)")
    credit.add_argument("--reason", required=True, help="why (the ledger keeps it with the operator's name)")
    credit.add_argument("--paid", help="USD the user paid for it, if any")
    credit.set_defaults(run=run_credit)


def amount_after_separator(argv: list[str]) -> list[str]:
    """``credit NAME -- -2.50 --reason ...``: the ``--`` that lets a negative amount
    through, dropped so the options after it still count (argparse takes everything
    after ``--`` as positional)."""
    if argv[:1] != ["credit"] or "--" not in argv:
        return argv
    at = argv.index("--")
    if at + 1 < len(argv) and _AMOUNT.fullmatch(argv[at + 1]):
        return argv[:at] + argv[at + 1:]
    return argv


async def run_topup(c: Command) -> None:
    a = c.args
    async with c.ledger() as store:
        account = await c.accounts(store).topup(a.username, a.paid, a.credit, a.reason, c.actor)
    output.line(f"{account.username} balance {format_usd(account.balance)} USD")


async def run_credit(c: Command) -> None:
    a = c.args
    amount = usd(a.amount, "the amount", "amount", signed=True)
    paid = None if a.paid is None else usd(a.paid, "the paid amount", "paid")
    async with c.ledger() as store:
        account = await c.accounts(store).credit(a.username, amount, a.reason, c.actor, paid)
    output.line(f"{account.username} {'credited' if amount > 0 else 'corrected'} {format_usd(amount)} USD: "
                f"balance {format_usd(account.balance)} USD")
