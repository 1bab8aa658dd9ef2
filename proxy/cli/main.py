"""The ``cheaplm`` command: the parser (``build_parser``, put together from one module
per command group), the dispatch, and the one failure mapping.

Each admin command is a thin call into a library (proxy/accounts/, proxy/upstream/
control.py), which words its errors for people; ``_failure`` maps them to one line on
stderr, ``cheaplm: ...``, naming the command's flag where the error is about one, and a
non-zero exit. Read commands take ``--json`` (one JSON document) and print tables
otherwise (output.py).
"""

from __future__ import annotations

import argparse
import errno
import logging
import socket
import sys

import trio

from ..accounts.errors import AccountError
from ..config import ConfigError, load_config
from ..config.settings import bind_address
from ..observe import request_log as logs
from ..upstream.control import ChannelError
from . import codes, credits, db, keys, run, upstream, usage, users
from .context import Command
from storage import describe_location
from storage.base import StoreBusy, StoreError

LEDGER_DEFAULT = "$CHEAPLM_DB, else the config file's database_url, else ./cheaplm.db in the current directory"
EPILOG = ("The ledger is a database URL: --db URL (a SQLite file path, a sqlite:///PATH or a postgresql:// URL), "
          f"else {LEDGER_DEFAULT}. Only "
          "`serve` and `user create` create a new one. Read commands take --json. Benchmarks: cheaplm bench "
          "--help, and the README's Benchmarks section.")
_LISTEN_ERRNOS = frozenset({errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES})
# The library's ``param`` -> the flag that gives it (a refusal about it names the flag).
FLAGS = {**keys.LIMIT_FLAGS, "models": "--models", "ips": "--ip", "name": "--name", "paid": "--paid",
         "credit": "--credit", "count": "--count", "expires_at": "--expires", "limit": "--limit",
         "reason": "--reason", "email": "--email"}


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line, like every other failure."""

    def error(self, message: str):
        self.exit(2, f"cheaplm: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cheaplm", description="CheapLM gateway and its admin tools", epilog=EPILOG)
    common = _Parser(add_help=False)
    common.add_argument("--config", help="TOML config file (default: $CHEAPLM_CONFIG)")
    common.add_argument("--db", metavar="URL", help="the ledger: a SQLite file path, a sqlite:///PATH or a "
                                                    "postgresql:// URL "
                                                     f"(default: {LEDGER_DEFAULT})")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for group in (run, users, keys, credits, usage, codes, upstream, db):
        group.add(sub, common)
    return parser


def _interrupted(exc: BaseException) -> bool:
    """Ctrl-C, bare or wrapped by trio's nurseries (serve's, when it stops a running gateway)."""
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(KeyboardInterrupt)[1] is None
    return isinstance(exc, KeyboardInterrupt)


def _refusal(exc: AccountError) -> str:
    """The library's words, naming the flag its refusal is about."""
    text = str(exc)
    flag = FLAGS.get(exc.param or "")
    if flag is None:
        return text
    if text.startswith(exc.param) and text[len(exc.param):][:1] in (" ", ":"):
        return flag + text[len(exc.param):]
    return f"{flag}: {text}"


def _failure(exc: BaseException, db_path: str | None, listen: str | None) -> str | None:
    """The one line for a failure the operator can act on; None for anything else (a bug,
    which keeps its traceback)."""
    if isinstance(exc, BaseExceptionGroup):  # trio's nurseries, hypercorn's among them, wrap errors
        lines = [_failure(e, db_path, listen) for e in exc.exceptions]
        return lines[0] if all(lines) else None
    if isinstance(exc, AccountError):
        return _refusal(exc)
    if isinstance(exc, StoreBusy) and db_path:
        return f"the ledger at {describe_location(db_path)} is busy: another process holds its write lock ({exc})"
    if isinstance(exc, (ConfigError, ChannelError, StoreError)):
        return str(exc)
    if isinstance(exc, OSError) and listen and (isinstance(exc, socket.gaierror) or exc.errno in _LISTEN_ERRNOS):
        reason = exc.strerror or str(exc)
        return f"cannot listen on {listen}: {reason[:1].lower()}{reason[1:]}"
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        return run.run_bench(argv[1:])
    args = build_parser().parse_args(credits.amount_after_separator(argv))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    db_path = listen = None
    try:
        if args.command == "simulator":
            listen = bind_address(args.host, args.port)
            return run.run_simulator(args)
        config = load_config(args.config, database_url=args.db,
                             **({"host": args.host, "port": args.port, "upstream_url": args.upstream_url,
                                 "workers": args.workers} if args.command == "serve" else {}))
        db_path = config.database_url
        logs.configure(config.log_format, config.log_level)
        if args.command == "serve":
            listen = bind_address(config.host, config.port)
            return run.run_serve(config)
        return trio.run(args.run, Command(args, config)) or 0
    except BaseException as exc:
        if _interrupted(exc):
            return 130
        line = _failure(exc, db_path, listen)
        if line is None:
            raise
        print(f"cheaplm: {line}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
