"""The ``cheaplm`` command: serve, simulator, bench, and the admin subcommands.

Each admin command is one small function, a thin call into proxy/admin.py, which words
its errors. Every failure the operator can act on ends as one line on stderr,
``cheaplm: ...``, and a non-zero exit; ``_failure`` is the one place that maps them.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import signal
import socket
import sqlite3
import sys
import time
from functools import partial
from typing import Any, Awaitable, Callable, Mapping

import trio

from ..accounts import service as accounts
from ..accounts import admin
from ..observe import request_log as logs
from ..config import PORTS, Config, ConfigError, load_config
from ..money import format_usd, parse_usd, scale
from ..upstream.listing import COLUMNS
from storage import describe_location
from storage.base import KeyLimits, StoreError

LEDGER_DEFAULT = "$CHEAPLM_DB, else the config file's db_path, else ./cheaplm.db in the current directory"
EPILOG = (f"The ledger is one SQLite file: --db PATH (or a sqlite:///PATH URL), else {LEDGER_DEFAULT}. Only "
          "`serve` and `user create` create a new one. Benchmarks: cheaplm bench --help, and the README's "
          "Benchmarks section.")
_LISTEN_ERRNOS = frozenset({errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES})


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line, like every other failure."""

    def error(self, message: str):
        self.exit(2, f"cheaplm: {message} (see `{self.prog} --help`)\n")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if port not in PORTS:
        raise argparse.ArgumentTypeError(f"must be a port number 0-65535 (0: any free port), got {text!r}")
    return port


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cheaplm", description="CheapLM gateway and its admin tools", epilog=EPILOG)
    common = _Parser(add_help=False)
    common.add_argument("--config", help="TOML config file (default: $CHEAPLM_CONFIG)")
    common.add_argument("--db", metavar="PATH", help=f"SQLite ledger file, or a sqlite:///PATH URL "
                                                     f"(default: {LEDGER_DEFAULT})")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", parents=[common], help="run the gateway")
    serve.add_argument("--host", help="listen address (default: $CHEAPLM_HOST, the config's host, 127.0.0.1)")
    serve.add_argument("--port", type=_port, help="listen port (default: $CHEAPLM_PORT, the config's port, 8080)")
    serve.add_argument("--upstream-url", help="Anthropic-compatible upstream base URL")

    sim = sub.add_parser("simulator", help="run the simulated Anthropic-compatible upstream")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=_port, default=8081)
    sim.add_argument("--ttft-ms", type=float, default=0.0)
    sim.add_argument("--gap-ms", type=float, default=0.0)
    sim.add_argument("--deltas", type=int, default=16)
    sim.add_argument("--delta-bytes", type=int, default=16)
    sim.add_argument("--api-key", help="require this key from clients")
    sim.add_argument("--record", action="store_true", help="keep the last 10,000 requests for GET /_sim/requests")
    sim.add_argument("--prompt-cache", action="store_true",
                     help="model Anthropic's prompt cache: cache_control prefixes seen within 5 minutes are read")
    sim.add_argument("--secret", help="the key its thinking signatures are made with (default: random), so that "
                                      "prepared conversations (the bench's) carry signatures it accepts")

    user = sub.add_parser("user", help="manage users").add_subparsers(dest="action", required=True)
    user_create = user.add_parser("create", parents=[common])
    user_create.add_argument("username")
    _account_flags(user_create)
    user.add_parser("list", parents=[common])
    _account_commands(sub, user, common)

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
    _limit_flags(create)
    key.add_parser("list", parents=[common]).add_argument("username")
    limits = key.add_parser("set", parents=[common], help="change a key's limits (the others stay)")
    limits.add_argument("prefix", help="the key's prefix or the whole key")
    _limit_flags(limits)
    key.add_parser("revoke", parents=[common]).add_argument(
        "prefix", help="the key's prefix (sk-cl- and 8 more characters) or the whole key; only the prefix is shown")

    topup = sub.add_parser("topup", parents=[common], help="credit a balance")
    topup.add_argument("username")
    topup.add_argument("--paid", help="USD paid; credits paid x the value multiplier")
    topup.add_argument("--credit", help="USD of API value to credit directly")

    sub.add_parser("balance", parents=[common], help="a balance, as JSON").add_argument("username")
    usage = sub.add_parser("usage", parents=[common], help="a user's latest requests")
    usage.add_argument("username")
    usage.add_argument("--limit", type=int, default=20)

    upstream = sub.add_parser("upstream", help="upstream channels: their state; enable or disable one").add_subparsers(
        dest="action", required=True)
    upstream.add_parser("list", parents=[common], help="each channel's state and counters, across running gateways")
    upstream.add_parser("enable", parents=[common], help="take a channel back into service (also after its "
                        "credential was refused)").add_argument("name")
    disable = upstream.add_parser("disable", parents=[common], help="send a channel no more requests")
    disable.add_argument("name")
    disable.add_argument("--reason", default="", help="shown in `upstream list` and /health")

    db = sub.add_parser("db", help="ledger maintenance").add_subparsers(dest="action", required=True)
    db.add_parser("check", parents=[common], help="verify the ledger's invariants (exit 1 on a problem)")

    bench = sub.add_parser("bench", help="run the benchmark suite (options: cheaplm bench --help; the README's "
                           "Benchmarks section)", add_help=False)
    bench.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def _limit_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("limits (none or 0: no limit)")
    group.add_argument("--rpm", metavar="N", help="requests per minute")
    group.add_argument("--tpm", metavar="N", help="tokens (input + output) per minute")
    group.add_argument("--concurrency", metavar="N", help="requests at once")
    group.add_argument("--daily-usd", metavar="USD", help="spend cap per UTC day")
    group.add_argument("--monthly-usd", metavar="USD", help="spend cap per UTC month")


