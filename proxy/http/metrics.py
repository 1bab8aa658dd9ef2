"""GET /metrics: the gateway's Prometheus metrics, for loopback, the configured
networks, or whoever presents the metrics token; refused (403) to everyone else."""

from __future__ import annotations

import hmac
import ipaddress

import trio
from quart import Blueprint, Response, request

from .. import errors
from ..auth import client_ip
from ..runtime import Gateway
from ..observe.metrics import CONTENT_TYPE, gauge
from .context import current_gateway, every_line


def blueprint(gateway: Gateway) -> Blueprint:
    bp = Blueprint("metrics", __name__)
    bp.get("/metrics")(metrics)
    gateway.metrics.watch("gateway", lambda: _present(gateway))
    return bp


def _present(gateway: Gateway):
    """Gauges of what is true at the scrape."""
    yield gauge("cheaplm_open_streams", "Streams being relayed", (), [((), len(gateway.meter.in_flight))])
    yield gauge("cheaplm_holds_open", "Requests of this process whose hold is not settled yet", (),
                [((), gateway.meter.holds_open)])
    yield gauge("cheaplm_counted_holds", "Holds sized on the upstream's count of the prompt since start (the "
                "worst case was more than the balance or the key's caps allowed)", (),
                [((), gateway.meter.counted_holds)])
    channels = gateway.upstream.describe(trio.current_time())
    states = ("healthy", "cooling", "open", "probing", "disabled")
    yield gauge("cheaplm_channel_state", "1 for each channel's current state", ("channel", "state"),
                [((c["name"], s), float(c["state"] == s)) for c in channels for s in states])
    yield gauge("cheaplm_channel_in_flight", "Requests in flight per channel", ("channel",),
                [((c["name"],), c["in_flight"]) for c in channels])


def allowed(gateway: Gateway, peer: str | None, authorization: str | None) -> bool:
    token = gateway.config.metrics_token
    if token and authorization and hmac.compare_digest(authorization.encode(), f"Bearer {token}".encode()):
        return True
    try:
        address = ipaddress.ip_address(peer or "")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:  # a dual-stack socket's IPv4 peer
        address = address.ipv4_mapped
    return address.is_loopback or any(address in network for network in gateway.config.metrics_allowed())


async def metrics() -> Response:
    gateway = current_gateway()
    # The client, as the key checks see it: behind a trusted proxy (often on loopback) the
    # address it forwards for, not the proxy's own.
    peer = client_ip(request.remote_addr, every_line("x-forwarded-for"), gateway.trusted)
    if not allowed(gateway, peer, request.headers.get("authorization")):
        raise errors.permission("/metrics is served to loopback, the configured metrics_networks, "
                                "or with the metrics token")
    return Response(gateway.metrics.render(), content_type=CONTENT_TYPE)


