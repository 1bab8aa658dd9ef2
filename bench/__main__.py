"""python -m bench (or cheaplm bench): the gateway's load-test harness.

Starts the simulated upstream and the gateway as separate processes (or targets
URLs you give), pins the gateway to one core, creates its own user, key and
balance, runs each scenario's arms interleaved in rounds over a concurrency sweep
(or an open-loop request rate), and reports a markdown table, JSON and a PNG.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import trio

from . import claude_code, loadgen, metrics, pgdb, procs, report, scenarios
from .metrics import Phase

DEFAULT_SWEEP = (1, 8, 32, 128, 256, 512, 1024)
QUICK_SWEEP = (1, 8, 32)
RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default=",".join(scenarios.DEFAULT_SCENARIOS),
                        help=f"comma list of {', '.join(scenarios.SCENARIOS)} "
                             f"(default {','.join(scenarios.DEFAULT_SCENARIOS)})")
    parser.add_argument("--concurrency", help="comma list (default 1,8,32,128,256,512,1024)")
    parser.add_argument("--rate", type=float, help="open loop: requests per second instead of a concurrency sweep")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per phase (in-flight requests finish)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds per load level")
    parser.add_argument("--ramp", type=float, default=None,
                        help="closed loop: seconds over which users start (default: one stream's length); "
                             "requests sent meanwhile are warm-up, not measured")
    parser.add_argument("--deltas", type=int, default=64)
    parser.add_argument("--delta-bytes", type=int, default=16)
    parser.add_argument("--gap-ms", type=float, default=20.0)
    parser.add_argument("--ttft-ms", type=float, default=0.0)
    parser.add_argument("--cc-max-tokens", type=int, default=claude_code.MAX_TOKENS,
                        help="claude-code scenario: max_tokens (thinking budget: one less; default 32000)")
    parser.add_argument("--cc-model", default=claude_code.MODEL,
                        help=f"claude-code scenario: model id (default {claude_code.MODEL})")
    parser.add_argument("--quick", action="store_true", help="a smoke run in well under a minute")
    parser.add_argument("--gateway-url", help="bench a running gateway instead of starting one")
    parser.add_argument("--gateway-key", help="its key (with --gateway-url)")
    parser.add_argument("--gateway-pid", type=int, help="its process, for CPU and RSS figures")
    parser.add_argument("--simulator-url", help="a running simulator for the direct arm")
    parser.add_argument("--peer", help="another Anthropic-compatible gateway to compare, as an arm")
    parser.add_argument("--peer-key")
    parser.add_argument("--workers", type=int,
                        help="start the gateway as `serve --workers N` (1: one process), and pin nothing: the "
                             "gateway, the simulator and the load generator share every core (default: one "
                             "process pinned to a core of its own)")
    parser.add_argument("--floor", action="store_true",
                        help="add the 'floor' arm: a bare trio relay (bench/floor.py) on the gateway's core")
    parser.add_argument("--postgres", metavar="SERVER", nargs="?", const=pgdb.DEFAULT_SERVER,
                        help="the gateway's ledger on PostgreSQL: a fresh database made on SERVER (default "
                             f"{pgdb.DEFAULT_SERVER}) and dropped at the end, instead of a SQLite file")
    parser.add_argument("--out", default=str(RESULTS), help="where JSON and PNG go")
    parser.add_argument("--label", default="", help="a name for this run (file names, README table)")
    args = parser.parse_args(argv)
    if args.quick:
        args.concurrency = args.concurrency or ",".join(map(str, QUICK_SWEEP))
        args.rounds, args.duration, args.deltas, args.gap_ms = 1, min(args.duration, 0.5), 16, 10.0
    args.sweep = tuple(int(c) for c in args.concurrency.split(",")) if args.concurrency else DEFAULT_SWEEP
    args.scenarios = [s.strip() for s in args.scenario.split(",") if s.strip()]
    unknown = set(args.scenarios) - set(scenarios.SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    if args.cc_max_tokens <= 1024:
        parser.error("--cc-max-tokens must be above 1024 (the thinking budget, max_tokens - 1, must be >= 1024)")
    if args.workers is not None and not 1 <= args.workers <= 256:
        parser.error("--workers must be 1-256")
    if bool(args.gateway_url) != bool(args.gateway_key):
        parser.error("--gateway-url and --gateway-key go together")
    if args.postgres and args.gateway_url:
        parser.error("--postgres is for the gateway the bench starts, not with --gateway-url")
    return args


async def _create_account(db_path: str) -> str:
    from proxy.accounts.service import Accounts
    from proxy.catalog import default_catalog
    from storage import open_store

    store = await open_store(db_path)
    try:
        await Accounts(store).create_user("bench")
        await store.credit("bench", 10**12, "credit")  # a million dollars of API value
        key, _ = await Accounts(store).create_key(default_catalog(), "bench", "bench")
        return key
    finally:
        await store.aclose()


class Harness:
    """The processes under test and the figures sampled from them."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.children: list[procs.Child] = []
        self.gateway_pid = args.gateway_pid
        self.simulator_pid: int | None = None
        self.floor: procs.Child | None = None
        self.gateway_cores, self.harness_cores = procs.cpu_plan() if args.workers is None else (None, None)
        self.resources = ExitStack()  # the --postgres database, dropped after the processes stop

    def start(self) -> tuple[str, str, str]:
        """(simulator URL, gateway URL, gateway key)."""
        args = self.args
        if self.harness_cores:
            os.sched_setaffinity(0, self.harness_cores)
        simulator_url = args.simulator_url
        if not simulator_url:
            port = procs.free_port()
            child = procs.spawn("simulator", ["simulator", "--port", str(port), "--secret",
                                              claude_code.SIGNING_SECRET], port, self.harness_cores,
                                self.workdir / "simulator.log")
            self.children.append(child)
            procs.wait_ready(child, "/v1/models")
            simulator_url, self.simulator_pid = child.url, child.pid
        if args.floor:
            port = procs.free_port()
            self.floor = procs.spawn("floor", ["--port", str(port), "--upstream", simulator_url], port,
                                     self.gateway_cores, self.workdir / "floor.log", module="bench.floor")
            self.children.append(self.floor)
            procs.wait_ready(self.floor, "/v1/models")
        if args.gateway_url:
            return simulator_url, args.gateway_url.rstrip("/"), args.gateway_key
        db = self.resources.enter_context(pgdb.fresh_database(args.postgres)) if args.postgres \
            else str(self.workdir / "bench.db")
        key = trio.run(_create_account, db)
        self._gateway_port = procs.free_port()
        self._gateway_argv = ["serve", "--port", str(self._gateway_port), "--db", db, "--upstream-url",
                              simulator_url, *(["--workers", str(args.workers)] if args.workers else [])]
        child = self._start_gateway()
        return simulator_url, child.url, key

    def _start_gateway(self) -> procs.Child:
        child = procs.spawn("gateway", self._gateway_argv, self._gateway_port, self.gateway_cores,
                            self.workdir / "gateway.log")
        self.children.append(child)
        procs.wait_ready(child, "/health")
        if (self.args.workers or 1) > 1:
            procs.wait_workers(child, self.args.workers)
        self.gateway_pid = child.pid
        return child

    def fresh_gateway(self) -> None:
        """Restart the gateway this bench started (same port, same ledger), so that each
        scenario's memory figures start from an idle process."""
        if self.args.gateway_url:
            return
        old = next(c for c in reversed(self.children) if c.name == "gateway")
        old.stop()
        self.children.remove(old)
        self._start_gateway()

    def stop(self) -> None:
        try:
            for child in reversed(self.children):
                child.stop()
        finally:
            self.resources.close()

    def ramp(self, phase: Phase) -> float:
        """Closed-loop ramp: --ramp, or by default one stream's length (none for tiny
        requests), at most half the phase."""
        if self.args.ramp is not None:
            return self.args.ramp
        if phase.scenario == "nonstream":
            return 0.0
        return min((self.args.ttft_ms + self.args.deltas * self.args.gap_ms) / 1000, self.args.duration / 2)

    def cpu(self, pid: int | None) -> float | None:
        """A process's CPU seconds (with its workers', for a gateway run with --workers)."""
        return procs.tree_cpu(pid) if pid else None

    def relay_pid(self, arm: str) -> int | None:
        """The process whose CPU and memory an arm measures (the gateway's, the floor's)."""
        if arm == "gateway":
            return self.gateway_pid
        return self.floor.pid if arm == "floor" and self.floor else None

    async def run_phase(self, target: loadgen.Target, phase: Phase, load: int, mode: str) -> None:
        pid = self.relay_pid(target.name)
        results: list[loadgen.Result] = []
        peak = [0]

        async def sample_rss() -> None:
            while True:
                peak[0] = max(peak[0], procs.tree_rss(pid))
                await trio.sleep(0.05)

        cpu0 = self.cpu(pid)
        sim0 = self.cpu(self.simulator_pid)
        self0 = procs.self_cpu()
        began = time.perf_counter()
        async with trio.open_nursery() as nursery:
            if pid:
                nursery.start_soon(sample_rss)
            if mode == "open":
                window = await loadgen.open_loop(target, load, self.args.duration, results)
            else:
                window = await loadgen.closed_loop(target, load, self.args.duration, results, self.ramp(phase))
            nursery.cancel_scope.cancel()
        phase.add_round(results, window, time.perf_counter() - began)
        phase.loadgen_cpu += procs.self_cpu() - self0
        if sim0 is not None:
            phase.simulator_cpu = (phase.simulator_cpu or 0.0) + self.cpu(self.simulator_pid) - sim0
        if pid:
            phase.relay_cpu = (phase.relay_cpu or 0.0) + self.cpu(pid) - cpu0
            phase.relay_rss_peak = max(phase.relay_rss_peak or 0, peak[0])


