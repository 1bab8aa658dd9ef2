"""The routes anyone may call without a key: the base URL and the reachability probes
clients send at start-up, and the health check."""

from __future__ import annotations

import os

import os

import trio
from quart import Blueprint, Response

from storage.base import StoreError

from .pages import views as pages
from .api.payments import current_payments
from .context import current_drain, current_gateway
from .responses import json_response

VERSION = "0.1.0"


def blueprint() -> Blueprint:
    bp = Blueprint("public", __name__)
    bp.route("/", methods=["GET", "HEAD"])(root)
    bp.route("/api/hello", methods=["GET", "HEAD"])(hello)
    # A client given the base URL with /v1 (as the product docs show) probes under it:
    # Claude Code sends HEAD <base>/api/hello, other clients HEAD <base>.
    # (HEAD only: a GET under /v1 is an API call, and /v1/models/.. must not look like a model list)
    bp.route("/v1", methods=["HEAD"])(hello)
    bp.route("/v1/api/hello", methods=["HEAD"])(hello)
    bp.get("/health")(health)
    bp.get("/health/ready")(ready)
    return bp


async def root() -> Response:
    """Clients probe the base URL (Claude Code sends HEAD /) and get JSON; a browser
    (text/html preferred) gets the dashboard's home page."""
    if pages.wants_html():
        return await pages.home()
    return json_response({"service": "CheapLM gateway", "version": VERSION,
                          "endpoints": ["/v1/messages", "/v1/chat/completions", "/v1/responses", "/v1/models"]})


async def hello() -> Response:
    """A start-up reachability probe (Claude Code: HEAD <base URL>/api/hello; others HEAD
    <base URL>), no key needed."""
    return json_response({"ok": True})


async def health() -> Response:
    gateway = current_gateway()
    upstream = gateway.upstream
    body = {"status": "ok", "version": VERSION,
            "upstream": {"url": upstream.label, "simulated": gateway.simulated},
            "models": len(gateway.catalog.models), "payments": current_payments().describe(),
            "pid": os.getpid()}  # the process that answered (one of serve --workers N)
    body["upstream"]["channels"] = upstream.describe(trio.current_time())  # each one's state, never a key
    if gateway.shared is not None:  # (Redis down: still "ok", the gateway serves with per-node limits)
        shared = gateway.shared.describe()
        shared["limits"] = "shared by the fleet" if shared["up"] else "per node until Redis answers again"
        body["redis"] = shared
    return json_response(body)


READY_TIMEOUT = 1.0  # seconds the ledger has to answer a readiness check


async def ready() -> Response:
    """For a load balancer's health check: 200 while this process can take requests, 503
    while its ledger does not answer (every metered request would get 503: another node
    may reach it) or once a graceful shutdown has begun (send new requests elsewhere).
    ``/health`` stays 200 meanwhile: the process is alive."""
    gateway = current_gateway()
    reason = "shutting down" if current_drain().shutting_down else None
    if reason is None:
        try:
            with trio.fail_after(READY_TIMEOUT):
                await gateway.store.last_change()  # one indexed read
        except (StoreError, trio.TooSlowError):
            reason = "the ledger is unreachable"
    body = {"ready": reason is None, "pid": os.getpid()}
    if reason is not None:
        body["reason"] = reason
    return json_response(body, status=200 if reason is None else 503)
