"""Processes the bench starts and watches: pinning, readiness, CPU and RSS from /proc."""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def cpu_plan() -> tuple[set[int] | None, set[int] | None]:
    """(gateway cores, harness cores): the gateway gets one core to itself when the
    machine has two or more; the simulator and load generator share the rest."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None, None
    return {cores[0]}, set(cores[1:])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def children(pid: int) -> list[int]:
    """A process's live children (``serve --workers``: its workers). Each thread lists the
    children it started (trio starts processes from worker threads), so every thread's."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                found.extend(int(child) for child in fh.read().split())
        except OSError:
            pass
    return found


def _over_tree(pid: int, measure):
    """``measure`` summed over a process and its live children (a supervisor and its workers)."""
    total = 0
    for each in (pid, *children(pid)):
        try:
            total += measure(each)
        except OSError:  # (a child that has just ended)
            pass
    return total


def tree_cpu(pid: int) -> float:
    return _over_tree(pid, process_cpu)


def tree_rss(pid: int) -> int:
    return _over_tree(pid, process_rss)


def process_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Child:
    name: str
    popen: subprocess.Popen
    url: str

    @property
    def pid(self) -> int:
        return self.popen.pid

    def cpu(self) -> float:
        return process_cpu(self.pid)

    def rss(self) -> int:
        return process_rss(self.pid)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)


def spawn(name: str, argv: list[str], port: int, cores: set[int] | None, log: Path,
          env: dict[str, str] | None = None, module: str = "proxy", python: str | None = None,
          cwd: str | None = None) -> Child:
    """``python -m module argv`` (this interpreter, or another tree's) pinned to ``cores``."""
    def prepare() -> None:
        raise_fd_limit()
        if cores:
            os.sched_setaffinity(0, cores)

    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CHEAPLM_")}
    full_env.update(env or {})
    popen = subprocess.Popen([python or sys.executable, "-m", module, *argv], preexec_fn=prepare, env=full_env,
                             stdout=subprocess.DEVNULL, stderr=open(log, "w"), cwd=cwd)
    return Child(name, popen, f"http://127.0.0.1:{port}")


def wait_workers(child: Child, workers: int, timeout: float = 60.0) -> None:
    """Until ``workers`` distinct processes have answered /health (each on a new connection)."""
    deadline, seen = time.monotonic() + timeout, set()
    while len(seen) < workers:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{child.name}: {len(seen)} of {workers} workers answered within {timeout} s")
        if child.popen.poll() is not None:
            raise RuntimeError(f"{child.name} exited with {child.popen.returncode}")
        try:
            seen.add(httpx.get(child.url + "/health", timeout=1).json()["pid"])
        except (httpx.TransportError, ValueError, KeyError):
            pass
        time.sleep(0.02)


def wait_ready(child: Child, path: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.popen.poll() is not None:
            raise RuntimeError(f"{child.name} exited with {child.popen.returncode}")
        try:
            if httpx.get(child.url + path, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError(f"{child.name} did not answer within {timeout} s")
