"""What ``cheaplm upstream list`` shows: each channel's row, combined across the live
gateway instances' snapshots (counters summed, the most severe state shown, with how
many instances are in it when they disagree), or built from the configuration and the
operator's overrides when no gateway runs. Pure: the caller reads the store.

Never a key: the rows come from ``Router.describe`` or from the configuration's URL,
redacted.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Iterable, Sequence

from ..config import ChannelConfig, Config
from .base import redacted_url
from .channels import SINGLE
from .operator import operator_reason
from storage.base import ChannelOverride, ChannelSnapshot

SEVERITY = ("healthy", "cooling", "probing", "open", "disabled")  # the worst of an instance's states is shown
COLUMNS = ("name", "url", "priority", "weight", "state", "in_flight", "requests", "failures")


def clock_time(unix: float) -> str:
    return datetime.fromtimestamp(unix, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _state(rows: list[tuple[float, dict]], instances: int) -> str:
    """One channel's state across the instances that report it: (snapshot time, row) each."""
    worst = max((row["state"] for _, row in rows), key=lambda s: SEVERITY.index(s) if s in SEVERITY else 0)
    in_it = [(at, row) for at, row in rows if row["state"] == worst]
    text = worst
    if worst == "disabled":
        reasons = sorted({row.get("disabled_reason") or "" for _, row in in_it} - {""})
        text += f" ({'; '.join(reasons)})" if reasons else ""
    else:
        ends = [at + row["resting_seconds"] for at, row in in_it if row.get("resting_seconds") is not None]
        if ends:
            text += f" until {clock_time(max(ends))}"
    if len(in_it) < instances:
        text += f" on {len(in_it)} of {instances} instances"
    return text


def _summed(values: Iterable[int | None]) -> int | str:
    known = [v for v in values if v is not None]
    return sum(known) if known else "-"


def _pending(state: str, override: ChannelOverride | None, oldest: float) -> str:
    """An override newer than a snapshot: the instances apply it at their next round."""
    if override is None or override.set_at <= oldest:
        return ""
    if override.enabled == state.startswith("disabled"):
        return f" ({'enable' if override.enabled else 'disable'} pending)"
    return ""


def live_rows(snapshots: Sequence[ChannelSnapshot], overrides: Sequence[ChannelOverride]) -> list[dict]:
    """The channels as the live instances report them, in the order they list them."""
    by_name: dict[str, list[tuple[float, dict]]] = {}
    for snapshot in snapshots:
        for row in snapshot.channels:
            by_name.setdefault(row["name"], []).append((snapshot.at, row))
    override_of = {o.name: o for o in overrides}
    oldest = min(s.at for s in snapshots) if snapshots else 0.0
    out = []
    for name, rows in by_name.items():
        first = rows[0][1]
        state = _state(rows, len(snapshots))
        state += _pending(state, override_of.get(name), oldest)
        out.append({"name": name, "url": first["url"], "priority": first["priority"], "weight": first["weight"],
                    "state": state, **{c: _summed(row.get(c) for _, row in rows)
                                       for c in ("in_flight", "requests", "failures")}})
    return out


def configured_rows(config: Config, overrides: Sequence[ChannelOverride]) -> list[dict]:
    """The channels as the configuration and the operator's overrides start them (no gateway runs)."""
    idle = {"in_flight": "-", "requests": "-", "failures": "-"}
    override_of = {o.name: o for o in overrides}
    rows = []
    for channel in _channels(config):
        override = override_of.get(channel.name)
        if override is not None:
            state = "enabled" if override.enabled else f"disabled ({operator_reason(override.reason)})"
        else:
            state = "enabled" if channel.enabled else "disabled (disabled in the configuration)"
        up = channel.upstream
        url = "(built-in simulator)" if up.simulated else redacted_url(up.effective_url or "")
        rows.append({"name": channel.name, "url": url, "priority": channel.priority, "weight": channel.weight,
                     "state": state, **idle})
    return rows


def _channels(config: Config) -> tuple[ChannelConfig, ...]:
    """The configured channels: ``[[upstreams]]``, or the one ``[upstream]`` as "default"."""
    return config.channels or (ChannelConfig(SINGLE, config.upstream),)


def channel_names(config: Config, snapshots: Sequence[ChannelSnapshot]) -> list[str]:
    """The channels an operator may enable or disable: the configuration's and the live routers'."""
    names = dict.fromkeys(c.name for c in _channels(config))
    for snapshot in snapshots:
        names.update(dict.fromkeys(row["name"] for row in snapshot.channels))
    return list(names)
