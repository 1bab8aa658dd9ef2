"""Regressions found probing the day's changes (metrics, limits, channels, the request
log, model-id rewrite, transfer amounts) as an attacker would: each test failed before
its fix."""

from __future__ import annotations

from dataclasses import replace

import httpx
import pytest

from tests.conftest import make_account


# -- /metrics behind a reverse proxy on the same host ------------------------------------------

async def test_metrics_behind_a_trusted_loopback_proxy_judge_the_forwarded_client(nursery, config):
    """A gateway behind nginx on the same host sees every connection from loopback: with
    that proxy in trusted_proxies, the client it forwards for is who asks, and a client on
    the internet must not read /metrics because its proxy happens to be local."""
    from proxy.serve import serve
    running = await nursery.start(serve, replace(config, trusted_proxies=("127.0.0.1/32",)))
    async with httpx.AsyncClient(base_url=running.url) as http:
        outside = await http.get("/metrics", headers={"x-forwarded-for": "203.0.113.9"})
        spoofed = await http.get("/metrics", headers={"x-forwarded-for": "127.0.0.1, 203.0.113.9"})
        local = await http.get("/metrics")  # the proxy host itself (no forwarded client): loopback
    assert outside.status_code == 403 and spoofed.status_code == 403
    assert local.status_code == 200


def test_metrics_judge_an_ipv4_mapped_peer_as_its_ipv4_address():
    """On a dual-stack listener ([::]) IPv4 peers arrive as ::ffff:a.b.c.d: loopback and
    metrics_networks must still recognise them (as the key's --ip checks do)."""
    from types import SimpleNamespace

    from proxy.config import Config
    from proxy.http.metrics import allowed
    gateway = SimpleNamespace(config=Config(metrics_networks=("10.1.0.0/16",)))
    assert allowed(gateway, "::ffff:127.0.0.1", None)
    assert allowed(gateway, "::ffff:10.1.2.3", None)
    assert not allowed(gateway, "::ffff:203.0.113.5", None)
