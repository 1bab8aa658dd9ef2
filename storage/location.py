"""Where a ledger is: a bare path or a URL, parsed into the backend that serves it and
what that backend opens.

- a bare path (``cheaplm.db``, ``/var/lib/cheaplm/ledger.db``, ``:memory:``): SQLite,
  as ``db_path``, ``--db`` and ``$CHEAPLM_DB`` have always meant;
- ``sqlite:///abs/path.db``: SQLite, an absolute path (as in a file URL; the four-slash
  ``sqlite:////abs/path.db`` of SQLAlchemy names the same file);
- ``sqlite://relative/path.db``: SQLite, a path relative to the working directory;
  ``sqlite://:memory:``, a throwaway in-memory ledger;
- ``postgresql://...`` (or ``postgres://``): PostgreSQL, the URL as given (libpq's).

Query strings and fragments are refused on SQLite URLs rather than ignored: an option
that silently did nothing would be a worse surprise than one line saying so.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from .errors import StoreConfigError

MEMORY = ":memory:"
SCHEME_ALIASES = {"postgres": "postgresql"}  # one backend, two spellings (libpq takes both)
_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")


@dataclass(frozen=True)
class Location:
    """``backend``: the name the openers' table knows (``sqlite``, ``postgresql``);
    ``target``: what that backend opens (SQLite: a file path or ``:memory:``; others:
    the URL as given, which may hold a password: never print it, print ``shown``)."""

    backend: str
    target: str
    shown: str

    @property
    def file(self) -> str | None:
        """The SQLite file this location names, or None (in memory, or another backend)."""
        return self.target if self.backend == "sqlite" and self.target != MEMORY else None


def parse_location(text: str) -> Location:
    """The location ``text`` names; StoreConfigError (one line, no password) if it is
    not one this parser understands. Whether a backend is built in is the openers'
    table's business (storage/__init__.py), not this function's."""
    match = _URL.match(text)
    if match is None:
        if not text:
            raise StoreConfigError("the ledger location is empty (give a file path or a sqlite:/// URL)")
        return _sqlite(text)
    scheme = match["scheme"].lower()
    scheme = SCHEME_ALIASES.get(scheme, scheme)
    if scheme != "sqlite":
        return Location(scheme, text, _without_password(text, scheme))
    return _sqlite(_sqlite_path(text))


def _sqlite(path: str) -> Location:
    shown = path if path == MEMORY else os.path.abspath(path)
    return Location("sqlite", path, shown)


def _sqlite_path(url: str) -> str:
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise StoreConfigError(f"the SQLite URL {url!r} has options (?... or #...), which are not supported: "
                               "give only the path, sqlite:///abs/path.db")
    path = parts.netloc + parts.path  # sqlite://rel/x.db -> rel/x.db; sqlite:///abs/x.db -> /abs/x.db
    if path.startswith("//"):
        path = "/" + path.lstrip("/")
    if not path or path == "/":
        raise StoreConfigError(f"the SQLite URL {url!r} names no file: sqlite:///abs/path.db, or "
                               "sqlite://relative/path.db")
    return path


def _without_password(url: str, scheme: str) -> str:
    """The URL for messages: scheme, host, port and database, never the user's password."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return f"{scheme}://..."
    user = f"{parts.username}@" if parts.username else ""
    return f"{scheme}://{user}{host}{port}{parts.path}"
