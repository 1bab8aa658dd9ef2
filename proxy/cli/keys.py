"""``cheaplm key create|list|set|revoke``."""

from __future__ import annotations

import argparse

from ..accounts.keys import describe_limits, parse_limits
from ..accounts.checks import iso
from storage.base import LIMIT_FIELDS, KeyLimits
from . import output
from .context import Command, json_flag
from storage.records import iso_time

LIMIT_FLAGS = {"rpm": "--rpm", "tpm": "--tpm", "concurrency": "--concurrency", "daily_usd": "--daily-usd",
               "monthly_usd": "--monthly-usd"}


def add(sub, common: argparse.ArgumentParser) -> None:
    key = sub.add_parser("key", help="manage API keys").add_subparsers(dest="action", required=True)
    create = key.add_parser("create", parents=[common])
    create.add_argument("username")
    create.add_argument("--name", default="default")
    create.add_argument("--models", help="comma-separated allowlist (default: every model)")
    create.add_argument("--no-stream", action="store_true", help="refuse stream: true")
    create.add_argument("--ip", action="append", default=[], metavar="CIDR", help="allowed client network (repeat)")
    thinking = create.add_mutually_exclusive_group()
    thinking.add_argument("--pass-thinking", dest="pass_thinking", action="store_const", const=True)
    thinking.add_argument("--filter-thinking", dest="pass_thinking", action="store_const", const=False)
    limit_flags(create)
    create.set_defaults(run=create_key)
    listing = json_flag(key.add_parser("list", parents=[common]))
    listing.add_argument("username")
    listing.set_defaults(run=list_keys)
    limits = key.add_parser("set", parents=[common], help="change a key's limits (the others stay)")
    limits.add_argument("prefix", help="the key's prefix or the whole key")
    limit_flags(limits)
    limits.set_defaults(run=set_limits)
    revoke = key.add_parser("revoke", parents=[common])
    revoke.add_argument("prefix", help="the key's prefix (sk-cl- and 8 more characters) or the whole key; only the "
                                       "prefix is shown")
    revoke.set_defaults(run=revoke_key)


def limit_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("limits (none or 0: no limit)")
    group.add_argument("--rpm", metavar="N", help="requests per minute")
    group.add_argument("--tpm", metavar="N", help="tokens (input + output) per minute")
    group.add_argument("--concurrency", metavar="N", help="requests at once")
    group.add_argument("--daily-usd", metavar="USD", help="spend cap per UTC day")
    group.add_argument("--monthly-usd", metavar="USD", help="spend cap per UTC month")


def given_limits(args: argparse.Namespace) -> dict[str, int | None]:
    return parse_limits({name: getattr(args, name) for name in LIMIT_FIELDS})


async def create_key(c: Command) -> None:
    a = c.args
    models = None if a.models is None else [m.strip() for m in a.models.split(",") if m.strip()]
    limits = KeyLimits(**given_limits(a))
    async with c.ledger() as store:
        key, record = await c.accounts(store).create_key(c.config.catalog(), a.username, a.name, models,
                                                         not a.no_stream, a.ip, a.pass_thinking, limits,
                                                         actor=c.actor)
    print(key)
    output.note(f"(shown once; prefix {record.prefix})")


async def list_keys(c: Command) -> None:
    async with c.ledger() as store:
        keys = await c.accounts(store).keys(c.args.username)
    if c.as_json:
        output.document({"data": [{
            "prefix": k.prefix, "name": k.name, "models": None if k.models is None else list(k.models),
            "stream": k.allow_stream, "ips": list(k.ips), "limits": {f: getattr(k.limits, f) for f in LIMIT_FIELDS},
            "created_at": iso_time(k.created_at), "last_used_at": iso_time(k.last_used_at),
            "revoked_at": iso_time(k.revoked_at),
            "expires_at": iso(k.expires_at)} for k in keys]})
        return
    output.table([{
        "prefix": k.prefix, "name": k.name, "models": ",".join(k.models) if k.models else "*",
        "stream": "yes" if k.allow_stream else "no", "ips": ",".join(k.ips) or "*", **describe_limits(k.limits),
        "created": iso_time(k.created_at), "last_used": iso_time(k.last_used_at) or "-",
        "revoked": iso_time(k.revoked_at) or "-"} for k in keys])


async def set_limits(c: Command) -> None:
    changes = given_limits(c.args)
    async with c.ledger() as store:
        record = await c.accounts(store).set_key_limits(c.args.prefix, changes, actor=c.actor)
    shown = describe_limits(record.limits)
    output.line(f"{record.prefix} ({record.username}): " + " ".join(f"{n}={v}" for n, v in shown.items()))


async def revoke_key(c: Command) -> None:
    async with c.ledger() as store:
        record = await c.accounts(store).revoke_key(c.args.prefix, actor=c.actor)
    output.line(f"revoked {record.prefix} ({record.username})")
