"""``serve --workers N`` against ``--workers 1`` with a harness that costs almost nothing:
the upstream is nginx answering a canned Messages response (no Python simulator) and the
load is wrk (C), so on a 2-core machine the gateway's workers get nearly both cores.

    python -m bench.workers_scaling --workers 1,2 --rounds 3 --connections 32 --seconds 5

Interleaved: every round runs each worker count once, in turn. Prints, per run, the
non-streaming requests per second wrk saw, the CPU seconds of the gateway's process tree
(supervisor and workers), nginx's and wrk's, and the ratio of each count's median req/s
to the first count's. Needs nginx and wrk on the PATH (Debian: apt-get install nginx-light
wrk). Not a test: figures go to docs/bench.md with the machine they came from.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import trio

from . import procs
from .__main__ import _create_account, machine_description

MODEL = "claude-sonnet-4-5-20250929"
ANSWER = {"id": "msg_bench", "type": "message", "role": "assistant", "model": MODEL,
          "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn", "stop_sequence": None,
          "usage": {"input_tokens": 12, "output_tokens": 2}}
REQUEST = {"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}

NGINX_CONF = """worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{port};
    location / {{
      default_type application/json;
      return 200 '{answer}';
    }}
  }}
}}
"""

WRK_SCRIPT = """wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["content-type"] = "application/json"
wrk.headers["x-api-key"] = "{key}"
wrk.headers["anthropic-version"] = "2023-06-01"
"""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.workers_scaling", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2", help="comma list of worker counts (default 1,2)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32, help="wrk's connections (default 32)")
    parser.add_argument("--seconds", type=int, default=5, help="seconds of load per run (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of load before each measured run")
    args = parser.parse_args(argv)
    args.counts = [int(n) for n in args.workers.split(",")]
    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not on the PATH (Debian: apt-get install nginx-light wrk)")
    return args


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wrk(url: str, script: Path, connections: int, seconds: int) -> tuple[float, float, int]:
    """(requests per second, wrk's CPU seconds, non-2xx answers)."""
    before = children_cpu()
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url],
                         capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return rate, children_cpu() - before, int(bad.group(1)) if bad else 0


def run(args: argparse.Namespace, work: Path) -> list[dict]:
    nginx_port = procs.free_port()
    (work / "body").mkdir()
    conf = work / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=work, port=nginx_port, answer=json.dumps(ANSWER)))
    nginx = subprocess.Popen(["nginx", "-p", str(work), "-c", str(conf), "-g", "daemon off;"],
                             stderr=open(work / "nginx.log", "w"))
    upstream = f"http://127.0.0.1:{nginx_port}"
    rows: list[dict] = []
    try:
        for round_no in range(1, args.rounds + 1):
            for count in args.counts:
                db = str(work / f"ledger-{round_no}-{count}.db")
                key = trio.run(_create_account, db)
                script = work / "post.lua"
                script.write_text(WRK_SCRIPT.format(body=json.dumps(REQUEST), key=key))
                port = procs.free_port()
                gateway = procs.spawn(f"gateway-w{count}", ["serve", "--port", str(port), "--db", db,
                                                            "--upstream-url", upstream, "--workers", str(count)],
                                      port, None, work / f"gateway-{round_no}-{count}.log")
                try:
                    procs.wait_ready(gateway, "/health")
                    if count > 1:
                        procs.wait_workers(gateway, count)
                    url = gateway.url + "/v1/messages"
                    wrk(url, script, args.connections, args.warmup)
                    cpu0, nginx0 = procs.tree_cpu(gateway.pid), procs.tree_cpu(nginx.pid)
                    rate, wrk_cpu, bad = wrk(url, script, args.connections, args.seconds)
                    cpu = procs.tree_cpu(gateway.pid) - cpu0
                    nginx_cpu = procs.tree_cpu(nginx.pid) - nginx0
                finally:
                    gateway.stop()
                requests = rate * args.seconds
                rows.append({"round": round_no, "workers": count, "req_s": rate, "non_2xx": bad,
                             "gateway_cpu_s": cpu, "gateway_ms_per_req": cpu / requests * 1000 if requests else None,
                             "nginx_cpu_s": nginx_cpu, "wrk_cpu_s": wrk_cpu})
                print(json.dumps(rows[-1]), flush=True)
    finally:
        nginx.terminate()
        nginx.wait(5)
    return rows


def table(rows: list[dict], counts: list[int], seconds: int) -> str:
    lines = ["| workers | req/s per round | median req/s | vs first | gateway CPU ms/req (median) | "
             "gateway cores used | harness cores used (nginx + wrk) |", "|---|---|---|---|---|---|---|"]
    base = None
    for count in counts:
        mine = [r for r in rows if r["workers"] == count]
        median = statistics.median(r["req_s"] for r in mine)
        base = base or median
        cpu = statistics.median(r["gateway_ms_per_req"] for r in mine)
        harness = statistics.median((r["nginx_cpu_s"] + r["wrk_cpu_s"]) / seconds for r in mine)
        cores = statistics.median(r["gateway_cpu_s"] / seconds for r in mine)
        rates = " / ".join(f"{r['req_s']:.0f}" for r in mine)
        lines.append(f"| {count} | {rates} | {median:.0f} | "
                     f"{median / base:.2f}x | {cpu:.2f} | {cores:.2f} | {harness:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory(prefix="cheaplm-workers-") as tmp:
        rows = run(args, Path(tmp))
    if any(r["non_2xx"] for r in rows):
        print("some answers were not 2xx: see the rows above", file=sys.stderr)
    print(f"\n{machine_description()}; wrk -t1 -c{args.connections}, {args.seconds} s a run, nothing pinned\n")
    print(table(rows, args.counts, args.seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
