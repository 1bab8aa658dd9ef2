"""Named, ordered schema migrations, each run in a transaction and recorded in ``_migrations``."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable

import sqlite_utils

from ..errors import LedgerMissing, MigrationNeeded, SchemaTooNew
from .transactions import immediate


def _initial(db: sqlite_utils.Database) -> None:
    db["accounts"].create({
        "id": int, "username": str, "balance": int, "held": int, "created_at": str,
    }, pk="id", not_null={"username", "balance", "held", "created_at"}, defaults={"balance": 0, "held": 0})
    db["accounts"].create_index(["username"], unique=True)
    db["api_keys"].create({
        "id": int, "account_id": int, "prefix": str, "key_hash": str, "name": str,
        "models": str, "allow_stream": int, "ips": str, "pass_thinking": int,
        "created_at": str, "last_used_at": str, "revoked_at": str,
    }, pk="id", foreign_keys=[("account_id", "accounts", "id")],
        not_null={"account_id", "prefix", "key_hash", "name", "allow_stream", "created_at"})
    db["api_keys"].create_index(["prefix"], unique=True)
    db["api_keys"].create_index(["account_id"])
    db["ledger"].create({
        "id": int, "account_id": int, "delta": int, "balance_after": int, "kind": str,
        "ref": str, "paid": int, "created_at": str,
    }, pk="id", foreign_keys=[("account_id", "accounts", "id")],
        not_null={"account_id", "delta", "balance_after", "kind", "created_at"})
    db["ledger"].create_index(["account_id", "id"])
    db["holds"].create({
        "id": int, "account_id": int, "amount": int, "request_id": str, "state": str, "created_at": str,
    }, pk="id", foreign_keys=[("account_id", "accounts", "id")],
        not_null={"account_id", "amount", "request_id", "state", "created_at"})
    db.execute("CREATE INDEX idx_holds_open ON holds(state) WHERE state = 'open'")
    db["usage"].create({
        "request_id": str, "key_id": int, "account_id": int, "model": str, "endpoint": str,
        "stream": int, "status": int, "input_tokens": int, "cache_write_5m": int,
        "cache_write_1h": int, "cache_read": int, "output_tokens": int, "cost": int,
        "partial": int, "error_type": str, "latency_ms": float, "ttft_ms": float, "created_at": str,
    }, pk="request_id", not_null={"key_id", "account_id", "model", "endpoint", "status", "cost", "created_at"})
    db["usage"].create_index(["account_id", "created_at"])


def _hold_owners(db: sqlite_utils.Database) -> None:
    """Holds belong to the instance that placed them (leases), and carry the partial
    charge to apply if that instance dies mid-stream. Holds from before have no owner:
    recovery treats them as orphaned (their process died before this version)."""
    db.execute("CREATE TABLE instances (id TEXT PRIMARY KEY, host TEXT NOT NULL, pid_namespace TEXT, "
               "pid INTEGER NOT NULL, started_at REAL NOT NULL, heartbeat_at REAL NOT NULL, "
               "lease_seconds REAL NOT NULL)")
    db.execute("ALTER TABLE holds ADD COLUMN owner TEXT")
    db.execute("ALTER TABLE holds ADD COLUMN progress TEXT")
    db.execute("ALTER TABLE holds ADD COLUMN progress_at REAL")


def _key_limits(db: sqlite_utils.Database) -> None:
    """Per-key rate limits and spend caps (micro-USD per UTC day and month); the key each
    hold is for; and each key's charges per UTC day (``key_spend``, kept with every
    charge), so that a capped key's hold reads at most a month of daily rows, not every
    request of the month. Charges from before are rolled up once, here."""
    for column in ("rpm", "tpm", "concurrency", "daily_usd", "monthly_usd"):
        db.execute(f"ALTER TABLE api_keys ADD COLUMN {column} INTEGER")
    db.execute("ALTER TABLE holds ADD COLUMN key_id INTEGER")
    db.execute("CREATE INDEX idx_holds_key_open ON holds(key_id, amount) WHERE state = 'open'")
    db.execute("CREATE TABLE key_spend (key_id INTEGER NOT NULL, day TEXT NOT NULL, spent INTEGER NOT NULL, "
               "PRIMARY KEY (key_id, day))")
    db.execute("INSERT INTO key_spend (key_id, day, spent) SELECT key_id, substr(created_at, 1, 10), SUM(cost) "
               "FROM usage WHERE cost > 0 GROUP BY key_id, substr(created_at, 1, 10)")


def _channels(db: sqlite_utils.Database) -> None:
    """Upstream channels: each usage row names the channel that served it and the
    attempts it took (rows from before have NULL); the operator's overrides (``cheaplm
    upstream enable|disable``); the channel status each live instance publishes."""
    db.execute("ALTER TABLE usage ADD COLUMN channel TEXT")
    db.execute("ALTER TABLE usage ADD COLUMN attempts INTEGER")
    db.execute("CREATE TABLE channel_overrides (name TEXT PRIMARY KEY, enabled INTEGER NOT NULL, "
               "reason TEXT NOT NULL, set_at REAL NOT NULL, version INTEGER NOT NULL)")
    db.execute("CREATE TABLE channel_snapshots (instance_id TEXT PRIMARY KEY, at REAL NOT NULL, "
               "channels TEXT NOT NULL)")


def _accounts(db: sqlite_utils.Database) -> None:
    """Accounts people log in to (password hash, email, role, disabled, first payment), key expiry,
    sessions (their token's hash), redemption codes (their hash) and applied payments
    (one row per provider event, so a webhook delivered twice credits once)."""
    db.execute("ALTER TABLE accounts ADD COLUMN email TEXT")
    db.execute("ALTER TABLE accounts ADD COLUMN password_hash TEXT")
    db.execute("ALTER TABLE accounts ADD COLUMN role TEXT NOT NULL DEFAULT 'user'")
    db.execute("ALTER TABLE accounts ADD COLUMN disabled_at TEXT")
    db.execute("ALTER TABLE accounts ADD COLUMN paid_at TEXT")  # the first payment (NULL: free tier)
    db.execute("UPDATE accounts SET paid_at = (SELECT MIN(created_at) FROM ledger l "
               "WHERE l.account_id = accounts.id AND l.paid > 0)")
    db.execute("ALTER TABLE api_keys ADD COLUMN expires_at REAL")
    db.execute("CREATE TABLE sessions (id INTEGER PRIMARY KEY, token_hash TEXT NOT NULL UNIQUE, "
               "account_id INTEGER NOT NULL REFERENCES accounts(id), created_at TEXT NOT NULL, "
               "expires_at REAL NOT NULL)")
    db.execute("CREATE INDEX idx_sessions_account ON sessions(account_id)")
    db.execute("CREATE TABLE codes (id INTEGER PRIMARY KEY, code_hash TEXT NOT NULL UNIQUE, hint TEXT NOT NULL, "
               "paid INTEGER NOT NULL, credit INTEGER NOT NULL, created_at TEXT NOT NULL, expires_at REAL, "
               "redeemed_at TEXT, redeemed_by INTEGER REFERENCES accounts(id))")
    db.execute("CREATE TABLE payments (provider TEXT NOT NULL, event_id TEXT NOT NULL, "
               "account_id INTEGER NOT NULL REFERENCES accounts(id), paid INTEGER NOT NULL, "
               "credit INTEGER NOT NULL, created_at TEXT NOT NULL, PRIMARY KEY (provider, event_id))")


# The columns that held ISO 8601 text before 0006 (the others were unix time already).
ISO_TIME_COLUMNS = (("accounts", "created_at"), ("accounts", "disabled_at"), ("accounts", "paid_at"),
                    ("api_keys", "created_at"), ("api_keys", "last_used_at"), ("api_keys", "revoked_at"),
                    ("ledger", "created_at"), ("holds", "created_at"), ("usage", "created_at"),
                    ("sessions", "created_at"), ("codes", "created_at"), ("codes", "redeemed_at"),
                    ("payments", "created_at"))
_NOT_NULL = {"created_at"}
_UNIX = "ROUND((julianday({}) - 2440587.5) * 86400.0, 3)"  # ISO 8601 text -> unix seconds (ms kept)


def _unix_times(db: sqlite_utils.Database) -> None:
    """One time representation: every time is unix seconds (REAL), as the leases,
    expiries and channel times already were, instead of ISO text for some and numbers
    for others. Numbers compare, sort and subtract alike in SQLite, PostgreSQL and
    Python, need no parsing in a report, and make the spend day portable arithmetic
    (caps.SPEND_DAY) instead of SQLite's substr; the presentation formats them.
    ``key_spend.day`` becomes the day's number since 1970-01-01 (an integer).

    A time that is not ISO 8601 text (none this code wrote) becomes NULL, or 0 (1970)
    where a time is required. Each column is swapped for a REAL one (SQLite cannot change a column's type in
    place: a TEXT column would store numbers as text): add, fill, drop, rename. Also the
    indexes the reports sort and filter by: usage by time (the admin usage page), by
    account and time (a user's pages and spend_by_day: it covers the cost), by key and
    time (a key's page); sessions by expiry (end_session sweeps the expired)."""
    db.execute("DROP INDEX IF EXISTS idx_usage_account_id_created_at")
    for table, column in ISO_TIME_COLUMNS:
        not_null = " NOT NULL DEFAULT 0" if column in _NOT_NULL else ""
        db.execute(f"ALTER TABLE {table} ADD COLUMN {column}__unix REAL{not_null}")
        unix = _UNIX.format(column)
        db.execute(f"UPDATE {table} SET {column}__unix = " + (f"COALESCE({unix}, 0)" if not_null else unix)
                   + f" WHERE {column} IS NOT NULL")
        db.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        db.execute(f"ALTER TABLE {table} RENAME COLUMN {column}__unix TO {column}")
    db.execute("CREATE TABLE key_spend__days (key_id INTEGER NOT NULL, day INTEGER NOT NULL, "
               "spent INTEGER NOT NULL, PRIMARY KEY (key_id, day))")
    db.execute("INSERT INTO key_spend__days (key_id, day, spent) "
               "SELECT key_id, CAST(julianday(day) - 2440587.5 AS INTEGER), spent FROM key_spend")
    db.execute("DROP TABLE key_spend")
    db.execute("ALTER TABLE key_spend__days RENAME TO key_spend")
    for statement in REPORT_INDEXES:
        db.execute(statement)


REPORT_INDEXES = (
    "CREATE INDEX idx_usage_created ON usage (created_at, request_id)",
    "CREATE INDEX idx_usage_account_created ON usage (account_id, created_at, request_id, cost)",
    "CREATE INDEX idx_usage_key_created ON usage (key_id, created_at, request_id)",
    "CREATE INDEX idx_sessions_expires ON sessions (expires_at)",
)


def _audit(db: sqlite_utils.Database) -> None:
    """The audit trail of operators' credits and corrections: why, and who made them;
    the sessions' expiry index is 0006's."""
    db.execute("ALTER TABLE ledger ADD COLUMN reason TEXT")
    db.execute("ALTER TABLE ledger ADD COLUMN actor TEXT")


def _refunds(db: sqlite_utils.Database) -> None:
    """A payment's provider reference that its refunds name (Stripe: the payment intent of a
    Checkout Session), and what was refunded of it: paid back, credit taken back, credit owed."""
    db.execute("ALTER TABLE payments ADD COLUMN ref TEXT")
    for column in ("refunded", "taken_back", "owed"):
        db.execute(f"ALTER TABLE payments ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")
    db.execute("CREATE INDEX idx_payments_ref ON payments(provider, ref) WHERE ref IS NOT NULL")


def _money(db: sqlite_utils.Database) -> None:
    """Server tools billed per use (each usage row says which were used and what they
    cost), and what a request cost beyond its account's balance, never charged (no
    balance below zero); the transfers made under an Idempotency-Key (their answer,
    replayed for 24 hours) and the API key that made a transfer (on its 'transfer_out'
    entry: its spend caps count it); each settled hold's charge, so a replayed settle
    returns the first result."""
    db.execute("ALTER TABLE usage ADD COLUMN server_tool_use TEXT")
    db.execute("ALTER TABLE usage ADD COLUMN server_tool_cost INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE usage ADD COLUMN uncharged INTEGER NOT NULL DEFAULT 0")
    db.execute("CREATE TABLE transfer_keys (account_id INTEGER NOT NULL REFERENCES accounts(id), "
               "idempotency_key TEXT NOT NULL, body_hash TEXT NOT NULL, response TEXT NOT NULL, "
               "created_at REAL NOT NULL, PRIMARY KEY (account_id, idempotency_key))")
    db.execute("ALTER TABLE holds ADD COLUMN charged INTEGER")
    db.execute("ALTER TABLE ledger ADD COLUMN key_id INTEGER")


def _changes(db: sqlite_utils.Database) -> None:
    """The change feed (storage/sql/changes.py): a row per change of a key, an account's
    disabled flag or free tier, or a channel override, written with the change; running
    gateways read the rows after the last they saw. AUTOINCREMENT: an id is never used
    twice, even once the newest rows were pruned."""
    db.execute("CREATE TABLE changes (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, "
               "name TEXT NOT NULL, at REAL NOT NULL)")
    db.execute("CREATE INDEX idx_changes_at ON changes (at)")


MIGRATIONS: tuple[tuple[str, Callable[[sqlite_utils.Database], None]], ...] = (
    ("0001_initial", _initial),
    ("0002_hold_owners", _hold_owners),
    ("0003_key_limits", _key_limits),
    ("0004_channels", _channels),
    ("0005_accounts", _accounts),
    ("0006_unix_times", _unix_times),
    ("0008_audit", _audit),
    ("0009_refunds", _refunds),
    ("0010_money", _money),
    ("0011_changes", _changes),
)


def migrate(db: sqlite_utils.Database, wait: float, shown: str, *, create: bool = True,
            upgrade: bool = True) -> list[str]:
    """Apply the migrations not yet recorded, each in its own write transaction
    (waiting up to ``wait`` seconds for the write lock); return the names applied.
    Two processes opening one new database at once apply each migration once.

    SchemaTooNew if the ledger records a migration this version does not know;
    LedgerMissing for a ledger with no schema at all unless ``create``; MigrationNeeded
    for one with some migrations to apply unless ``upgrade`` (``shown``: the ledger's
    location, for those messages)."""
    if not _has_schema(db):
        if not create:
            raise LedgerMissing(f"no ledger at {shown}")
    else:
        recorded = [name for (name,) in db.execute("SELECT name FROM _migrations ORDER BY name").fetchall()]
        known = [name for name, _ in MIGRATIONS]
        unknown = tuple(name for name in recorded if name not in known)
        if unknown:
            raise SchemaTooNew(shown, unknown)
        pending = tuple(name for name in known if name not in recorded)
        if pending and not upgrade:
            raise MigrationNeeded(shown, pending)
    db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    applied = []
    for name, step in MIGRATIONS:
        if _done(db, name):
            continue
        with immediate(db, wait):
            if _done(db, name):  # another process got there first
                continue
            step(db)
            db.execute("INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
                       (name, datetime.now(timezone.utc).isoformat()))
        applied.append(name)
    return applied


def _has_schema(db: sqlite_utils.Database) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_migrations'").fetchone() is not None


def _done(db: sqlite_utils.Database, name: str) -> bool:
    return db.execute("SELECT 1 FROM _migrations WHERE name = ?", (name,)).fetchone() is not None