def _limits(args: argparse.Namespace) -> dict[str, int | None]:
    return admin.parse_limits({name: getattr(args, name) for name in admin.LIMIT_FLAGS})


def _print_table(rows: list[dict[str, Any]]) -> None:
    if not rows:
        print("(none)")
        return
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in columns))


Ledger = Callable[..., Any]  # admin.open_ledger bound to the configured path


async def _user_create(args: argparse.Namespace, config: Config, ledger: Ledger) -> None:
    username = admin.check_username(args.username)  # before a new ledger file is created
    password = _password_from_stdin() if args.password_stdin else None
    async with ledger(create=True) as store:
        account = await _accounts(config, store).create_user(username, password, args.email,
                                                             "admin" if args.admin else "user")
        print(f"created {'admin' if args.admin else 'user'} {account.username}")


def _account_flags(create: argparse.ArgumentParser) -> None:
    create.add_argument("--admin", action="store_true", help="an admin account (the admin API and pages)")
    create.add_argument("--email")
    create.add_argument("--password-stdin", action="store_true",
                        help="read a password for dashboard login from the first line of stdin")


def _account_commands(sub, user, common: argparse.ArgumentParser) -> None:
    """``user passwd|disable|enable`` and ``code create|list`` (proxy/accounts.py)."""
    passwd = user.add_parser("passwd", parents=[common], help="set a password; ends the user's sessions")
    passwd.add_argument("username")
    passwd.add_argument("--password-stdin", action="store_true", required=True,
                        help="read the password from the first line of stdin")
    for action, text in (("disable", "its keys stop working, its sessions end"), ("enable", "undo disable")):
        user.add_parser(action, parents=[common], help=text).add_argument("username")
    code = sub.add_parser("code", help="top-up redemption codes").add_subparsers(dest="action", required=True)
    create = code.add_parser("create", parents=[common], help="print N single-use codes (only hashes stored)")
    create.add_argument("--paid", required=True, help="USD paid for each; it buys paid x the value multiplier")
    create.add_argument("--count", type=int, default=1)
    create.add_argument("--expires", metavar="DATE", help="last valid day (UTC) or ISO date-time")
    code.add_parser("list", parents=[common], help="every code: value, status, who redeemed it")


def _password_from_stdin() -> str:
    line = sys.stdin.readline().rstrip("\r\n")
    return accounts.check_password(line)


def _accounts(config: Config, store) -> accounts.Accounts:
    return accounts.Accounts(store, config.accounts, config.value_multiplier, config.payments.bonus)


async def _user_passwd(args: argparse.Namespace, config: Config, ledger: Ledger) -> None:
    password = _password_from_stdin()
    async with ledger() as store:
        await _accounts(config, store).set_password(args.username, password)
    print(f"password set for {args.username}; their sessions ended")


async def _user_disable(args: argparse.Namespace, config: Config, ledger: Ledger) -> None:
    disable = args.action == "disable"
    async with ledger() as store:
        profile, _ = await _accounts(config, store).set_disabled(args.username, disable)
    print(f"{profile.username} {'disabled: keys refused within key_cache_seconds, sessions ended' if disable else 'enabled'}")


async def _code_create(args: argparse.Namespace, config: Config, ledger: Ledger) -> None:
    try:
        paid = parse_usd(args.paid)
    except ValueError as exc:
        raise admin.AdminError(f"--paid: {exc}") from None
    async with ledger() as store:
        lib = _accounts(config, store)
        expires = None if args.expires is None else accounts.parse_expiry(args.expires, lib.clock())
        codes = await lib.create_codes(paid, args.count, expires)
    print("\n".join(codes))
    print(f"({len(codes)} code(s), each ${format_usd(paid)} paid, ${format_usd(scale(paid, config.value_multiplier))}"
          " of API value; shown once)", file=sys.stderr)


