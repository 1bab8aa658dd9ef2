"""StreamDrain: the relay's streams in flight, ended cleanly before a graceful shutdown's
grace runs out.

On SIGTERM hypercorn stops accepting connections and gives the requests in flight
``shutdown_grace`` seconds; then it cancels them, and a stream still going would end
as a truncated chunked body, which a client reads as a broken connection. Instead,
``end_by(deadline)`` (called when the signal arrives, with a deadline a little before
hypercorn's) cancels each stream's relay at that deadline, and the relay ends the
stream with an error event in the endpoint's shape (``shutting_down``), settles what
was delivered, and finishes the chunked body.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator

import trio

from .. import errors


class StreamDrain:
    def __init__(self) -> None:
        self._scopes: set[trio.CancelScope] = set()
        self.deadline = math.inf

    @contextmanager
    def stream(self) -> Iterator[trio.CancelScope]:
        """A scope for one stream's relay, cancelled at the shutdown deadline (if any)."""
        with trio.CancelScope(deadline=self.deadline) as scope:
            self._scopes.add(scope)
            try:
                yield scope
            finally:
                self._scopes.discard(scope)

    @property
    def shutting_down(self) -> bool:
        """A graceful shutdown has begun (readiness answers 503 from then on)."""
        return self.deadline < math.inf

    def end_by(self, deadline: float) -> None:
        """Every stream, in flight or started from now on, ends by ``deadline``."""
        self.deadline = min(self.deadline, deadline)
        for scope in self._scopes:
            scope.deadline = min(scope.deadline, self.deadline)


def shutting_down() -> errors.GatewayError:
    return errors.GatewayError(503, "The gateway is shutting down: this stream ended early; retry the request",
                               "overloaded_error")
