"""The secret that seals thinking into Responses reasoning items, when the config gives none.

``responses_secret`` (``CHEAPLM_RESPONSES_SECRET``) wins. Without it the gateway keeps a
random secret in a file beside its SQLite ledger (``<ledger>.responses-secret``, mode
0600, written whole then linked into place, so concurrent starts agree on one), so reasoning items
keep opening across restarts and between gateways sharing that ledger. A ledger with no
file (in memory, PostgreSQL) gets a random secret for this gateway only, and a warning:
set ``responses_secret`` on every node there. ``serve --workers`` reads or makes the secret
once, in its supervisor, and hands it to every worker.
"""

from __future__ import annotations

import logging
import os
import secrets
import tempfile

from .config import Config, ConfigError
from storage.errors import StoreConfigError
from storage.location import parse_location

log = logging.getLogger("cheaplm")
SUFFIX = ".responses-secret"
_BYTES = 32


def secret_file(db_path: str) -> str | None:
    try:
        ledger = parse_location(db_path).file
    except StoreConfigError:
        return None
    return ledger + SUFFIX if ledger else None


def load_reasoning_secret(config: Config) -> bytes:
    if config.responses_secret:
        return config.responses_secret.encode()
    path = secret_file(config.database_url)
    if path is not None and os.path.exists(path):
        return _read(path)
    if path is None:
        log.warning("responses_secret is not set and the ledger has no file beside which to keep one: reasoning "
                    "items of /v1/responses open only on this gateway until it stops (set responses_secret on "
                    "every node)")
        return secrets.token_hex(_BYTES).encode()  # (text, like the file's: serve --workers hands it on)
    text = secrets.token_hex(_BYTES)
    fd, temporary = tempfile.mkstemp(prefix=os.path.basename(path) + ".", dir=os.path.dirname(path) or ".")
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:  # (mkstemp makes it 0600)
            fh.write(text + "\n")
        os.link(temporary, path)
        log.info("responses_secret not set: made one in %s (keep it with the ledger)", path)
        return text.encode()
    except FileExistsError:
        return _read(path)
    finally:
        os.unlink(temporary)


def _read(path: str) -> bytes:
    with open(path, encoding="ascii") as fh:
        text = fh.read().strip()
    if len(text) < 2 * _BYTES:
        raise ConfigError(f"{path}: not a responses secret (expected {2 * _BYTES} hex digits); remove it to make a "
                         "new one (reasoning items sealed under the old one stop opening)")
    return text.encode()