async def run_all(args: argparse.Namespace, harness: Harness, urls: tuple[str, str, str]) -> list[Phase]:
    simulator_url, gateway_url, key = urls
    shape = scenarios.Shape(args.deltas, args.delta_bytes, args.gap_ms, args.ttft_ms)
    mode = "open" if args.rate else "closed"
    loads = (int(args.rate),) if args.rate else args.sweep
    phases: list[Phase] = []
    for index, scenario in enumerate(args.scenarios):
        if index:
            harness.fresh_gateway()
        arms = scenarios.targets(scenario, shape, simulator_url, gateway_url, key, args.peer, args.peer_key,
                                 harness.floor.url if harness.floor else None, cc_max_tokens=args.cc_max_tokens,
                                 cc_model=args.cc_model)
        for target in arms:  # warm up: connections, caches, code paths
            await loadgen.closed_loop(target, 4, 0.2, [])
        idle = {t.name: procs.tree_rss(pid) for t in arms if (pid := harness.relay_pid(t.name))}
        for load in loads:
            cells = {t.name: Phase(scenario, t.name, load, mode, relay_rss_idle=idle.get(t.name)) for t in arms}
            for round_no in range(args.rounds):
                order = arms if round_no % 2 == 0 else list(reversed(arms))
                for target in order:
                    await harness.run_phase(target, cells[target.name], load, mode)
                    print(f"  {scenario:13} {target.name:8} load {load:5} round {round_no + 1}: "
                          f"{len(cells[target.name].results)} requests", file=sys.stderr)
            phases.extend(cells.values())
    return phases


