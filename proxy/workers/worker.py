"""One worker of ``serve --workers``: ``python -m proxy.workers INDEX FD``.

It reads its configuration from stdin (handoff.py: the supervisor's), serves the
listening socket FD it inherited and says ``ready`` on stdout once it serves. It stops gracefully (no new connections, streams drained up to
``shutdown_grace``) on SIGTERM, however many arrive and whenever (systemd's default
KillMode sends one to every process of the unit, and the supervisor forwards its own),
and when stdin ends: the supervisor is gone, even killed with -9, and its workers must
not outlive it. Ctrl-C reaches the supervisor, which stops the workers with SIGTERM, so
a worker ignores SIGINT.
"""

from __future__ import annotations

import logging
import os
import signal
from functools import partial

import trio

from ..config import Config
from ..observe import request_log as logs
from ..serve import serve
from .handoff import READY, read_handoff

log = logging.getLogger("cheaplm.workers")


def _tell_ready() -> None:
    """``ready`` to the supervisor, then stdout is stderr (nothing else is for the pipe)."""
    try:
        os.write(1, READY)
    except BrokenPipeError:
        pass  # the supervisor is gone: the stdin watch stops this worker
    os.dup2(2, 1)


async def _watch_supervisor(stop: trio.Event) -> None:
    """Stdin ends when the supervisor is gone: stop as on SIGTERM."""
    async with trio.lowlevel.FdStream(os.dup(0)) as pipe:
        while await pipe.receive_some():
            pass
    log.warning("the supervisor is gone: stopping as on SIGTERM")
    stop.set()


async def _on_sigterm(stop: trio.Event, task_status=trio.TASK_STATUS_IGNORED) -> None:
    with trio.open_signal_receiver(signal.SIGTERM) as received:
        task_status.started()
        async for _ in received:
            if not stop.is_set():
                log.info("received SIGTERM")
            stop.set()


async def run(config: Config, fd: int) -> None:
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(_on_sigterm, stop)

        async def gateway(task_status=trio.TASK_STATUS_IGNORED) -> None:
            await serve(config, stop=stop, listen_fd=fd, task_status=task_status)
            nursery.cancel_scope.cancel()  # a graceful stop has finished

        await nursery.start(gateway)
        _tell_ready()
        nursery.start_soon(_watch_supervisor, stop)


def main(argv: list[str]) -> int:
    index, fd = int(argv[0]), int(argv[1])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # (before trio.run: trio then leaves SIGINT alone)
    config = read_handoff(0)
    logging.basicConfig(level=logging.INFO, format=logs.TEXT_FORMAT)
    logs.configure(config.log_format, config.log_level, worker=index)
    trio.run(partial(run, config, fd))
    return 0
