"""``cheaplm user create|list|passwd|disable|enable`` and ``cheaplm balance``."""

from __future__ import annotations

import argparse
import sys

from ..accounts.checks import check_password, check_username
from ..money import format_usd
from . import output
from .context import Command, json_flag
from storage.records import iso_time


def add(sub, common: argparse.ArgumentParser) -> None:
    user = sub.add_parser("user", help="manage users").add_subparsers(dest="action", required=True)
    create = user.add_parser("create", parents=[common])
    create.add_argument("username")
    create.add_argument("--admin", action="store_true", help="an admin account (the admin API and pages)")
    create.add_argument("--email")
    create.add_argument("--password-stdin", action="store_true",
                        help="read a password for dashboard login from the first line of stdin")
    create.set_defaults(run=create_user)
    json_flag(user.add_parser("list", parents=[common])).set_defaults(run=list_users)
    passwd = user.add_parser("passwd", parents=[common], help="set a password; ends the user's sessions")
    passwd.add_argument("username")
    passwd.add_argument("--password-stdin", action="store_true", required=True,
                        help="read the password from the first line of stdin")
    passwd.set_defaults(run=set_password)
    for action, text in (("disable", "its keys stop working, its sessions end"), ("enable", "undo disable")):
        user.add_parser(action, parents=[common], help=text).add_argument("username")
        user.choices[action].set_defaults(run=set_disabled)
    balance = json_flag(sub.add_parser("balance", parents=[common], help="a user's balance, held and available"))
    balance.add_argument("username")
    balance.set_defaults(run=show_balance)


def password_from_stdin() -> str:
    return check_password(sys.stdin.readline().rstrip("\r\n"))


async def create_user(c: Command) -> None:
    username = check_username(c.args.username)  # before a new ledger file is created
    password = password_from_stdin() if c.args.password_stdin else None
    role = "admin" if c.args.admin else "user"
    async with c.ledger(create=True) as store:
        account = await c.accounts(store).create_user(username, password, c.args.email, role, actor=c.actor)
    output.line(f"created {role} {account.username}")


async def list_users(c: Command) -> None:
    async with c.ledger() as store:
        users = await c.accounts(store).users()
    output.rows(({"username": a.username, "role": p.role, "disabled": p.disabled if c.as_json else
                  "yes" if p.disabled else "-", "balance_usd": format_usd(a.balance), "held_usd": format_usd(a.held),
                  "created": iso_time(a.created_at)} for p, a in users), c.as_json)


async def set_password(c: Command) -> None:
    password = password_from_stdin()
    async with c.ledger() as store:
        await c.accounts(store).set_password(c.args.username, password, actor=c.actor)
    output.line(f"password set for {c.args.username}; their sessions ended")


async def set_disabled(c: Command) -> None:
    disable = c.args.action == "disable"
    async with c.ledger() as store:
        profile = await c.accounts(store).set_disabled(c.args.username, disable, c.actor)
    output.line(f"{profile.username} " + ("disabled: keys refused within a second, sessions ended"
                                          if disable else "enabled"))


async def show_balance(c: Command) -> None:
    async with c.ledger() as store:
        account = await c.accounts(store).account(c.args.username)
    output.record({"username": account.username, "balance_usd": format_usd(account.balance),
                   "held_usd": format_usd(account.held), "available_usd": format_usd(account.available)}, c.as_json)
