"""The Upstream protocol: what the relay needs from an Anthropic-compatible provider."""

from __future__ import annotations

from dataclasses import dataclass
from typing import AsyncContextManager, AsyncIterator, Mapping, Protocol


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
