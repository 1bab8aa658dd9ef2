"""Storage: the Store protocol (base), hold ownership rules (leases) and the SQLite
implementation (sqlite/)."""

from __future__ import annotations

import time
from typing import Callable

from .base import Store


async def open_store(path: str, *, instance_id: str | None = None, busy_timeout: float = 5.0,
                     clock: Callable[[], float] = time.time) -> Store:
    """The store for a path: a SQLite file (``:memory:`` for throwaway use).

    ``instance_id``: the identity of the process that places holds through this store
    (a gateway draws one with ``secrets`` at start-up, then ``register_instance``);
    None for the admin CLI and tools, which may not place holds. ``busy_timeout``:
    how long an operation waits for another process's write lock before raising
    StoreUnavailable. ``clock``: unix time (tests move it to expire leases).

    PostgreSQL DSNs will be recognised here when that store lands."""
    from .sqlite import SqliteStore

    return await SqliteStore.open(path, instance_id=instance_id, busy_timeout=busy_timeout, clock=clock)
