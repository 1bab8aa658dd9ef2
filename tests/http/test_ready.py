"""GET /health/ready, a load balancer's check: 200 while the process can take requests;
503 while its ledger does not answer or once a graceful shutdown has begun, while
/health stays 200 (the process is alive)."""

import os

import trio

from proxy.http import public
from proxy.http.context import DRAIN
from storage.base import StoreUnavailable

from tests.conftest import http_client


async def _get(app_gateway, path="/health/ready"):
    async with http_client(app_gateway) as client:
        return await client.get(path)


async def test_ready_while_the_ledger_answers(app_gateway):
    answer = await _get(app_gateway)
    assert answer.status_code == 200
    assert answer.json() == {"ready": True, "pid": os.getpid()}


async def test_not_ready_once_a_graceful_shutdown_began(app_gateway):
    app_gateway.app.extensions[DRAIN].end_by(trio.current_time() + 30)
    answer = await _get(app_gateway)
    assert answer.status_code == 503
    assert answer.json()["reason"] == "shutting down"
    assert (await _get(app_gateway, "/health")).status_code == 200


async def test_not_ready_while_the_ledger_refuses(app_gateway, monkeypatch):
    async def refused():
        raise StoreUnavailable("connection refused")
    monkeypatch.setattr(app_gateway.gateway.store, "last_change", refused)
    answer = await _get(app_gateway)
    assert answer.status_code == 503
    assert answer.json() == {"ready": False, "pid": os.getpid(), "reason": "the ledger is unreachable"}
    assert (await _get(app_gateway, "/health")).status_code == 200


async def test_not_ready_while_the_ledger_is_silent(app_gateway, monkeypatch):
    async def silent():
        await trio.sleep_forever()
    monkeypatch.setattr(app_gateway.gateway.store, "last_change", silent)
    monkeypatch.setattr(public, "READY_TIMEOUT", 0.05)
    answer = await _get(app_gateway)
    assert answer.status_code == 503
    assert answer.json()["reason"] == "the ledger is unreachable"
