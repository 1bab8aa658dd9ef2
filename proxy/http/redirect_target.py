"""same_site_path(target): where a redirect after login may go. Only a path on this
site: printable ASCII without spaces or backslashes, starting with one "/" (not "//"),
no scheme or host. Browsers drop tabs and newlines from a URL and read "\\" as "/", so
"/\\t/evil.example" is "//evil.example" to them; and a control character in a header
is an error (a 500) in the server."""

from __future__ import annotations

from urllib.parse import urlsplit


def same_site_path(target: str) -> str | None:
    """``target`` when it is a path on this site; None otherwise."""
    if not target.startswith("/") or target.startswith("//"):
        return None
    if any(not "\x21" <= c <= "\x7e" or c == "\\" for c in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target
