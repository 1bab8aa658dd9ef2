"""Identifiers the gateway makes up: a request's id (the ``request-id`` header, error
bodies, the ledger's usage rows) and this process's instance id."""

from __future__ import annotations

import os
import secrets
import socket


def new_request_id() -> str:
    return "req_" + os.urandom(12).hex()  # (secrets.token_hex(12), without its two Python calls on the hot path)


def new_instance_id() -> str:
    """This gateway process as an owner of holds in the store."""
    return f"{socket.gethostname()[:32]}-{os.getpid()}-{secrets.token_hex(4)}"
