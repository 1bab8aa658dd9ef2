"""Every route that takes a key applies its restrictions, and reads nothing before the
key is accepted. The route list comes from the app itself, so a new route cannot
forget: it is either public (listed here) or must refuse a restricted key. The
refusals are checked in-process; what happens to the connection and the body it
carries (refused unread, a trickle cut off) on the socket."""

import time

import httpx
import pytest
import trio

from proxy.http.pages import views as pages
from proxy.http.app import create_app

from tests.conftest import http_client, make_account

# Routes that take no key at all (a key presented there is ignored).
PUBLIC = {"/", "/health", "/health/ready", "/v1/models/info", "/api/hello", "/v1", "/v1/api/hello",
          "/metrics",  # (no key: loopback, metrics_networks or the metrics token; tests/http/test_metrics.py)
          "/api/auth/signup", "/api/auth/login", "/api/auth/logout",  # (a password, or the session cookie)
          "/api/payments/webhook", "/api/payments/<name>/webhook",  # (the provider's signature)
          "/openapi.json"}
SAMPLE_PATH = {"/v1/models/<path:model_id>": "/v1/models/claude-sonnet-4.5",
               "/api/keys/<prefix>": "/api/keys/sk-cl-abcdefgh", "/api/admin/users/<name>/credit":
               "/api/admin/users/someone/credit", "/api/admin/users/<name>/disable": "/api/admin/users/someone/disable"}
SAMPLE_BODY = {"model": "claude-sonnet-4.5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}


def key_routes(gateway) -> list[tuple[str, str]]:
    app = create_app(gateway)
    routes = [(method, path) for path in app.asgi_app.routes for method in ("POST",)]
    for rule in app.url_map.iter_rules():
        if rule.rule in PUBLIC or pages.is_page(rule.endpoint):  # pages: a session, never a key (test_pages.py)
            continue
        method = next((m for m in ("POST", "DELETE") if m in rule.methods), "GET")
        routes.append((method, SAMPLE_PATH.get(rule.rule, rule.rule)))
    return routes


async def call(running, key: str, method: str, path: str) -> httpx.Response:
    async with http_client(running, timeout=10) as http:
        body = {"toUsername": "someone", "amount": 1} if path.startswith("/api/") else SAMPLE_BODY
        return await http.request(method, path, headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
                                  json=body if method in ("POST", "DELETE") else None)


async def test_the_route_list_is_what_we_think(app_gateway):
    gateway = app_gateway
    routes = key_routes(gateway.gateway)
    assert ("POST", "/api/user/transfer") in routes and ("GET", "/v1/models") in routes
    assert ("POST", "/v1/messages") in routes and ("DELETE", "/api/keys/sk-cl-abcdefgh") in routes
    assert ("POST", "/api/topup/checkout") in routes
    assert len(routes) == 22 and ("GET", "/api/ledger.csv") in routes and ("POST", "/v1/responses") in routes


async def test_every_key_route_refuses_a_key_from_the_wrong_network(app_gateway):
    gateway = app_gateway
    fenced = await make_account(gateway, "fenced", ips=["10.9.9.9/32"])
    for method, path in key_routes(gateway.gateway):
        response = await call(gateway, fenced.key, method, path)
        assert response.status_code == 403, (method, path, response.text)
        assert "10.9.9.9" not in response.text  # says which address was refused, not the allowlist
    assert (await fenced.account()).balance == 10_000_000


async def test_every_key_route_refuses_a_revoked_key(app_gateway):
    gateway = app_gateway
    gone = await make_account(gateway, "gone")
    await gateway.gateway.store.revoke_key(gone.key[:14])
    gateway.gateway.keys.forget(gone.key[:14])
    for method, path in key_routes(gateway.gateway):
        response = await call(gateway, gone.key, method, path)
        assert response.status_code == 401, (method, path, response.text)


async def test_transfer_from_an_allowed_network_still_works(app_gateway):
    gateway = app_gateway
    seller = await make_account(gateway, "seller", ips=["127.0.0.0/8"])
    await make_account(gateway, "buyer", credit_micro=0)
    async with seller.http() as http:
        response = await http.post("/api/user/transfer", json={"toUsername": "buyer", "amount": 1})
    assert response.status_code == 200 and response.json()["receiverNewBalance"] == 1


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/chat/completions", "/v1/messages/count_tokens"])
async def test_a_forged_key_is_refused_before_the_body_is_read(gateway, path):
    """A 31 MB body announced with a forged key: 401 at once, and the connection is
    closed rather than drained (the body is never read)."""
    host, port = gateway.url.removeprefix("http://").split(":")
    stream = await trio.open_tcp_stream(host, int(port))
    await stream.send_all(f"POST {path} HTTP/1.1\r\nhost: x\r\n"
                          "x-api-key: sk-cl-FORGEDFORGEDFORGEDFORGEDFORGEDFORGEDFORG\r\n"
                          "content-type: application/json\r\ncontent-length: 31000000\r\n\r\n{".encode())
    with trio.fail_after(5):
        head = await stream.receive_some(65536)
    assert head.startswith(b"HTTP/1.1 401")
    sent = 0
    with pytest.raises(trio.BrokenResourceError):
        with trio.fail_after(10):
            while sent < 31_000_000:
                await stream.send_all(b" " * 65536)
                sent += 65536
    assert sent < 8_000_000


async def test_a_trickled_body_is_cut_off(nursery, config):
    """A valid key trickling its body (1 byte every 0.3 s) gets 408 once it falls below
    the minimum rate after the grace period."""
    from dataclasses import replace

    from proxy.serve import serve

    running = await nursery.start(serve, replace(config, body_grace=0.5, body_min_rate=100))
    slow = await make_account(running, "slow")
    host, port = running.url.removeprefix("http://").split(":")
    stream = await trio.open_tcp_stream(host, int(port))
    await stream.send_all(f"POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-api-key: {slow.key}\r\n"
                          "content-type: application/json\r\ncontent-length: 500\r\n\r\n".encode())
    started = time.monotonic()
    answer = b""
    with trio.fail_after(10):
        while not answer:
            await stream.send_all(b" ")
            with trio.move_on_after(0.3):
                answer = await stream.receive_some(65536)
        while b'"timeout_error"' not in answer and (more := await stream.receive_some(65536)):
            answer += more
    assert answer.startswith(b"HTTP/1.1 408") and b'"timeout_error"' in answer
    assert time.monotonic() - started < 5
    assert (await slow.account()).held == 0
