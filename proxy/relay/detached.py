"""Work a request hands to the gateway's after-response nursery, so that the client's
disconnect (which cancels the request's handler) does not cancel it: a whole answer the
upstream is already billing the operator for is awaited and charged all the same."""

from __future__ import annotations

from typing import Awaitable, Callable, TypeVar

import trio

from .. import errors
from ..metering.ticket import CLIENT_CLOSED, Ticket
from ..runtime import Gateway

T = TypeVar("T")


async def run_detached(gateway: Gateway, ticket: Ticket, work: Callable[[], Awaitable[T]]) -> T:
    """``work()``'s result (or its exception), run in the after-response nursery while
    the handler waits for it; inline when the gateway has no such nursery. From the
    moment it starts, ``work`` owns the ticket: it closes it, or, if the nursery itself
    is cancelled (the server shutting down), its hold is released here."""
    nursery = gateway.meter.after_response
    if nursery is None:
        return await work()
    done = trio.Event()
    outcome: list = []

    async def run() -> None:
        try:
            outcome.append((True, await work()))
        except Exception as exc:  # handed to the handler, if it still waits (trio.Cancelled is not caught)
            outcome.append((False, exc))
        finally:
            if not ticket.closed:
                await ticket.close(None, CLIENT_CLOSED, error_type="gateway_error")
            done.set()

    ticket.detached = True
    nursery.start_soon(run)
    await done.wait()
    if not outcome:  # (cancelled with the nursery: the server is going down)
        raise errors.GatewayError(503, "The gateway is shutting down; retry", "api_error")
    ok, value = outcome[0]
    if not ok:
        raise value
    return value
