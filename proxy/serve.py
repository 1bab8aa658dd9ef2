"""serve(config, *, task_status): open the store, the upstream (or the in-process
simulator when none is configured), and run hypercorn's trio worker until cancelled."""

from __future__ import annotations

import logging
import signal
from dataclasses import dataclass
from functools import partial

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from .http.app import create_app
from .http import hypercorn_patch
from .config import Config
from .config.settings import bind_address
from .runtime import Gateway
from .relay.drain import StreamDrain
from .ids import new_instance_id
from .metering.checkpoints import checkpoint_progress
from .reasoning_key import load_reasoning_secret
from .upstream.channels import open_upstream
from .upstream.operator import sync_channels
from .simulator.script import Knobs
from .simulator.server import SimulatorState, serve_simulator
from .shared.changes import follow_changes
from .shared.client import open_shared
from storage import describe_location, open_store
from storage.base import StoreError
from storage.leases import keep_lease
from .metering.lease import LeaseWatch

log = logging.getLogger("cheaplm")


@dataclass(frozen=True)
class Running:
    url: str
    gateway: Gateway
    simulator_url: str | None


def hypercorn_config(host: str, port: int, keep_alive_timeout: float = 75.0, grace: float = 30.0,
                     listen_fd: int | None = None) -> HypercornConfig:
    """``listen_fd``: a socket already bound and listening (a worker of ``serve --workers``
    serves the supervisor's) instead of binding host:port."""
    config = HypercornConfig()
    config.bind = [f"fd://{listen_fd}" if listen_fd is not None else bind_address(host, port)]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.keep_alive_timeout = keep_alive_timeout  # an idle connection is closed after this
    config.graceful_timeout = grace  # how long requests in flight may go on after SIGTERM
    config.backlog = 4096
    return config


def drain_margin(grace: float) -> float:
    """How long before hypercorn's hard stop the streams still going are ended (with an
    error event, and settled): a second, or a quarter of a short grace."""
    return min(1.0, grace / 4)


async def _signalled(signals: tuple[int, ...], drain: StreamDrain, grace: float, stop: trio.Event | None) -> None:
    if stop is not None:
        await stop.wait()
        reason = "asked to stop"
    else:
        with trio.open_signal_receiver(*signals) as received:
            async for number in received:
                reason = f"received {signal.Signals(number).name}"
                break
    log.warning("%s: no new connections; requests in flight get up to %g s to finish", reason, grace)
    drain.end_by(trio.current_time() + grace - drain_margin(grace))


async def _shared(config: Config, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """The fleet's Redis (none without redis_url), open until serve's nursery ends."""
    async with open_shared(config.redis_url, config.redis_prefix, config.redis_timeout) as shared:
        task_status.started(shared)
        await trio.sleep_forever()


async def serve(config: Config, *, task_status=trio.TASK_STATUS_IGNORED,
                shutdown_signals: tuple[int, ...] = (), stop: trio.Event | None = None,
                listen_fd: int | None = None) -> None:
    """Serve until cancelled or, gracefully, until one of ``shutdown_signals`` arrives
    (``cheaplm serve`` passes SIGTERM: what docker, systemd and Kubernetes send), or
    ``stop`` is set (a worker of ``serve --workers``, which keeps its signals to itself).
    ``listen_fd``: serve this listening socket instead of binding config.host:port."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per upstream call is noise
    store = await open_store(config.database_url, instance_id=new_instance_id(), busy_timeout=config.store_busy_timeout)
    try:
        async with trio.open_nursery() as nursery:
            # Registers this instance (its holds are its own), then recovers only the holds
            # of owners that are gone: a second serve on this ledger, even one that then
            # fails to bind, never touches a live gateway's money.
            shared = await nursery.start(_shared, config)
            lease = LeaseWatch(store, config.lease_seconds)
            await nursery.start(partial(keep_lease, store, config.lease_seconds, on_beat=lease.beat))
            simulator_url = None
            catalog = config.catalog()
            if config.simulated:
                knobs = Knobs(ttft_ms=config.upstream.sim_ttft_ms, gap_ms=config.upstream.sim_gap_ms,
                              deltas=config.upstream.sim_deltas)
                simulator_url, _ = await nursery.start(
                    partial(serve_simulator, "127.0.0.1", 0, state=SimulatorState(knobs=knobs, record=False)))
                log.warning("no upstream configured: answering from the built-in SIMULATED upstream (%s). "
                            "Set CHEAPLM_UPSTREAM_URL / CHEAPLM_UPSTREAM_API_KEY for real answers.", simulator_url)
            upstream = open_upstream(config, catalog, simulator_url)
            if simulator_url is None:
                log.info("upstream: %s", upstream.label)
            try:
                # The operator's channel overrides are applied before the first request, then every
                # channel_sync_interval s, when this instance's channel status is published too.
                channels = await nursery.start(sync_channels, store, upstream, config.channel_sync_interval)
                # Streams are settled in this nursery, after their handler has returned: a
                # keep-alive connection's next request is served only once the previous
                # handler is done, and settling (a ledger transaction) need not hold it up.
                gateway = Gateway(config, store, upstream, catalog=catalog, after_response=nursery,
                                  reasoning_secret=load_reasoning_secret(config), shared=shared)
                gateway.meter.watch_lease(lease)
                nursery.start_soon(gateway.keep)  # (with redis_url: slot leases, channels' rests)
                # Changes by other processes (the CLI, other nodes): within change_poll_interval.
                await nursery.start(follow_changes, store, gateway.keys, channels.wake, config.change_poll_interval)
                grace, drain = config.shutdown_grace, StreamDrain()
                trigger = partial(_signalled, shutdown_signals, drain, grace, stop) \
                    if shutdown_signals or stop is not None else None

                async def http(task_status=trio.TASK_STATUS_IGNORED) -> None:
                    hypercorn_patch.install()  # closes early-answered and idle connections: see there
                    await hypercorn_serve(create_app(gateway, drain), hypercorn_config(config.host, config.port,
                                                                                config.keep_alive_timeout, grace,
                                                                                listen_fd),
                                          shutdown_trigger=trigger, task_status=task_status)
                    nursery.cancel_scope.cancel()  # a graceful shutdown has finished

                binds = await nursery.start(http)
                nursery.start_soon(checkpoint_progress, store, gateway.meter.in_flight, config.progress_interval)
                log.info("CheapLM gateway listening on %s (ledger: %s)", binds[0], describe_location(config.database_url))
                log.info("dashboard: open %s/ in a browser to sign up, top up and create keys", binds[0])
                task_status.started(Running(binds[0], gateway, simulator_url))
                await trio.sleep_forever()
            finally:
                with trio.CancelScope(shield=True):
                    await upstream.aclose()
    finally:
        with trio.CancelScope(shield=True):
            try:
                await store.unregister_instance()
            except StoreError as exc:
                log.warning("could not unregister this instance (its holds will be recovered when "
                            "its lease lapses): %s", exc)
            finally:
                await store.aclose()
