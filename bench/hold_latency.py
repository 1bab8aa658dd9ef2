"""python -m bench.hold_latency: what a hold costs on each store, at concurrency 1.

The same loop as tests/storage/test_sqlite_reports.py's: place a hold, release it, 1 ms
apart, ``--holds`` times, on a SQLite file and on a fresh PostgreSQL database (made on
``--postgres-server``, dropped at the end), in alternating blocks so both see the same
machine. Prints p50 / p99 / max of ``place_hold`` and of the hold's round trip (place +
release, what a request's ledger work is, settle being a release with a usage row),
in milliseconds:

    python -m bench.hold_latency --holds 2000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio

from . import pgdb


def _figures(took: list[float]) -> str:
    ms = sorted(t * 1000 for t in took)
    return f"{statistics.median(ms):.3f} / {ms[int(len(ms) * 0.99) - 1]:.3f} / {ms[-1]:.3f}"


async def _account(url: str):
    from proxy.accounts.service import Accounts
    from proxy.catalog import default_catalog
    from storage import open_store

    store = await open_store(url, instance_id="bench-holds")
    await store.register_instance(60)
    await Accounts(store).create_user("holds")
    await store.credit("holds", 10**12, "credit")
    _, key = await Accounts(store).create_key(default_catalog(), "holds")
    return store, key


async def _block(store, key, n: int, placed: list[float], rounds: list[float]) -> None:
    for i in range(n):
        started = time.perf_counter()
        hold = await store.place_hold(key.account_id, 100, f"h{time.monotonic_ns()}", key.id)
        held = time.perf_counter()
        await store.release(hold, None)
        placed.append(held - started)
        rounds.append(time.perf_counter() - started)
        await trio.sleep(0.001)


async def measure(sqlite_url: str, pg_url: str, holds: int, blocks: int = 4) -> dict[str, tuple[list, list]]:
    stores = {name: await _account(url) for name, url in (("sqlite", sqlite_url), ("postgresql", pg_url))}
    out: dict[str, tuple[list, list]] = {name: ([], []) for name in stores}
    try:
        for name, (store, key) in stores.items():  # warm-up
            await _block(store, key, 20, [], [])
        for _ in range(blocks):
            for name, (store, key) in stores.items():
                await _block(store, key, holds // blocks, *out[name])
    finally:
        for store, _ in stores.values():
            await store.unregister_instance()
            await store.aclose()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hold_latency", description=__doc__.splitlines()[0])
    parser.add_argument("--holds", type=int, default=2000, help="holds per store")
    parser.add_argument("--postgres-server", default=pgdb.DEFAULT_SERVER)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cheaplm-holds-") as tmp, \
            pgdb.fresh_database(args.postgres_server) as pg_url:
        out = trio.run(measure, str(Path(tmp) / "holds.db"), pg_url, args.holds)
    print(f"{args.holds} holds per store, concurrency 1, ms p50 / p99 / max")
    print("| store | place_hold | place + release |")
    print("|---|---|---|")
    for name, (placed, rounds) in out.items():
        print(f"| {name} | {_figures(placed)} | {_figures(rounds)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
