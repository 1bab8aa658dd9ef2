"""Can the SQLite store stall the event loop? A measurement, not a test.

``python -m bench.stall_probe [--dir DIR] [--wal-mb 100] [--writer-seconds 5] [--no-pin]``

One trio process plays a quiet gateway: it looks a key up, places a hold, and settles
it, with pauses of a few milliseconds so that the store's lane stays idle (the case
where operations may run on the event-loop thread), while a ticker task measures how
late the event loop wakes it (the loop's lag: a stall of the loop shows there, whatever
caused it). Meanwhile a second process writes ``--wal-mb`` MB into the same database,
1 MB a transaction, spread over ``--writer-seconds``, while (unless ``--no-pin``) a
long reader in that process (a backup, a report) holds every checkpoint back: the WAL
grows to about that size, and whoever commits next after the reader ends checkpoints
all of it (SQLite's auto-checkpoint runs on the connection that commits).

Phases: ``idle`` (no writer), ``writer`` (while it writes), ``after`` (a few seconds
after it exits, the backlog in the WAL). For each: the p50 / p99 / max latency of each
operation, apart for the calls that ran inline (on the event loop's thread: these are
the loop's stalls) and those that went through the worker thread; and the loop's lag.
The database goes in --dir, kept afterwards (default: a new directory in /var/tmp,
removed afterwards). It should be on a real disk, not a tmpfs: fsync and page-cache
writeback are part of what is measured.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field

import trio

from storage import open_store
from storage.sqlite import lane
from storage.records import UsageRow

WRITER = textwrap.dedent("""
    import os, sqlite3, sys, time
    path, megabytes, autocheckpoint, seconds, pin = sys.argv[1:]
    megabytes, seconds = int(megabytes), float(seconds)
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    conn.execute(f"PRAGMA wal_autocheckpoint={int(autocheckpoint)}")
    conn.execute("CREATE TABLE IF NOT EXISTS _probe_scratch (id INTEGER PRIMARY KEY, blob BLOB)")
    if pin == "1":  # a long reader (a backup, a report) holds every checkpoint back meanwhile
        reader = sqlite3.connect(path, isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM accounts").fetchone()
    started = time.monotonic()
    for i in range(megabytes):
        time.sleep(max(0.0, started + seconds * i / megabytes - time.monotonic()))  # paced
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO _probe_scratch (blob) VALUES (?)", [(os.urandom(3500),) for _ in range(256)])
        conn.execute("COMMIT")
    wal = os.path.getsize(path + "-wal")
    if pin == "1":
        reader.execute("COMMIT")  # the backlog may be checkpointed from now on, by whoever commits next
    print(f"{time.monotonic() - started:.2f} {wal}", flush=True)
    os._exit(0)  # no checkpoint on the way out
""")


@dataclass
class Samples:
    inline: dict[str, list[float]] = field(default_factory=dict)   # op -> seconds, calls without a thread hop
    hopped: dict[str, list[float]] = field(default_factory=dict)   # op -> seconds, calls through the thread
    lag: list[float] = field(default_factory=list)                 # the ticker's lateness, seconds

    def add(self, op: str, seconds: float, hopped: bool) -> None:
        (self.hopped if hopped else self.inline).setdefault(op, []).append(seconds)


class HopCounter:
    """Counts thread hops (trio.to_thread.run_sync calls, and the SQLite writer lane's own,
    lane.in_thread): an operation that made none ran on the event loop's thread."""

    def __init__(self) -> None:
        self.hops = 0
        self._real = trio.to_thread.run_sync
        self._lane = lane.in_thread

    async def run_sync(self, *args, **kwargs):
        self.hops += 1
        return await self._real(*args, **kwargs)

    async def in_thread(self, *args):
        self.hops += 1
        return await self._lane(*args)


def quantiles(values: list[float]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"{statistics.median(ordered) * 1e3:.3f} / {p99 * 1e3:.3f} / {ordered[-1] * 1e3:.3f}"


async def ticker(samples: dict[str, Samples], phase: list[str], period: float = 0.001) -> None:
    while True:
        before = time.perf_counter()
        await trio.sleep(period)
        samples[phase[0]].lag.append(time.perf_counter() - before - period)


async def drive(store, key, account_id: int, samples: dict[str, Samples], phase: list[str],
                hops: HopCounter, pause: float) -> None:
    """Key lookup, hold, settle, each after a pause that leaves the lane quiet."""
    n = 0
    while True:
        n += 1
        request_id = f"probe-{n}"
        for op in ("find_key", "place_hold", "settle"):
            await trio.sleep(pause)
            hops_before, started = hops.hops, time.perf_counter()
            if op == "find_key":
                await store.find_key(key.prefix)
            elif op == "place_hold":
                hold = await store.place_hold(account_id, 100, request_id)
            else:
                await store.settle(hold, UsageRow(request_id=request_id, key_id=key.id, model="m",
                                                  endpoint="messages", stream=False, status=200, cost=7))
            samples[phase[0]].add(op, time.perf_counter() - started, hops.hops != hops_before)


async def roundtrip(calls: int) -> tuple[float, float]:
    """The median cost of a bare thread round trip, and of a trio.sleep(0) for scale (ms)."""
    def noop() -> None:
        return None

    hop, sleep0 = [], []
    for _ in range(calls):
        started = time.perf_counter()
        await trio.to_thread.run_sync(noop)
        hop.append(time.perf_counter() - started)
        started = time.perf_counter()
        await trio.sleep(0)
        sleep0.append(time.perf_counter() - started)
    return statistics.median(hop) * 1e3, statistics.median(sleep0) * 1e3


async def lookup_costs(store, prefix: str, calls: int) -> tuple[float, float]:
    """The median ms of a key lookup on the loop (as the store runs it) and of the same
    lookup through the writer lane's thread (what moving it off the loop would cost)."""
    here, there = [], []
    for _ in range(calls):
        started = time.perf_counter()
        await store.find_key(prefix)
        here.append(time.perf_counter() - started)
        started = time.perf_counter()
        await store._lane.run(store._ledger.find_key, prefix, reads_only=True)
        there.append(time.perf_counter() - started)
    return statistics.median(here) * 1e3, statistics.median(there) * 1e3


async def probe(args: argparse.Namespace) -> None:
    directory = args.dir or tempfile.mkdtemp(prefix="cheaplm-stall-", dir="/var/tmp" if os.path.isdir("/var/tmp")
                                             else None)
    try:
        await probe_in(args, os.path.join(directory, "probe.db"))
    finally:
        if not args.dir:
            shutil.rmtree(directory, ignore_errors=True)


async def probe_in(args: argparse.Namespace, path: str) -> None:
    store = await open_store(path, instance_id="probe")
    await store.register_instance(600)
    await store.create_user("probe")
    await store.credit("probe", 10**12, "credit")
    key = await store.create_key("probe", "sk-cl-probe000", "hash", "probe", None, True, (), None)
    account = await store.get_account("probe")
    hops = HopCounter()
    trio.to_thread.run_sync = hops.run_sync  # this process only, for the probe's count (restored below)
    lane.in_thread = hops.in_thread
    phases = ("idle", "writer", "after")
    samples = {name: Samples() for name in phases}
    phase = ["idle"]
    hop_ms, sleep0_ms = await roundtrip(args.roundtrips)
    on_loop_ms, in_lane_ms = await lookup_costs(store, key.prefix, args.roundtrips)
    try:
        writer_report = await run_phases(args, path, store, key, account.id, samples, phase, hops)
    finally:
        trio.to_thread.run_sync, lane.in_thread = hops._real, hops._lane
    await store.aclose()
    report(path, writer_report, hop_ms, sleep0_ms, on_loop_ms, in_lane_ms, samples)


async def run_phases(args, path, store, key, account_id, samples, phase, hops) -> str:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker, samples, phase)
        nursery.start_soon(drive, store, key, account_id, samples, phase, hops, args.pause)
        await trio.sleep(args.idle_seconds)
        phase[0] = "writer"
        writer = await trio.lowlevel.open_process(
            [sys.executable, "-c", WRITER, path, str(args.wal_mb), str(args.writer_autocheckpoint),
             str(args.writer_seconds), "1" if args.pin else "0"],
            stdout=subprocess.PIPE)
        output = b""
        while chunk := await writer.stdout.receive_some():
            output += chunk
        await writer.wait()
        seconds, wal = output.decode().split()
        writer_report = f"writer: {args.wal_mb} MB in {float(seconds):.2f} s, its WAL {int(wal) / 1e6:.1f} MB"
        phase[0] = "after"
        await trio.sleep(args.after_seconds)
        nursery.cancel_scope.cancel()
    return writer_report


def report(path, writer_report, hop_ms, sleep0_ms, on_loop_ms, in_lane_ms, samples) -> None:
    phases = tuple(samples)
    wal_path = path + "-wal"
    print(f"database: {path}; {writer_report}; WAL at the end "
          f"{os.path.getsize(wal_path) / 1e6 if os.path.exists(wal_path) else 0:.1f} MB")
    print(f"bare thread round trip (trio.to_thread.run_sync): median {hop_ms:.3f} ms; "
          f"trio.sleep(0): {sleep0_ms:.3f} ms")
    print(f"key lookup, idle store: on the loop {on_loop_ms:.3f} ms, through the lane's thread {in_lane_ms:.3f} ms "
          "(medians)")
    print("| phase | what | calls | p50 / p99 / max ms |")
    print("|---|---|---|---|")
    for name in phases:
        for kind, ops in (("inline", samples[name].inline), ("thread", samples[name].hopped)):
            for op, values in sorted(ops.items()):
                print(f"| {name} | {op}, {kind} | {len(values)} | {quantiles(values)} |")
        lag = samples[name].lag
        print(f"| {name} | loop lag (1 ms ticker; {sum(1 for v in lag if v > 0.010)} over 10 ms) | {len(lag)} "
              f"| {quantiles(lag)} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.stall_probe", description=__doc__.split("\n")[0])
    parser.add_argument("--dir", help="where the probe's database goes, kept afterwards (default: a new directory "
                                      "in /var/tmp, removed afterwards)")
    parser.add_argument("--wal-mb", type=int, default=100, help="MB the other process writes")
    parser.add_argument("--writer-autocheckpoint", type=int, default=1000,
                        help="the other process's wal_autocheckpoint (SQLite's default; 0: it never checkpoints)")
    parser.add_argument("--writer-seconds", type=float, default=5.0, help="how long it spreads its writes over")
    parser.add_argument("--no-pin", dest="pin", action="store_false",
                        help="no long reader holding checkpoints back while the other process writes")
    parser.add_argument("--pause", type=float, default=0.003, help="seconds between operations (> the lane's QUIET)")
    parser.add_argument("--idle-seconds", type=float, default=2.0)
    parser.add_argument("--after-seconds", type=float, default=3.0)
    parser.add_argument("--roundtrips", type=int, default=2000)
    trio.run(probe, parser.parse_args(argv))


if __name__ == "__main__":
    main()