async def _code_list(args: argparse.Namespace, config: Config, ledger: Ledger) -> None:
    async with ledger() as store:
        codes = await store.list_codes()
    now = time.time()
    _print_table([accounts.describe_code(c, now) for c in codes])


async def _user_list(args: argparse.Namespace, config: Config, ledger: Ledger) -> None:
    async with ledger() as store:
        users = await store.list_profiles()
    _print_table([{"username": a.username, "role": p.role, "disabled": "yes" if p.disabled else "-",
                   "balance_usd": format_usd(a.balance), "held_usd": format_usd(a.held),
                   "created": a.created_at} for p, a in users])


async def _key_create(args: argparse.Namespace, config: Config, ledger: Ledger) -> None:
    models = None if args.models is None else [m.strip() for m in args.models.split(",") if m.strip()]
    limits = KeyLimits(**_limits(args))
    async with ledger() as store:
        key, record = await admin.create_key(store, config.catalog(), args.username, args.name, models,
                                             not args.no_stream, args.ip, args.pass_thinking, limits)
        print(key)
        print(f"(shown once; prefix {record.prefix})", file=sys.stderr)


async def _key_list(args: argparse.Namespace, config: Config, ledger: Ledger) -> None:
    async with ledger() as store:
        keys = await admin.list_keys(store, args.username)
    _print_table([{
        "prefix": k.prefix, "name": k.name, "models": ",".join(k.models) if k.models else "*",
        "stream": "yes" if k.allow_stream else "no", "ips": ",".join(k.ips) or "*", **admin.describe_limits(k.limits),
        "created": k.created_at, "last_used": k.last_used_at or "-", "revoked": k.revoked_at or "-"} for k in keys])


async def _key_set(args: argparse.Namespace, config: Config, ledger: Ledger) -> None:
    changes = _limits(args)
    async with ledger() as store:
        record = await admin.set_key_limits(store, args.prefix, changes)
    shown = admin.describe_limits(record.limits)
    print(f"{record.prefix} ({record.username}): " + " ".join(f"{name}={value}" for name, value in shown.items()))


async def _key_revoke(args: argparse.Namespace, config: Config, ledger: Ledger) -> None:
    async with ledger() as store:
        record = await admin.revoke_key(store, args.prefix)
        print(f"revoked {record.prefix} ({record.username})")


async def _topup(args: argparse.Namespace, config: Config, ledger: Ledger) -> None:
    async with ledger() as store:
        account = await admin.topup(store, args.username, config.value_multiplier, args.paid, args.credit)
        print(f"{account.username} balance {format_usd(account.balance)} USD")


async def _balance(args: argparse.Namespace, config: Config, ledger: Ledger) -> None:
    async with ledger() as store:
        account = await admin.balance(store, args.username)
    print(json.dumps({"username": account.username, "balance_usd": format_usd(account.balance),
                      "held_usd": format_usd(account.held), "available_usd": format_usd(account.available)}))


async def _usage(args: argparse.Namespace, config: Config, ledger: Ledger) -> None:
    async with ledger() as store:
        rows = await admin.usage(store, args.username, args.limit)
    _print_table([{
        "time": u.created_at, "request": u.request_id, "model": u.model, "endpoint": u.endpoint,
        "stream": int(u.stream), "status": u.status, "in": u.input_tokens,
        "cache_w": u.cache_write_5m + u.cache_write_1h, "cache_r": u.cache_read, "out": u.output_tokens,
        "cost_usd": format_usd(u.cost), "partial": int(u.partial), "channel": u.channel or "-",
        "attempts": "-" if u.attempts is None else u.attempts} for u in rows])


async def _upstream_list(args: argparse.Namespace, config: Config, ledger: Ledger) -> None:
    async with ledger() as store:
        listing = await admin.upstream_list(store, config)
    _print_table([{c: row[c] for c in COLUMNS} for row in listing.rows])
    print(f"({listing.instances} running gateway instance(s); counters summed)" if listing.instances else
          "(no gateway is running: as the configuration and the operator's overrides start them)", file=sys.stderr)


async def _upstream_enable(args: argparse.Namespace, config: Config, ledger: Ledger) -> None:
    await _upstream_set(args, config, ledger, True)


async def _upstream_disable(args: argparse.Namespace, config: Config, ledger: Ledger) -> None:
    await _upstream_set(args, config, ledger, False)


