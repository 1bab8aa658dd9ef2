"""The store fixtures, parametrized by backend (backends.py); pg_database is tests/conftest.py's."""

from __future__ import annotations

import pytest

from ..conftest import pg_database_url
from .backends import BACKENDS, Backend
from .helpers import LEASE


def _make(request, tmp_path) -> Backend:
    spec = request.param
    return spec.make(tmp_path, pg_database_url(request) if spec.postgres else None)


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
