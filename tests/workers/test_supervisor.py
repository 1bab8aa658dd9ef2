"""The supervisor with stand-in workers (small Python processes that read the handoff, say
ready and then crash, hang or stop on SIGTERM as told): restarts, a failed start, the stop
and its deadline. The real workers, whole gateways, are tests/e2e/test_workers.py's."""

from __future__ import annotations

import io
import logging
import os
import re
import sys
from dataclasses import replace

import pytest
import trio

from proxy.config import Config
from proxy.observe import request_log as logs
from proxy.workers import policy
from proxy.workers.supervisor import Supervisor, listen
from proxy.workers.handoff import handoff, read_handoff

STAND_IN = r"""
import os, signal, struct, sys, time
size = struct.unpack(">I", os.read(0, 4))[0]
while size:
    size -= len(os.read(0, size))
mode = sys.argv[1]
if mode == "fail":
    sys.exit(2)
os.write(1, b"ready\n")
if mode == "crash":
    sys.exit(3)
signal.signal(signal.SIGTERM, signal.SIG_IGN if mode == "stubborn" else lambda *_: sys.exit(0))
while os.read(0, 1):  # until the supervisor is gone
    pass
"""


def stand_in(*modes: str):
    """Worker i runs modes[i] (the last mode for the rest, and for every restart)."""
    def command(index: int, fd: int) -> list[str]:
        return [sys.executable, "-c", STAND_IN, modes[min(index, len(modes) - 1)]]
    return command


@pytest.fixture
def config(tmp_path) -> Config:
    return Config(database_url=str(tmp_path / "ledger.db"), port=0, workers=2, shutdown_grace=0.2)


@pytest.fixture
def fast(monkeypatch):
    monkeypatch.setattr(policy, "RESTART_FIRST", 0.02)
    monkeypatch.setattr(policy, "STOP_MARGIN", 0.3)


async def supervise(config: Config, command, until, caplog) -> tuple[int, Supervisor]:
    """Run a supervisor until ``until(supervisor)`` holds, then stop it: (exit code, it)."""
    caplog.set_level(logging.INFO, "cheaplm.workers")
    sock = listen(config)
    supervisor = Supervisor(config, sock, command)
    code = []
    try:
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                async def run() -> None:
                    code.append(await supervisor.run())

                nursery.start_soon(run)
                while not until(supervisor) and not code:
                    await trio.sleep(0.01)
                if not code:
                    supervisor.stop("the test is done")
    finally:
        sock.close()
    return code[0], supervisor


async def test_a_worker_that_dies_is_started_again_with_a_growing_delay(config, fast, caplog):
    code, _ = await supervise(config, stand_in("serve", "crash"),
                              lambda s: caplog.text.count("exited with code 3: starting another") >= 4, caplog)
    assert code == 0
    delays = [float(line.rsplit(" in ", 1)[1].split()[0]) for line in caplog.messages
              if "worker 1" in line and "starting another" in line]
    assert delays[:4] == [0.0, 0.0, 0.1, 0.2]  # 0.02 s doubling, as logged
    assert caplog.text.count("worker 0 serving") == 1  # the healthy one was left alone


async def test_a_worker_that_cannot_start_stops_the_supervisor(config, fast, caplog):
    code, supervisor = await supervise(config, stand_in("serve", "fail"), lambda s: False, caplog)
    assert code == 1 and supervisor.failed and not supervisor.live
    assert "worker 1 exited with code 2 before it served" in caplog.text


async def test_the_stop_kills_a_worker_still_running_after_the_grace(config, fast, caplog):
    started = trio.current_time()
    code, supervisor = await supervise(config, stand_in("serve", "stubborn"),
                                       lambda s: caplog.text.count("serving (pid") == 2, caplog)
    assert code == 0 and not supervisor.live
    assert "worker 1 (pid" in caplog.text and "still running 0.5 s after the stop began: killing it" in caplog.text
    assert re.search(r"worker 0 \(pid \d+\) exited with code 0", caplog.text)  # it stopped on SIGTERM
    assert re.search(r"worker 1 \(pid \d+\) was killed by SIGKILL", caplog.text)
    assert trio.current_time() - started < 20


async def test_the_ledger_is_made_and_the_responses_secret_shared_before_the_workers_start(config, fast, caplog):
    _, supervisor = await supervise(config, stand_in("serve"), lambda s: len(s.live) == 2, caplog)
    assert os.path.exists(config.database_url)
    secret = supervisor.config.responses_secret
    with open(config.database_url + ".responses-secret") as fh:
        assert fh.read().strip() == secret


def test_the_handoff_carries_the_whole_configuration(config):
    read, write = os.pipe()
    configured = replace(config, responses_secret="s" * 32, host="::1")
    os.write(write, handoff(configured))
    os.close(write)
    try:
        assert read_handoff(read) == configured
    finally:
        os.close(read)


def test_every_line_a_worker_logs_says_which_worker(monkeypatch):
    root = logging.getLogger()
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    monkeypatch.setattr(root, "handlers", [handler])
    monkeypatch.setattr(root, "level", root.level)
    logs.configure("text", "INFO", worker=3)
    logging.getLogger("cheaplm").warning("hello")
    assert f"[worker 3 pid {os.getpid()}] cheaplm: hello" in out.getvalue()
    logs.configure("json", "INFO", worker=3)
    logging.getLogger("cheaplm").warning("again")
    assert f'"worker":3,"pid":{os.getpid()}' in out.getvalue().splitlines()[-1]
