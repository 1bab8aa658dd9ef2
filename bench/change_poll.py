"""What following the change feed costs a gateway: a measurement, not a test.

``python -m bench.change_poll [--polls 2000] [--rows 2000] [--pg postgresql://...]``

A ledger whose feed holds ``--rows`` notices (an hour of a very busy operator), read as
the follower reads it (``changes_after(last)``, nothing new: the usual poll) ``--polls``
times back to back, on SQLite (a file; the read path's worker threads) and, with
``--pg``, on PostgreSQL (a fresh schema, dropped after). Prints the wall time and this
process's CPU per poll, and the CPU share of one core at the default 4 polls a second.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid

import trio

from proxy.shared.changes import POLL_SECONDS
from storage import open_store


async def measure(url: str, polls: int, rows: int) -> dict:
    store = await open_store(url)
    try:
        await store.create_user("bench")
        for i in range(rows):
            await store.set_channel_enabled(f"c{i % 50}", bool(i % 2), "")
        last = await store.last_change()
        for _ in range(50):
            await store.changes_after(last)  # warm the read path
        walls = []
        cpu = time.process_time()
        for _ in range(polls):
            started = time.perf_counter()
            assert not await store.changes_after(last)
            walls.append(time.perf_counter() - started)
        cpu = (time.process_time() - cpu) / polls
    finally:
        await store.aclose()
    walls.sort()
    return {"p50_ms": statistics.median(walls) * 1000, "p99_ms": walls[int(len(walls) * 0.99)] * 1000,
            "cpu_ms": cpu * 1000, "core_share": cpu / POLL_SECONDS}


def pg_schema(server: str) -> tuple[str, callable]:
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")

    def drop() -> None:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
    return f"{server}?options=-csearch_path%3D{schema}", drop


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--polls", type=int, default=2000)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--pg", help="a PostgreSQL server URL (a schema is made and dropped)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = {"sqlite": await measure(f"{tmp}/ledger.db", args.polls, args.rows)}
    if args.pg:
        url, drop = pg_schema(args.pg)
        try:
            results["postgresql"] = await measure(url, args.polls, args.rows)
        finally:
            drop()
    for name, r in results.items():
        print(f"{name:10} poll p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms  CPU {r['cpu_ms']:.3f} ms/poll  "
              f"= {r['core_share'] * 100:.3f}% of a core at {1 / POLL_SECONDS:g} polls/s")


if __name__ == "__main__":
    trio.run(main)
