"""The Upstream protocol: what the relay needs from an Anthropic-compatible provider,
and the request it hands over.

The relay talks to one ``Upstream`` whether it is one channel or, later, a router over
several: each channel names models its own way, so the request carries the catalog
model and an encoder, and the channel sets the model id when it sends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import AsyncContextManager, AsyncIterator, Callable, Mapping, Protocol
from urllib.parse import urlsplit, urlunsplit

from ..catalog import Model


@dataclass
class UpstreamResponse:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    channel: str = ""   # the channel that answered, and the attempts it took to get here
    attempts: int = 1


@dataclass
class UpstreamRequest:
    """One request for the upstream. ``encode(model_id)`` gives the body naming that
    model; bodies are encoded once per id (the relay encodes the catalog's id before
    placing the hold, so a body that cannot be written back is a 400 with nothing held,
    and a channel using the same id reuses those bytes)."""

    path: str
    model: Model
    headers: Mapping[str, str]  # the client's, lower-cased; a channel forwards only what it should
    encode: Callable[[str], bytes]
    payload: dict | None = field(default=None, repr=False)  # the body as parsed (routing reads its prefix)
    affinity: str | None = None  # the prompt prefix the router matched, once it has looked
    attempts: int = 0            # requests sent upstream for it so far (each channel tried counts)
    _bodies: dict[str, bytes] = field(default_factory=dict, repr=False)

    def body(self, model_id: str | None = None) -> bytes:
        """The body naming ``model_id`` (default: the catalog's upstream id)."""
        model_id = model_id or self.model.upstream_id
        body = self._bodies.get(model_id)
        if body is None:
            body = self._bodies[model_id] = self.encode(model_id)
        return body


class UpstreamStream(Protocol):
    status: int
    headers: tuple[tuple[str, str], ...]
    channel: str
    attempts: int

    def chunks(self) -> AsyncIterator[bytes]:
        """Raw body bytes as they arrive (idle timeout applied between chunks)."""

    async def read(self) -> bytes:
        """The whole (error) body."""


class Upstream(Protocol):
    """What the relay talks to: always a router over channels (one channel for a single
    ``[upstream]``), each channel an HTTP transport to one provider."""

    label: str
    idle_timeout: float  # longest silence allowed in a streamed body
    observe: Callable[[str, str], None]  # told (channel, outcome) of every attempt: the metrics

    def describe(self, now: float) -> list[dict]:
        """Each channel as an operator sees it (/health, ``cheaplm upstream list``): never its key."""

    async def send(self, request: UpstreamRequest) -> UpstreamResponse: ...

    def stream(self, request: UpstreamRequest) -> AsyncContextManager[UpstreamStream]: ...

    async def aclose(self) -> None: ...


# Headers a client may send that the upstream should see unchanged.
FORWARDED_HEADERS = ("anthropic-version", "anthropic-beta")
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