def machine_description() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            model = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{os.cpu_count()} cores ({model}), {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') // 2**30} "
            f"GiB, Python {platform.python_version()}, {platform.system()} {platform.release()}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    procs.raise_fd_limit()
    workdir = Path(tempfile.mkdtemp(prefix="cheaplm-bench-"))
    harness = Harness(args, workdir)
    try:
        urls = harness.start()
        started = time.time()
        phases = trio.run(run_all, args, harness, urls)
    finally:
        harness.stop()
    shape = scenarios.Shape(args.deltas, args.delta_bytes, args.gap_ms, args.ttft_ms)
    stats = [metrics.summarize(p, deltas_per_stream=args.deltas if p.scenario != "nonstream" else 1,
                               tokens_per_delta=shape.tokens_per_delta if p.scenario != "nonstream" else 2,
                               gap_s=args.gap_ms / 1000 if p.scenario != "nonstream" else 0,
                               harness_cores=len(harness.harness_cores or ()) or os.cpu_count() or 1)
             for p in phases]
    metrics.flag_simulator_ceiling(stats)
    machine = machine_description()
    pinned = f"gateway on core(s) {sorted(harness.gateway_cores)}, harness on {sorted(harness.harness_cores)}" \
        if harness.gateway_cores else "no pinning (one core)" if args.workers is None \
        else f"gateway `serve --workers {args.workers}`, nothing pinned"
    if args.postgres:
        pinned += "; ledger on PostgreSQL"
    table = report.markdown(stats, f"{machine}; {pinned}")
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "bench" + (f"-{args.label}" if args.label else "") + ("-quick" if args.quick else "")
    meta = {"machine": machine, "pinning": pinned, "args": {k: v for k, v in vars(args).items()
                                                          if isinstance(v, (str, int, float, bool, list, tuple,
                                                                            type(None)))},
            "started": started, "duration_s": round(time.time() - started, 1)}
    report.write_json(stats, meta, out / f"{stem}.json")
    plotted = report.write_plot(stats, out / f"{stem}.png")
    print(f"wrote {out / (stem + '.json')}" + (f" and {stem}.png" if plotted else " (no PNG: matplotlib missing)"),
          file=sys.stderr)
    for log in ("gateway.log", "simulator.log"):
        if (workdir / log).exists():
            shutil.copy(workdir / log, out / f"{stem}-{log}")
    shutil.rmtree(workdir, ignore_errors=True)
    errors = sum(s.errors for s in stats)
    return 0 if errors == 0 else 3


if __name__ == "__main__":
    sys.exit(main())
