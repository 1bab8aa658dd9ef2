"""The supervisor of ``cheaplm serve --workers N``: binds the port once, starts N
workers on it, starts again one that dies (after policy.Restarts' delay), and stops
them all on SIGTERM or SIGINT: each gets SIGTERM (it drains its streams up to
``shutdown_grace``), the ones still running at grace + a margin are killed."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
from dataclasses import replace
from functools import partial

import trio
from hypercorn.config import Config as HypercornConfig

from ..config import Config, ConfigError
from ..reasoning_key import load_reasoning_secret
from . import policy
from .handoff import READY, handoff
from storage import describe_location, open_store, parse_location

log = logging.getLogger("cheaplm.workers")
BACKLOG = 4096  # (as serve.hypercorn_config's)


def listen(config: Config) -> socket.socket:
    """The listening socket every worker serves, bound by hypercorn's code as a single
    ``serve`` binds it (without the gateway: the supervisor does not import it)."""
    binding = HypercornConfig()
    binding.bind = [config.listen_address]
    [sock] = binding.create_sockets().insecure_sockets
    sock.listen(BACKLOG)
    return sock


def worker_command(index: int, fd: int) -> list[str]:
    return [sys.executable, "-m", "proxy.workers", str(index), str(fd)]


async def prepare(config: Config) -> Config:
    """What all the workers must share, done once: the ledger created or migrated (so
    the workers do not race to), and the Responses secret read or made."""
    location = parse_location(config.database_url)
    if location.backend == "sqlite" and location.file is None:
        raise ConfigError("workers share one ledger: an in-memory one cannot be shared (give a SQLite file or a "
                          "postgresql:// URL, or run one worker)")
    store = await open_store(config.database_url, busy_timeout=config.store_busy_timeout)
    await store.aclose()
    if config.responses_secret is None:
        config = replace(config, responses_secret=load_reasoning_secret(config).decode())
    return config


class Supervisor:
    def __init__(self, config: Config, sock: socket.socket, command=worker_command) -> None:
        self.config = config
        self.sock = sock
        self.command = command
        self.live: dict[int, trio.Process] = {}
        self.stopping = trio.Event()
        self.stop_signal: int | None = None
        self.failed = False
        self._nursery: trio.Nursery | None = None  # run's: the stop's deadline runs there

    async def run(self) -> int:
        self.config = await prepare(self.config)
        bound = replace(self.config, port=self.sock.getsockname()[1]).listen_address
        log.info("CheapLM gateway listening on http://%s with %d workers (supervisor pid %d; ledger: %s)", bound,
                 self.config.workers, os.getpid(), describe_location(self.config.database_url))
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._signals)
            async with trio.open_nursery() as slots:
                for index in range(self.config.workers):
                    slots.start_soon(self._keep, index)
            nursery.cancel_scope.cancel()
        log.info("the workers have stopped")
        return policy.exit_code(self.stop_signal, self.failed)

    def stop(self, reason: str) -> None:
        """Every worker gets SIGTERM; the ones still running after grace + margin are killed."""
        if self.stopping.is_set():
            return
        self.stopping.set()
        grace = self.config.shutdown_grace
        log.warning("%s: stopping the workers (requests in flight get up to %g s)", reason, grace)
        for process in self.live.values():
            _signal(process, signal.SIGTERM)
        self._nursery.start_soon(self._kill_after, policy.stop_deadline(grace))

    async def _kill_after(self, seconds: float) -> None:
        await trio.sleep(seconds)
        self._kill_all(f"still running {seconds:g} s after the stop began")

    def _kill_all(self, why: str) -> None:
        for index, process in self.live.items():
            log.error("worker %d (pid %d) %s: killing it", index, process.pid, why)
            _signal(process, signal.SIGKILL)

    async def _signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as received:
            async for number in received:
                name = signal.Signals(number).name
                if self.stopping.is_set():
                    if number == signal.SIGINT:  # Ctrl-C twice (a SIGTERM may come twice: to the process and its group)
                        self._kill_all(f"{name} again")
                    continue
                self.stop_signal = number
                self.stop(f"received {name}")

    async def _keep(self, index: int) -> None:
        """One worker slot: its worker, and the next one when it dies, until the stop."""
        restarts, served = policy.Restarts(), False
        while not self.stopping.is_set():
            began = trio.current_time()
            ready, returncode, pid = await self._one(index)
            if self.stopping.is_set():
                log.info("worker %d%s %s", index, f" (pid {pid})" if pid else "", policy.ending(returncode))
                return
            if not ready and not served:
                self.failed = True
                self.stop(f"worker {index} {policy.ending(returncode)} before it served (its log says why)")
                return
            served = True
            restarts = restarts.after_death(trio.current_time() - began)
            log.error("worker %d%s %s: starting another in %.1f s", index, f" (pid {pid})" if pid else "",
                      policy.ending(returncode), restarts.delay)
            with trio.move_on_after(restarts.delay):
                await self.stopping.wait()

    async def _one(self, index: int) -> tuple[bool, int | None, int | None]:
        """Run one worker to its end: (whether it served, its return code, its pid)."""
        fd = self.sock.fileno()
        try:
            process = await trio.lowlevel.open_process(self.command(index, fd), stdin=subprocess.PIPE,
                                                       stdout=subprocess.PIPE, pass_fds=(fd,))
        except OSError as exc:
            log.error("worker %d: cannot start a process: %s", index, exc)
            return False, None, None
        self.live[index] = process
        ready = False
        try:
            if self.stopping.is_set():
                _signal(process, signal.SIGTERM)
            ready = await _started(process, handoff(self.config))
            if ready:
                log.info("worker %d serving (pid %d)", index, process.pid)
            await process.wait()
        finally:
            del self.live[index]
            with trio.CancelScope(shield=True):
                if process.returncode is None:
                    process.kill()
                await process.wait()
                await process.stdout.aclose()
                await process.stdin.aclose()
        return ready, process.returncode, process.pid


async def _started(process: trio.Process, config: bytes) -> bool:
    """Hand the worker its configuration; whether it then said it serves."""
    try:
        await process.stdin.send_all(config)
        said = b""
        while len(said) < len(READY):
            chunk = await process.stdout.receive_some(len(READY) - len(said))
            if not chunk:
                return False
            said += chunk
        return said == READY
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return False


def _signal(process: trio.Process, number: int) -> None:
    if process.returncode is None:
        try:
            process.send_signal(number)
        except ProcessLookupError:
            pass


def run_supervisor(config: Config) -> int:
    """``cheaplm serve`` with ``workers`` above 1: the exit code."""
    sock = listen(config)
    try:
        return trio.run(partial(Supervisor(config, sock).run))
    finally:
        sock.close()
