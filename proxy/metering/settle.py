"""How a finished request's ticket is settled: a whole answer before its body goes out,
a complete stream before its final event, and the one rule for a stream that did not
complete (charge what reached the client, or release)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from .. import errors
from ..protocol.usage import Usage
from .ticket import CLIENT_CLOSED, Ticket
from storage.base import Account, StoreError, StoreUnavailable

if TYPE_CHECKING:
    from ..protocol.stream_filter import AnthropicStreamTap

log = logging.getLogger("cheaplm.metering")


async def settle_answer(ticket: Ticket, usage: Usage, status: int = 200,
                        error_type: str | None = None) -> tuple[int, Account]:
    """Settle a whole (non-streamed) answer before its body goes out. When the charge
    cannot be recorded the answer is not delivered: the client is told to retry, and the
    hold is released (in the background while the ledger is unavailable)."""
    try:
        return await ticket.settle(usage, status, error_type=error_type)
    except StoreError as exc:
        log.error("settling request %s failed: %s", ticket.request_id, exc)
        if isinstance(exc, StoreUnavailable):
            await ticket.close_later(None, 503, False, "ledger_unavailable")
            raise errors.from_store(exc) from None
        raise errors.GatewayError(503, "The charge for this response could not be recorded; retry later",
                                  "api_error") from None


async def settle_stream_end(ticket: Ticket, usage: Usage) -> None:
    """Settle a complete stream before its final event goes out. When the charge cannot
    be recorded the client gets an error event instead of ``message_stop``, and the
    charge is retried in the background (the client has the content)."""
    try:
        await ticket.settle(usage)
    except StoreError as exc:
        log.error("settling request %s failed: %s", ticket.request_id, exc)
        if isinstance(exc, StoreUnavailable):
            await ticket.close_later(usage, 503, True, "ledger_unavailable")
        raise errors.GatewayError(503, "The charge for this response could not be recorded; "
                                       "it is not complete. Retry later.", "api_error") from None


@dataclass(frozen=True)
class StreamEnd:
    """How a stream that did not end in a recorded settlement is closed."""

    charge: str      # "full" (it did complete), "partial" (what was delivered) or "none" (release)
    status: int
    error_type: str | None


def stream_end(saw_start: bool, saw_stop: bool, upstream_error: dict | None, failure: errors.GatewayError | None,
               disconnected: bool, delivered: int) -> StreamEnd:
    """The one rule for an unfinished stream, pure. Only what reached the client is
    charged: the tap may have read past it (a stream cut at ``message_start`` can arrive
    whole in one read)."""
    if saw_stop and upstream_error is None and failure is None and not disconnected:
        return StreamEnd("full", 200, None)
    if upstream_error is not None:  # the upstream's own error event (overloaded mid-stream)
        status, kind = 200, str(upstream_error.get("type", "api_error"))
    elif failure is not None:
        status, kind = failure.status, failure.error_type
    elif disconnected:
        status, kind = CLIENT_CLOSED, "client_disconnected"
    else:
        status, kind = 500, "gateway_error"
    return StreamEnd("partial" if saw_start and delivered else "none", status, kind)


async def settle_unfinished(ticket: Ticket, tap: "AnthropicStreamTap", delivered: int, disconnected: bool,
                            failure: errors.GatewayError | None, answered: bool = True) -> None:
    """Close a stream's ticket that ``settle_stream_end`` did not: charge what it
    delivered, or release. With an after-response nursery, and once the client has its
    answer (``answered``: the stream had started), this runs once the handler has
    returned (the ticket counts as closed from now on, so nothing else closes it); a
    stream refused before it started is closed before its error answer goes out, so
    the client that reads its balance after the error finds nothing held."""
    end = stream_end(tap.saw_message_start, tap.saw_message_stop, tap.error, failure, disconnected, delivered)
    if end.charge == "full":
        usage = tap.usage
    elif end.charge == "partial":
        usage = ticket.partial_usage(tap.usage, delivered)
    else:
        usage = None
    close = partial(ticket.close, usage, end.status, end.charge == "partial", end.error_type)
    nursery = ticket.meter.after_response
    if nursery is None or not answered:
        await close()
        return
    ticket.closed = True
    nursery.start_soon(_close_after_response, close, ticket.request_id)


async def _close_after_response(close, request_id: str) -> None:
    """Runs in the gateway's after-response nursery: a failure is logged, never allowed
    to take the server down with it."""
    try:
        await close()
    except Exception:
        log.exception("settling request %s failed", request_id)
