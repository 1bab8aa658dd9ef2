"""Who acts: an admin or an operator behind each change the library makes for someone
else, written in the ledger with the credits it makes and logged (logger
``cheaplm.admin``) for every admin action. Never a key or a password: a name and how it
proved itself."""

from __future__ import annotations

import getpass
import logging
from dataclasses import dataclass

from .checks import shown

log = logging.getLogger("cheaplm.admin")


@dataclass(frozen=True)
class Actor:
    """``via``: "cli" (an operator at the command line; ``name`` their OS user), "web"
    (an admin's session) or "key" (an admin's unrestricted API key)."""

    name: str
    via: str

    def __str__(self) -> str:
        return f"{self.via}:{self.name}"

    @property
    def username(self) -> str | None:
        """The account acting, when it is one (not an operator at the command line)."""
        return None if self.via == "cli" else self.name


def operator() -> Actor:
    """The operator running the CLI."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = "unknown"
    return Actor(name or "unknown", "cli")


def record(action: str, actor: Actor | None, **fields: object) -> None:
    """One log line per admin action: what, on what, by whom (values escaped)."""
    details = " ".join(f"{name}={shown(str(value))!r}" for name, value in fields.items() if value is not None)
    log.info("admin %s by %s%s", action, shown(str(actor or "library")), f" {details}" if details else "")
