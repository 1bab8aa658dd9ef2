"""Fixtures shared by the HTTP tests, all in-process (the Quart app through ASGITransport):
the self-serve site, and a gateway with one key of every kind the error tables need."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.conftest import in_process_config, make_account, serve_in_process, with_fast_hash


@pytest.fixture
async def errors_gateway(nursery, ledger):
    """(running, keys by kind): short upstream timeouts, a 256 KiB body limit, the
    loopback trusted as a proxy; keys good, haiku-only, no-stream, far-ip, revoked
    (and revoked-bearer), poor (10 micro-USD)."""
    cfg = replace(in_process_config(ledger, first_byte_timeout=0.5, idle_timeout=0.5),
                  max_body_bytes=256 * 1024, trusted_proxies=("127.0.0.1/32",))
    running = await nursery.start(serve_in_process, cfg)
    keys = {}
    for name, options, credit in [
        ("good", {}, 10_000_000), ("haiku-only", {"models": ["claude-haiku-4.5"]}, 10_000_000),
        ("no-stream", {"allow_stream": False}, 10_000_000), ("far-ip", {"ips": ["10.9.0.0/16", "2001:db8::/32"]},
                                                                10_000_000),
        ("revoked", {}, 10_000_000), ("poor", {}, 10),
    ]:
        account = await make_account(running, name, credit_micro=credit, **options)
        keys[name] = account.key
    await running.gateway.store.revoke_key(keys["revoked"][:14])
    keys["revoked-bearer"] = keys["revoked"]
    return running, keys


@pytest.fixture
async def site(nursery, ledger):
    """The self-serve site in-process, with cheap password hashing (overrides the
    socket one in tests/conftest.py: the browser test needs that one)."""
    return await nursery.start(serve_in_process, with_fast_hash(in_process_config(ledger)))
