"""Named, ordered schema migrations, each run in a transaction and recorded in ``_migrations``."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable

import sqlite_utils

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


def _money(db: sqlite_utils.Database) -> None:
    """Server tools billed per use (each usage row says which were used and what they
    cost); the transfers made under an Idempotency-Key (their answer, replayed for 24
    hours); each settled hold's charge, so a replayed settle returns the first result."""
    db.execute("ALTER TABLE usage ADD COLUMN server_tool_use TEXT")
    db.execute("ALTER TABLE usage ADD COLUMN server_tool_cost INTEGER NOT NULL DEFAULT 0")
    db.execute("CREATE TABLE transfer_keys (account_id INTEGER NOT NULL REFERENCES accounts(id), "
               "idempotency_key TEXT NOT NULL, body_hash TEXT NOT NULL, response TEXT NOT NULL, "
               "created_at REAL NOT NULL, PRIMARY KEY (account_id, idempotency_key))")
    db.execute("ALTER TABLE holds ADD COLUMN charged INTEGER")


def _uncharged(db: sqlite_utils.Database) -> None:
    """What a request cost beyond its account's balance, never charged (no balance below zero)."""
    db.execute("ALTER TABLE usage ADD COLUMN uncharged INTEGER NOT NULL DEFAULT 0")


def _key_transfers(db: sqlite_utils.Database) -> None:
    """The API key that made a transfer, on its 'transfer_out' entry: its spend caps count it."""
    db.execute("ALTER TABLE ledger ADD COLUMN key_id INTEGER")


MIGRATIONS: tuple[tuple[str, Callable[[sqlite_utils.Database], None]], ...] = (
    ("0001_initial", _initial),
    ("0002_hold_owners", _hold_owners),
    ("0003_key_limits", _key_limits),
    ("0004_channels", _channels),
    ("0005_accounts", _accounts),
    ("0007_money", _money),
    ("0007_money_uncharged", _uncharged),
    ("0007_money_key_transfers", _key_transfers),
)


def migrate(db: sqlite_utils.Database, wait: float) -> list[str]:
    """Apply the migrations not yet recorded, each in its own write transaction
    (waiting up to ``wait`` seconds for the write lock); return the names applied.
    Two processes opening one new database at once apply each migration once."""
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


def _done(db: sqlite_utils.Database, name: str) -> bool:
    return db.execute("SELECT 1 FROM _migrations WHERE name = ?", (name,)).fetchone() is not None