async def _upstream_set(args: argparse.Namespace, config: Config, ledger: Ledger, enabled: bool) -> None:
    async with ledger() as store:
        override = await admin.set_upstream_enabled(store, config, args.name, enabled, getattr(args, "reason", ""))
    print(f"{'enabled' if override.enabled else 'disabled'} upstream channel {override.name} (running gateways "
          f"apply it within {config.channel_sync_interval:g} s)")


_ADMIN: Mapping[str, Callable[[argparse.Namespace, Config, Ledger], Awaitable[None]]] = {
    "user create": _user_create, "user list": _user_list, "key create": _key_create, "key list": _key_list,
    "key revoke": _key_revoke, "key set": _key_set, "topup": _topup, "balance": _balance, "usage": _usage,
    "upstream list": _upstream_list, "upstream enable": _upstream_enable, "upstream disable": _upstream_disable,
    "user passwd": _user_passwd, "user disable": _user_disable, "user enable": _user_disable,
    "code create": _code_create, "code list": _code_list,
}


def _listen_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _interrupted(exc: BaseException) -> bool:
    """Ctrl-C, bare or wrapped by trio's nurseries (serve's, when it stops a running gateway)."""
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(KeyboardInterrupt)[1] is None
    return isinstance(exc, KeyboardInterrupt)


def _failure(exc: BaseException, db_path: str | None, listen: str | None) -> str | None:
    """The one line for a failure the operator can act on; None for anything else (a bug,
    which keeps its traceback)."""
    if isinstance(exc, BaseExceptionGroup):  # trio's nurseries, hypercorn's among them, wrap errors
        lines = [_failure(e, db_path, listen) for e in exc.exceptions]
        return lines[0] if all(lines) else None
    if isinstance(exc, (ConfigError, admin.AdminError, StoreError)):
        return str(exc)
    if isinstance(exc, sqlite3.Error) and db_path:
        where = describe_location(db_path)
        if "locked" in str(exc):
            return f"the ledger at {where} is busy: another process holds its write lock ({exc})"
        return f"cannot open the ledger at {where}: {exc}"
    if isinstance(exc, OSError) and listen and (isinstance(exc, socket.gaierror) or exc.errno in _LISTEN_ERRNOS):
        reason = exc.strerror or str(exc)
        return f"cannot listen on {listen}: {reason[:1].lower()}{reason[1:]}"
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        from bench.__main__ import main as bench_main
        return bench_main(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    db_path = listen = None
    try:
        if args.command == "simulator":
            listen = _listen_address(args.host, args.port)
            return _run_simulator(args)
        config = load_config(args.config, db_path=args.db,
                             **({"host": args.host, "port": args.port, "upstream_url": args.upstream_url}
                                if args.command == "serve" else {}))
        db_path = config.db_path
        logs.configure(config.log_format, config.log_level)
        if args.command == "serve":
            from ..serve import serve
            listen = _listen_address(config.host, config.port)
            trio.run(partial(serve, config, shutdown_signals=(signal.SIGTERM,)))
            return 0
        if args.command == "db":
            return trio.run(_db_check, config)
        command = " ".join(filter(None, (args.command, getattr(args, "action", None))))
        trio.run(_ADMIN[command], args, config, partial(admin.open_ledger, config.db_path))
        return 0
    except BaseException as exc:
        if _interrupted(exc):
            return 130
        line = _failure(exc, db_path, listen)
        if line is None:
            raise
        print(f"cheaplm: {line}", file=sys.stderr)
        return 1


async def _db_check(config: Config) -> int:
    """``cheaplm db check``: one line per broken invariant (exit 1), or a summary (exit 0)."""
    async with admin.open_ledger(config.db_path) as store:
        problems = await store.check()
        stats = await store.stats()
    for problem in problems:
        print(problem)
    if not problems:
        print(f"ok: {stats.accounts} accounts, {stats.ledger_entries} ledger entries, {stats.open_holds} open holds")
    return 1 if problems else 0


def _run_simulator(args: argparse.Namespace) -> int:
    from ..simulator.cache import PromptCache
    from ..simulator.script import Knobs
    from ..simulator.server import SimulatorState, serve_simulator

    state = SimulatorState(knobs=Knobs(ttft_ms=args.ttft_ms, gap_ms=args.gap_ms, deltas=args.deltas,
                                       delta_bytes=args.delta_bytes), api_key=args.api_key, record=args.record,
                           prompt_cache=PromptCache() if args.prompt_cache else None)
    if args.secret:
        state.secret = args.secret.encode()

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            url, _ = await nursery.start(partial(serve_simulator, args.host, args.port, state=state))
            logging.getLogger("cheaplm.simulator").info("simulated upstream listening on %s", url)

    trio.run(run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
