"""GET /metrics: who may read it, and its counters against what the test sent."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import anthropic
import pytest

from proxy.config import Config
from proxy.http.metrics import allowed
from tests.conftest import MESSAGE, http_client, in_process_config, metric_samples, serve_in_process

TOKEN = "metrics-token-0123456789"


@pytest.mark.parametrize("peer, authorization, ok", [
    ("127.0.0.1", None, True), ("::1", None, True), ("10.1.2.3", None, True), ("10.9.0.1", None, False),
    ("203.0.113.5", None, False), ("203.0.113.5", f"Bearer {TOKEN}", True), ("203.0.113.5", "Bearer wrong", False),
    ("203.0.113.5", TOKEN, False), (None, None, False), ("not-an-ip", None, False),
])
def test_who_may_read_the_metrics(peer, authorization, ok):
    gateway = SimpleNamespace(config=Config(metrics_networks=("10.1.0.0/16",), metrics_token=TOKEN))
    assert allowed(gateway, peer, authorization) is ok


def _sum(samples, name, **labels):
    return sum(v for (n, ls), v in samples.items() if n == name and all(dict(ls).get(k) == w for k, w in labels.items()))


async def test_counters_match_what_was_sent_and_what_the_ledger_charged(alice):
    client = alice.anthropic()
    for _ in range(3):
        await client.messages.create(model="claude-haiku-4.5", max_tokens=20, messages=MESSAGE)
    async with client.messages.stream(model="claude-haiku-4.5", max_tokens=20, messages=MESSAGE) as stream:
        await stream.get_final_message()
    with pytest.raises(anthropic.NotFoundError):
        await client.messages.create(model="gpt-nothing", max_tokens=20, messages=MESSAGE)
    await alice.settled(4)
    async with alice.http() as http:
        response = await http.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples = metric_samples(response.text)
    assert _sum(samples, "cheaplm_requests_total", endpoint="messages", status="200", model="claude-haiku-4.5") == 4
    assert _sum(samples, "cheaplm_requests_total", endpoint="messages", status="404") == 1
    rows = await alice.running.gateway.store.usage("alice", 100)
    assert _sum(samples, "cheaplm_spend_micro_usd_total", model="claude-haiku-4.5") == sum(r.cost for r in rows)
    assert _sum(samples, "cheaplm_tokens_total", lane="output_tokens") == sum(r.output_tokens for r in rows)
    assert _sum(samples, "cheaplm_tokens_total", lane="input_tokens") == sum(r.input_tokens for r in rows)
    assert _sum(samples, "cheaplm_ttft_seconds_count", endpoint="messages") == 4
    assert _sum(samples, "cheaplm_holds_open") == 0 and _sum(samples, "cheaplm_open_streams") == 0


async def test_metrics_are_refused_to_other_addresses_in_the_error_shape(nursery, config):
    from proxy.serve import serve
    running = await nursery.start(serve, replace(config, metrics_token=TOKEN))
    # (the test client is on loopback: ask the app as if from elsewhere)
    from proxy.http.app import create_app
    app = create_app(running.gateway)
    test_client = app.test_client()
    response = await test_client.get("/metrics", scope_base={"client": ("198.51.100.7", 5000)})
    assert response.status_code == 403
    body = await response.get_json()
    assert body["error"]["type"] == "permission_error"
    allowed_response = await test_client.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"},
                                             scope_base={"client": ("198.51.100.7", 5000)})
    assert allowed_response.status_code == 200


# -- behind a reverse proxy on the same host; dual-stack peers ---------------------------------

async def test_metrics_behind_a_trusted_loopback_proxy_judge_the_forwarded_client(nursery, ledger):
    """A gateway behind nginx on the same host sees every connection from loopback: with
    that proxy in trusted_proxies, the client it forwards for is who asks, and a client on
    the internet must not read /metrics because its proxy happens to be local."""
    running = await nursery.start(serve_in_process, replace(in_process_config(ledger),
                                                            trusted_proxies=("127.0.0.1/32",)))
    async with http_client(running) as http:
        outside = await http.get("/metrics", headers={"x-forwarded-for": "203.0.113.9"})
        spoofed = await http.get("/metrics", headers={"x-forwarded-for": "127.0.0.1, 203.0.113.9"})
        local = await http.get("/metrics")  # the proxy host itself (no forwarded client): loopback
    assert outside.status_code == 403 and spoofed.status_code == 403
    assert local.status_code == 200


def test_metrics_judge_an_ipv4_mapped_peer_as_its_ipv4_address():
    """On a dual-stack listener ([::]) IPv4 peers arrive as ::ffff:a.b.c.d: loopback and
    metrics_networks must still recognise them (as the key's --ip checks do)."""
    gateway = SimpleNamespace(config=Config(metrics_networks=("10.1.0.0/16",)))
    assert allowed(gateway, "::ffff:127.0.0.1", None)
    assert allowed(gateway, "::ffff:10.1.2.3", None)
    assert not allowed(gateway, "::ffff:203.0.113.5", None)
