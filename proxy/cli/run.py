"""``cheaplm serve``, ``cheaplm simulator`` and ``cheaplm bench``: the long-running
commands. The benchmark suite runs as its own process (``python -m bench``): it drives
the gateway from outside, so the CLI never imports it."""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
from functools import partial

import trio

from ..config import MAX_WORKERS, PORTS, Config


def port(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = -1
    if number not in PORTS:
        raise argparse.ArgumentTypeError(f"must be a port number 0-65535 (0: any free port), got {text!r}")
    return number


def workers(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if not 1 <= number <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"must be a number of processes, 1-{MAX_WORKERS}, got {text!r}")
    return number


def add(sub, common: argparse.ArgumentParser) -> None:
    serve = sub.add_parser("serve", parents=[common], help="run the gateway")
    serve.add_argument("--host", help="listen address (default: $CHEAPLM_HOST, the config's host, 127.0.0.1)")
    serve.add_argument("--port", type=port, help="listen port (default: $CHEAPLM_PORT, the config's port, 8080)")
    serve.add_argument("--upstream-url", help="Anthropic-compatible upstream base URL")
    serve.add_argument("--workers", type=workers, metavar="N",
                       help="processes serving the port, each a whole gateway, under a supervisor that "
                            "restarts them (default: $CHEAPLM_WORKERS, the config's workers, 1: one process)")

    sim = sub.add_parser("simulator", help="run the simulated Anthropic-compatible upstream")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=port, default=8081)
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

    bench = sub.add_parser("bench", help="run the benchmark suite (options: cheaplm bench --help; the README's "
                           "Benchmarks section)", add_help=False)
    bench.add_argument("rest", nargs=argparse.REMAINDER)


def run_bench(argv: list[str]) -> int:
    """The benchmark suite in its own process; its exit code."""
    return subprocess.run([sys.executable, "-m", "bench", *argv]).returncode


def run_serve(config: Config) -> int:
    if config.workers > 1:
        from ..workers.supervisor import run_supervisor
        return run_supervisor(config)
    from ..serve import serve
    trio.run(partial(serve, config, shutdown_signals=(signal.SIGTERM,)))
    return 0


def run_simulator(args: argparse.Namespace) -> int:
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
