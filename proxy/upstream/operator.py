"""The operator's side of a running gateway's channels, through the store: every few
seconds (``channel_sync_interval``), and at once when the change feed says one changed
(proxy/shared/changes.py), it applies the overrides ``cheaplm upstream
enable|disable`` recorded, and publishes what its router knows of each channel (the
rows of ``Router.describe``, never a key) for ``cheaplm upstream list``.

An override is applied once per change (its ``version``): a channel the operator
enabled and whose credential is refused afterwards stays disabled until the operator
enables it again. A gateway with one ``[upstream]`` has one channel, named "default".
"""

from __future__ import annotations

import logging
from typing import Sequence

import trio

from .channels import SINGLE
from .router import Router
from storage.base import ChannelOverride, ChannelStore, StoreError

log = logging.getLogger("cheaplm.upstream")

__all__ = ["SINGLE", "ChannelSync", "Overrides", "operator_reason", "sync_channels"]


def operator_reason(reason: str) -> str:
    return "disabled by the operator" + (f": {reason}" if reason else "")


class Overrides:
    """The operator's overrides as this gateway's router applies them: each change once."""

    def __init__(self, router: Router) -> None:
        self._router = router
        self._names = {c.name for c in router.channels}
        self._applied: dict[str, int] = {}  # channel -> the override version applied

    def apply(self, overrides: Sequence[ChannelOverride]) -> list[str]:
        """Apply the overrides not applied yet (of channels this router has); the names changed."""
        changed = []
        for override in overrides:
            if override.name not in self._names or self._applied.get(override.name) == override.version:
                continue
            self._applied[override.name] = override.version
            health = self._router.state.health(override.name)
            if override.enabled and health.disabled:
                was = health.disabled_reason or "disabled"
                health.enable()
                log.warning("upstream channel %s enabled by the operator (it was %s)", override.name, was)
            elif override.enabled and health.opened:
                # An open (or half-open) circuit: the operator says the channel is fixed, so
                # the circuit closes now rather than at its next probe. A cooldown stays:
                # the upstream itself asked for that rest.
                health.succeeded()
                log.warning("upstream channel %s enabled by the operator: its open circuit is closed", override.name)
            elif not override.enabled and not health.disabled:
                health.disable(operator_reason(override.reason))
                log.warning("upstream channel %s %s", override.name, operator_reason(override.reason))
            else:
                continue
            changed.append(override.name)
        return changed


class ChannelSync:
    """One round of the exchange with the store; failures are logged once, not every round."""

    def __init__(self, store: ChannelStore, upstream: Router) -> None:
        self.store = store
        self.upstream = upstream
        self.overrides = Overrides(upstream)
        self.failing = False
        self._woken = trio.Event()

    def wake(self) -> None:
        """Run the next round now (the change feed saw an override: proxy/shared/changes.py)."""
        self._woken.set()

    async def wait(self, interval: float) -> None:
        """Until the next round is due: ``interval`` s, or sooner when woken."""
        with trio.move_on_after(interval):
            await self._woken.wait()
        self._woken = trio.Event()

    async def once(self) -> None:
        try:
            self.overrides.apply(await self.store.channel_overrides())
            await self.store.publish_channels(self.upstream.describe(trio.current_time()))
        except StoreError as exc:
            if not self.failing:
                log.warning("upstream channels: the store cannot be reached (%s); operator changes wait "
                            "until it can", exc)
            self.failing = True
            return
        if self.failing:
            log.info("upstream channels: the store is reachable again")
        self.failing = False


async def sync_channels(store: ChannelStore, upstream: Router, interval: float, *,
                        task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Apply the overrides and publish once (before the gateway takes requests: a channel
    the operator disabled gets none), report started (with the ``ChannelSync``, whose
    ``wake`` runs a round at once), then again every ``interval`` s."""
    sync = ChannelSync(store, upstream)
    await sync.once()
    task_status.started(sync)
    while True:
        await sync.wait(interval)
        await sync.once()
