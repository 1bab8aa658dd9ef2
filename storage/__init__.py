"""Storage: ``open_store(url)`` picks the backend by the location's scheme.

base.py holds the Store protocols (split by concern), errors.py and records.py what they
raise and return, location.py how a path or URL is read, leases.py the hold-ownership
rule every backend shares, sql/ the operations written once for every SQL backend, and
one package per backend (sqlite/, postgres/).

A backend joins by one entry in ``OPENERS``: its scheme and an async opener taking
the parsed Location and the options below.
"""

from __future__ import annotations

import time
from types import MappingProxyType
from typing import Awaitable, Callable, Mapping

from .base import Store
from .errors import StoreConfigError
from .location import Location, parse_location

__all__ = ["OPENERS", "Location", "Store", "StoreConfigError", "copy_store", "describe_location", "open_store",
           "parse_location"]

Opener = Callable[..., Awaitable[Store]]  # (location, *, instance_id, busy_timeout, clock, create, upgrade)


async def _open_sqlite(location: Location, **options) -> Store:
    from .sqlite import SqliteStore

    return await SqliteStore.open(location.target, **options)


async def _open_postgresql(location: Location, **options) -> Store:
    try:
        from .postgres import PostgresStore
    except ImportError as exc:  # psycopg is a dependency: a broken install
        raise StoreConfigError(f"the ledger {location.shown} needs the PostgreSQL store, which cannot be loaded "
                               f"here ({exc}): install psycopg[binary] and psycopg-pool") from None
    return await PostgresStore.open(location.target, shown=location.shown, **options)


OPENERS: Mapping[str, Opener] = MappingProxyType({
    "sqlite": _open_sqlite,
    "postgresql": _open_postgresql,  # postgres:// is an alias (location.SCHEME_ALIASES)
})


async def open_store(url: str, *, instance_id: str | None = None, busy_timeout: float = 5.0,
                     clock: Callable[[], float] = time.time, create: bool = True, upgrade: bool = True) -> Store:
    """The store at ``url``: a bare path or ``sqlite:///path`` (a SQLite file;
    ``:memory:`` for throwaway use), or ``postgresql://...`` (libpq's URL: location.py).
    StoreConfigError for a scheme no backend serves.

    ``instance_id``: the identity of the process that places holds through this store
    (a gateway draws one with ``secrets`` at start-up, then ``register_instance``);
    None for the admin CLI and tools, which may not place holds. ``busy_timeout``:
    how long an operation waits for another process's write lock before raising
    StoreUnavailable. ``clock``: unix time (tests move it to expire leases).

    The schema: a ledger whose recorded migrations this version does not know is
    refused (SchemaTooNew); one with no schema is created unless not ``create``
    (LedgerMissing); an older one is migrated unless not ``upgrade`` (MigrationNeeded,
    naming ``cheaplm db migrate``): admin commands beside a running gateway never
    migrate under it. ``store.applied_migrations`` says what opening applied."""
    location = parse_location(url)
    opener = OPENERS.get(location.backend)
    if opener is None:
        known = ", ".join(f"{scheme}://" for scheme in OPENERS)
        raise StoreConfigError(f"the ledger {location.shown} has an unknown scheme {location.backend!r} "
                               f"(known: a file path, {known})")
    return await opener(location, instance_id=instance_id, busy_timeout=busy_timeout, clock=clock, create=create,
                        upgrade=upgrade)


async def copy_store(source_url: str, target_url: str, *, busy_timeout: float = 5.0):
    """Copy the ledger at ``source_url`` into a new (or empty) one at ``target_url``, on
    any backends, and verify that every account's balance, held and ledger sum, and every
    table's row count, came out equal (storage/sql/copy.py): the figures copied, or
    CopyRefused. Both must have this version's schema (MigrationNeeded otherwise)."""
    from .sql.copy import copy_ledger

    source = await open_store(source_url, busy_timeout=busy_timeout, create=False, upgrade=False)
    try:
        target = await open_store(target_url, busy_timeout=busy_timeout, create=True, upgrade=False)
        try:
            return await copy_ledger(source, target)
        finally:
            await target.aclose()
    finally:
        await source.aclose()


def describe_location(url: str) -> str:
    """The ledger's location for messages and logs: an absolute file path, or the URL
    without its password; the text as given if it is not a location at all."""
    try:
        return parse_location(url).shown
    except StoreConfigError:
        return url if "://" not in url else url.split("://", 1)[0] + "://..."
