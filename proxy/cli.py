"""The ``cheaplm`` command: serve, simulator, bench, and the admin subcommands."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from functools import partial
from typing import Any, Awaitable, Callable

import trio

from . import admin
from .config import Config, ConfigError, load_config
from .money import format_usd
from storage import open_store
from storage.base import StoreError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cheaplm", description="CheapLM gateway and its admin tools")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="TOML config file (default: $CHEAPLM_CONFIG)")
    common.add_argument("--db", help="SQLite ledger path (default: cheaplm.db, or the config's db_path)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", parents=[common], help="run the gateway")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--upstream-url", help="Anthropic-compatible upstream base URL")

    sim = sub.add_parser("simulator", help="run the simulated Anthropic-compatible upstream")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8081)
    sim.add_argument("--ttft-ms", type=float, default=0.0)
    sim.add_argument("--gap-ms", type=float, default=0.0)
    sim.add_argument("--deltas", type=int, default=16)
    sim.add_argument("--delta-bytes", type=int, default=16)
    sim.add_argument("--api-key", help="require this key from clients")
    sim.add_argument("--record", action="store_true", help="keep the last 10,000 requests for GET /_sim/requests")

    user = sub.add_parser("user", help="manage users").add_subparsers(dest="action", required=True)
    user.add_parser("create", parents=[common]).add_argument("username")
    user.add_parser("list", parents=[common])

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
    key.add_parser("list", parents=[common]).add_argument("username")
    key.add_parser("revoke", parents=[common]).add_argument("prefix")

    topup = sub.add_parser("topup", parents=[common], help="credit a balance")
    topup.add_argument("username")
    topup.add_argument("--paid", help="USD paid; credits paid x the value multiplier")
    topup.add_argument("--credit", help="USD of API value to credit directly")

    sub.add_parser("balance", parents=[common]).add_argument("username")
    usage = sub.add_parser("usage", parents=[common])
    usage.add_argument("username")
    usage.add_argument("--limit", type=int, default=20)

    db = sub.add_parser("db", help="ledger maintenance").add_subparsers(dest="action", required=True)
    db.add_parser("check", parents=[common], help="verify the ledger's invariants (exit 1 on a problem)")

    bench = sub.add_parser("bench", help="run the benchmark suite (see bench/README)", add_help=False)
    bench.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def _print_table(rows: list[dict[str, Any]]) -> None:
    if not rows:
        print("(none)")
        return
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in columns))


async def _with_store(config: Config, action: Callable[[Any], Awaitable[None]]) -> None:
    store = await open_store(config.db_path)
    try:
        await action(store)
    finally:
        await store.aclose()


async def _admin(args: argparse.Namespace, config: Config, store) -> None:
    command = args.command if args.command not in ("user", "key") else f"{args.command} {args.action}"
    if command == "user create":
        account = await admin.create_user(store, args.username)
        print(f"created user {account.username}")
    elif command == "user list":
        _print_table([{"username": a.username, "balance_usd": format_usd(a.balance),
                       "held_usd": format_usd(a.held), "created": a.created_at} for a in await store.list_users()])
    elif command == "key create":
        models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
        key, record = await admin.create_key(store, config.catalog(), args.username, args.name, models,
                                             not args.no_stream, args.ip, args.pass_thinking)
        print(key)
        print(f"(shown once; prefix {record.prefix})", file=sys.stderr)
    elif command == "key list":
        _print_table([{
            "prefix": k.prefix, "name": k.name, "models": ",".join(k.models) if k.models else "*",
            "stream": "yes" if k.allow_stream else "no", "ips": ",".join(k.ips) or "*",
            "created": k.created_at, "last_used": k.last_used_at or "-",
            "revoked": k.revoked_at or "-"} for k in await store.list_keys(args.username)])
    elif command == "key revoke":
        record = await store.revoke_key(args.prefix)
        print(f"revoked {record.prefix} ({record.username})")
    elif command == "topup":
        account = await admin.topup(store, args.username, config.value_multiplier, args.paid, args.credit)
        print(f"{account.username} balance {format_usd(account.balance)} USD")
    elif command == "balance":
        account = await store.get_account(args.username)
        print(json.dumps({"username": account.username, "balance_usd": format_usd(account.balance),
                          "held_usd": format_usd(account.held), "available_usd": format_usd(account.available)}))
    elif command == "usage":
        if args.limit < 1:
            raise admin.AdminError("--limit must be at least 1")
        _print_table([{
            "time": u.created_at, "request": u.request_id, "model": u.model, "endpoint": u.endpoint,
            "stream": int(u.stream), "status": u.status, "in": u.input_tokens,
            "cache_w": u.cache_write_5m + u.cache_write_1h, "cache_r": u.cache_read, "out": u.output_tokens,
            "cost_usd": format_usd(u.cost), "partial": int(u.partial)} for u in await store.usage(args.username,
                                                                                                 args.limit)])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        from bench.__main__ import main as bench_main
        return bench_main(argv[1:])
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "simulator":
            return _run_simulator(args)
        config = load_config(args.config, db_path=args.db,
                             **({"host": args.host, "port": args.port, "upstream_url": args.upstream_url}
                                if args.command == "serve" else {}))
        logging.getLogger().setLevel(config.log_level.upper())
        if args.command == "serve":
            from .serve import serve
            trio.run(serve, config)
            return 0
        if args.command == "db":
            return trio.run(_db_check, config)
        trio.run(_with_store, config, partial(_admin, args, config))
        return 0
    except (ConfigError, admin.AdminError, StoreError) as exc:
        print(f"cheaplm: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


async def _db_check(config: Config) -> int:
    """``cheaplm db check``: one line per broken invariant (exit 1), or a summary (exit 0)."""
    if config.db_path != ":memory:" and not os.path.exists(config.db_path):
        raise StoreError(f"no ledger at {config.db_path}")
    store = await open_store(config.db_path)
    try:
        problems = await store.check()
        stats = await store.stats()
    finally:
        await store.aclose()
    for problem in problems:
        print(problem)
    if not problems:
        print(f"ok: {stats.accounts} accounts, {stats.ledger_entries} ledger entries, {stats.open_holds} open holds")
    return 1 if problems else 0


def _run_simulator(args: argparse.Namespace) -> int:
    from .upstream.sim_script import Knobs
    from .upstream.simulator import SimulatorState, serve_simulator

    state = SimulatorState(knobs=Knobs(ttft_ms=args.ttft_ms, gap_ms=args.gap_ms, deltas=args.deltas,
                                       delta_bytes=args.delta_bytes), api_key=args.api_key, record=args.record)

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            url, _ = await nursery.start(partial(serve_simulator, args.host, args.port, state=state))
            logging.getLogger("cheaplm.simulator").info("simulated upstream listening on %s", url)

    trio.run(run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
