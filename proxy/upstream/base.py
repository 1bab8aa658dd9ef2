"""The Upstream protocol: what the relay needs from an Anthropic-compatible provider."""

from __future__ import annotations

from dataclasses import dataclass
from typing import AsyncContextManager, AsyncIterator, Mapping, Protocol
from urllib.parse import urlsplit, urlunsplit


@dataclass(frozen=True)
class UpstreamResponse:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


class UpstreamStream(Protocol):
    status: int
    headers: tuple[tuple[str, str], ...]

    def chunks(self) -> AsyncIterator[bytes]:
        """Raw body bytes as they arrive (idle timeout applied between chunks)."""

    async def read(self) -> bytes:
        """The whole (error) body."""


class Upstream(Protocol):
    label: str
    idle_timeout: float  # longest silence allowed in a streamed body

    async def send(self, path: str, body: bytes, headers: Mapping[str, str]) -> UpstreamResponse: ...

    def stream(self, path: str, body: bytes, headers: Mapping[str, str]) -> AsyncContextManager[UpstreamStream]: ...

    async def aclose(self) -> None: ...


# Headers a client may send that the upstream should see unchanged.
FORWARDED_HEADERS = ("anthropic-version", "anthropic-beta")
# Upstream response headers worth passing back to the client.
RETURNED_HEADERS = ("retry-after", "retry-after-ms", "x-should-retry")
DEFAULT_ANTHROPIC_VERSION = "2023-06-01"


def redacted_url(url: str) -> str:
    """An upstream URL fit to show: no user, password, query or fragment."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(unparseable URL)"
    if not parts.scheme:
        return url.split("@")[-1].split("?")[0]
    host = f"[{host}]" if ":" in host else host
    return urlunsplit((parts.scheme, host + port, parts.path, "", ""))
