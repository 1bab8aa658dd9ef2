"""A throwaway PostgreSQL database for a bench run: created fresh (uniquely named) on the
server the run names, dropped (with any connection still on it) when the run ends."""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from typing import Iterator

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432"


@contextmanager
def fresh_database(server: str = DEFAULT_SERVER) -> Iterator[str]:
    """``server``: a postgresql:// URL without a database (its ``postgres`` database is used
    to create and drop), optionally with a query the gateway's URL keeps
    (``?options=-csynchronous_commit%3Doff``). Yields the new database's URL."""
    import psycopg

    server, _, query = server.partition("?")
    server = server.rstrip("/")
    name = f"cheaplm_bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{server}/postgres", autocommit=True, connect_timeout=5) as admin:
        admin.execute(f"CREATE DATABASE {name}")
        try:
            yield f"{server}/{name}" + (f"?{query}" if query else "")
        finally:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
