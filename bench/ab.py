"""python -m bench.ab: the same bench against gateways built from different trees,
interleaved (A, B, A, B, ...), so a change's before and after are measured on one
machine in one session against one simulator.

Each arm is ``LABEL=TREE[:CONFIG]``: a checkout with its own virtual environment
(``TREE/.venv``, the project installed in it) and optionally a config file for its
gateway (``{simulator}`` in it stands for the simulator's URL). For every run the arm's gateway starts fresh (``TREE/.venv/bin/python -m
proxy serve``, pinned to the gateway core, a new ledger made with that tree's own CLI),
this tree's bench measures it, and it is stopped. The table gives each figure per run:

    python -m bench.ab before=/work/wt-before after=/work/main --rounds 2

``--on-postgres LABEL[=SERVER]`` (repeatable) runs that arm's gateway on PostgreSQL: a fresh
database on SERVER (default ``--postgres-server``) for every run, dropped after it (the same
tree twice, one arm on each store, compares the stores):

    python -m bench.ab sqlite=. postgres=. --on-postgres postgres --scenario nonstream
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

from . import claude_code, pgdb, procs

KEY = re.compile(r"^(sk-\S+)$", re.MULTILINE)


@dataclass(frozen=True)
class Arm:
    label: str
    tree: Path
    config: Path | None
    postgres: str | None = None  # a PostgreSQL server: each run's ledger a fresh database there

    @property
    def python(self) -> str:
        return str(self.tree / ".venv" / "bin" / "python")


def parse_arm(text: str) -> Arm:
    label, _, rest = text.partition("=")
    tree, _, config = rest.partition(":")
    if not label or not tree:
        raise argparse.ArgumentTypeError(f"expected LABEL=TREE[:CONFIG], got {text!r}")
    arm = Arm(label, Path(tree).resolve(), Path(config).resolve() if config else None)
    if not Path(arm.python).exists():
        raise argparse.ArgumentTypeError(f"{arm.python} does not exist: make the tree's virtual environment")
    return arm


def _cli(arm: Arm, *argv: str) -> str:
    return subprocess.run([arm.python, "-m", "proxy", *argv], cwd=arm.tree, check=True, capture_output=True,
                          text=True).stdout


def _account(arm: Arm, db: str) -> str:
    _cli(arm, "user", "create", "bench", "--db", db)
    _cli(arm, "topup", "bench", "--credit", "1000000", "--db", db)
    found = KEY.search(_cli(arm, "key", "create", "bench", "--db", db))
    if found is None:
        raise RuntimeError(f"{arm.label}: no key in `cheaplm key create` output")
    return found.group(1)


def run_arm(arm: Arm, simulator_url: str, bench_args: list[str], workdir: Path, run: int) -> list[dict]:
    """One fresh gateway of ``arm`` (on a fresh ledger) under this tree's bench; the bench's result rows."""
    with ExitStack() as resources:
        db = resources.enter_context(pgdb.fresh_database(arm.postgres)) if arm.postgres \
            else str(workdir / f"{arm.label}-{run}.db")
        return _run_gateway(arm, db, simulator_url, bench_args, workdir, run)


def _run_gateway(arm: Arm, db: str, simulator_url: str, bench_args: list[str], workdir: Path,
                 run: int) -> list[dict]:
    gateway_cores, _ = procs.cpu_plan()
    key = _account(arm, db)
    port = procs.free_port()
    argv = ["serve", "--port", str(port), "--db", db]
    if arm.config:  # "{simulator}" in it stands for the simulator's URL
        config = workdir / f"{arm.label}.toml"
        config.write_text(arm.config.read_text().replace("{simulator}", simulator_url))
        argv += ["--config", str(config)]
    else:
        argv += ["--upstream-url", simulator_url]
    gateway = procs.spawn(f"gateway-{arm.label}", argv, port, gateway_cores, workdir / f"{arm.label}-{run}.log",
                          python=arm.python, cwd=str(arm.tree))
    try:
        procs.wait_ready(gateway, "/health")
        out = workdir / f"{arm.label}-{run}"
        subprocess.run([sys.executable, "-m", "bench", "--gateway-url", gateway.url, "--gateway-key", key,
                        "--gateway-pid", str(gateway.pid), "--simulator-url", simulator_url, "--out", str(out),
                        "--label", arm.label, *bench_args], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        (written,) = out.glob("bench-*.json")
        return json.loads(written.read_text())["results"]
    finally:
        gateway.stop()


def figures(rows: list[dict]) -> dict[str, float | None]:
    """The figures the A/B compares, from one bench run's rows."""
    by = {(r["scenario"], r["arm"], r["load"]): r for r in rows}
    out: dict[str, float | None] = {}
    for (scenario, arm, load), row in sorted(by.items()):
        if arm != "gateway":
            continue
        direct = by.get((scenario, "direct", load))
        name = f"{scenario}@{load}"
        out[f"{name} CPU us/event"] = row.get("cpu_us_per_event")
        out[f"{name} CPU ms/req"] = row.get("cpu_ms_per_request")
        out[f"{name} req/s"] = row.get("requests_per_s")
        out[f"{name} errors"] = row.get("errors")
        if direct and row.get("ttft_p50_ms") is not None and direct.get("ttft_p50_ms") is not None:
            out[f"{name} added TTFT p50 ms"] = round(row["ttft_p50_ms"] - direct["ttft_p50_ms"], 2)
            out[f"{name} added TTFT p99 ms"] = round(row["ttft_p99_ms"] - direct["ttft_p99_ms"], 2)
    return out


