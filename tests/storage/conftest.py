"""The store fixtures, parametrized by backend (backends.py)."""

from __future__ import annotations

import os
import uuid

import pytest

from .backends import BACKENDS, PG_SERVER, Backend
from .helpers import LEASE


@pytest.fixture(scope="session")
def pg_database():
    """A fresh, uniquely named PostgreSQL database for this test run (dropped at its end),
    or None when the server cannot be reached."""
    try:
        import psycopg

        admin = psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True, connect_timeout=3)
    except Exception as exc:  # no server here: the PostgreSQL tests skip, saying why
        yield exc
        return
    name = f"cheaplm_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin.execute(f"CREATE DATABASE {name}")
    try:
        yield f"{PG_SERVER}/{name}"
    finally:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        admin.close()


def _make(request, tmp_path) -> Backend:
    spec = request.param
    database = None
    if spec.postgres:
        database = request.getfixturevalue("pg_database")
        if not isinstance(database, str):
            pytest.skip(f"PostgreSQL at {PG_SERVER} is unreachable: {database}")
    return spec.make(tmp_path, database)


@pytest.fixture(params=[spec for spec in BACKENDS], ids=lambda spec: spec.name)
def backend(request, tmp_path) -> Backend:
    return _make(request, tmp_path)


@pytest.fixture(params=[spec for spec in BACKENDS if spec.shared], ids=lambda spec: spec.name)
def shared(request, tmp_path) -> Backend:
    """The backends where several stores (and processes) share one database."""
    return _make(request, tmp_path)


@pytest.fixture
async def store(backend):
    s = await backend.open("inst-a")
    await s.register_instance(LEASE)
    yield s
    await s.aclose()


@pytest.fixture
async def pair(shared):
    """Two live instances on one database: (a, b)."""
    a, b = await shared.open("inst-a"), await shared.open("inst-b")
    await a.register_instance(LEASE)
    await b.register_instance(LEASE)
    yield a, b
    await a.aclose()
    await b.aclose()
