"""Identifiers the gateway makes up: a request's id (the ``request-id`` header, error
bodies, the ledger's usage rows)."""

from __future__ import annotations

import secrets


def new_request_id() -> str:
    return "req_" + secrets.token_hex(12)