def table(arms: list[Arm], results: dict[str, list[dict]]) -> str:
    names: list[str] = []
    for runs in results.values():
        for run in runs:
            names += [n for n in run if n not in names]
    lines = ["| figure | " + " | ".join(a.label for a in arms) + " |", "|---|" + "---|" * len(arms)]
    for name in names:
        cells = [" / ".join("–" if r.get(name) is None else f"{r[name]:g}" for r in results[a.label]) for a in arms]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__.splitlines()[0])
    parser.add_argument("arms", nargs="+", type=parse_arm, help="LABEL=TREE[:CONFIG]")
    parser.add_argument("--rounds", type=int, default=2, help="runs per arm, interleaved")
    parser.add_argument("--json", help="write every run's figures here")
    parser.add_argument("--on-postgres", metavar="LABEL[=SERVER]", action="append", default=[],
                        help="this arm's gateway on a fresh PostgreSQL database per run, on SERVER or "
                             "--postgres-server (repeatable)")
    parser.add_argument("--postgres-server", default=pgdb.DEFAULT_SERVER,
                        help=f"where --on-postgres makes its databases (default {pgdb.DEFAULT_SERVER})")
    args, bench_args = parser.parse_known_args(argv)
    servers = {label: server or args.postgres_server
               for label, _, server in (given.partition("=") for given in args.on_postgres)}
    unknown = set(servers) - {a.label for a in args.arms}
    if unknown:
        parser.error(f"--on-postgres names no arm: {', '.join(sorted(unknown))}")
    args.arms = [replace(a, postgres=servers.get(a.label)) for a in args.arms]
    _, harness_cores = procs.cpu_plan()
    results: dict[str, list[dict]] = {a.label: [] for a in args.arms}
    with tempfile.TemporaryDirectory(prefix="cheaplm-ab-") as tmp:
        workdir = Path(tmp)
        port = procs.free_port()
        simulator = procs.spawn("simulator", ["simulator", "--port", str(port), "--secret",
                                              claude_code.SIGNING_SECRET], port, harness_cores,
                                workdir / "simulator.log")
        try:
            procs.wait_ready(simulator, "/v1/models")
            for run in range(args.rounds):
                for arm in args.arms:
                    rows = run_arm(arm, simulator.url, bench_args, workdir, run)
                    results[arm.label].append(figures(rows))
                    print(f"round {run + 1}, {arm.label}: done", file=sys.stderr)
        finally:
            simulator.stop()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    print(table(args.arms, results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
