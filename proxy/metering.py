"""A request's money life: its hold, settled or released exactly once.

Every metered request owns one ``Ticket``. The store call that closes it is shielded
from cancellation (a disconnect must not leave money held), and the ticket counts as
closed only once the store has recorded it. When the store cannot be reached
(``StoreError``: locked by another process, read-only, full), the close is retried in
the background by the gateway's after-response nursery; a hold that still cannot be
closed stays open, owned by this instance, and is charged from its recorded progress
or released when the instance's lease lapses.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING

import trio

from . import errors
from .adaptors.base import Parsed
from .billing import usage_cost
from .money import format_usd
from .outcome import Outcome
from .protocol.usage import Usage
from storage.base import (Account, AmountOutOfRange, InsufficientBalance, KeyRecord, NotFound, SpendCapReached,
                          StoreError, StoreUnavailable, UsageRow)

if TYPE_CHECKING:
    from .gateway import Gateway
    from .limits import Admission
    from .protocol.stream_filter import AnthropicStreamTap

log = logging.getLogger("cheaplm.metering")

CLIENT_CLOSED = 499  # nginx's convention for "client closed the request"

RETRY_PAUSES = (0.5, 1, 2, 4, 8, 15, 30, 30, 30, 30, 60, 60, 60, 60, 60, 60, 60, 60)  # about 10 minutes


class Progress:
    """What a stream has delivered so far (read by the settlement, even after a cancel)."""

    __slots__ = ("tokens",)

    def __init__(self) -> None:
        self.tokens = 0


@dataclass
class Ticket:
    """One request's hold, settled or released exactly once."""

    gateway: "Gateway"
    request_id: str
    key: KeyRecord
    parsed: Parsed
    endpoint: str
    hold_id: int
    started: float
    ttft_ms: float | None = None
    closed: bool = field(default=False)
    held: int = 0  # the hold's amount
    # A stream's reader and what it delivered, for progress checkpoints.
    tap: "AnthropicStreamTap | None" = None
    progress: Progress | None = None
    channel: str | None = None   # the upstream channel that answered, and the attempts it took
    attempts: int = 0
    admission: "Admission | None" = None  # the key's rate-limit slot, when it has limits
    ended: bool = False          # the outcome has been recorded (metrics, log, rate window)

    __hash__ = object.__hash__

    def end(self, row: UsageRow) -> None:
        """The one hook every metered outcome passes, once: the key's rate window learns
        the tokens really used, and the metrics and the request log the outcome."""
        if self.ended:
            return
        self.ended = True
        self.gateway.holds_open -= 1
        if self.admission is not None:
            self.admission.finish(row.input_tokens + row.cache_write_5m + row.cache_write_1h + row.cache_read
                                  + row.output_tokens)
        key = self.key
        self.gateway.record(Outcome(
            row.request_id, self.endpoint, row.status, key.username, key.prefix, row.model, row.stream,
            self.channel, self.attempts, row.error_type, row.partial, row.input_tokens, row.cache_write_5m,
            row.cache_write_1h, row.cache_read, row.output_tokens, row.cost, row.ttft_ms, row.latency_ms))

    @property
    def limit_headers(self) -> list[tuple[bytes, bytes]]:
        """The key's anthropic-ratelimit-* headers for the response (none without limits)."""
        return self.admission.headers if self.admission is not None else []

    def progress_mark(self) -> tuple | None:
        """What a checkpoint would record, or None while nothing is chargeable."""
        tap, progress = self.tap, self.progress
        if tap is None or progress is None or not tap.saw_message_start or progress.tokens == 0:
            return None
        return progress.tokens, tap.usage

    def checkpoint_row(self) -> UsageRow:
        """The partial charge a recovery applies if this process dies now."""
        assert self.tap is not None and self.progress is not None
        usage = self.tap.usage.with_output_at_least(self.progress.tokens)
        return self.row(usage, 500, True, "instance_lost")

    async def cover_real_input(self, usage: Usage) -> None:
        """At ``message_start`` the real prompt size is known: when it costs more than the
        estimate the hold was sized on, grow the hold to cover it, or end the stream here
        (a 402 ``billing_error`` event, nothing delivered, nothing charged) when the
        balance cannot. So concurrent streams never take a balance below zero."""
        prices = self.parsed.model.prices
        needed = usage_cost(replace(usage, output_tokens=0), prices) + usage_cost(
            Usage(output_tokens=self.parsed.max_tokens), prices)
        extra = needed - self.held
        if extra <= 0:
            return
        try:
            await self.gateway.store.extend_hold(self.hold_id, extra)
        except InsufficientBalance as short:
            raise errors.billing(
                f"Insufficient balance: this prompt is {usage.prompt_tokens} tokens, more than estimated, and "
                f"${format_usd(max(short.available, 0))} is available for the ${format_usd(extra)} more it may "
                f"cost. Top up, or lower max_tokens.") from None
        except (StoreUnavailable, SpendCapReached) as exc:
            raise errors.from_store(exc) from None
        self.held = needed

    def row(self, usage: Usage, status: int, partial: bool, error_type: str | None) -> UsageRow:
        return UsageRow(request_id=self.request_id, key_id=self.key.id, model=self.parsed.model.id,
                        endpoint=self.endpoint, stream=self.parsed.stream, status=status,
                        cost=usage_cost(usage, self.parsed.model.prices), partial=partial, error_type=error_type,
                        latency_ms=round((time.perf_counter() - self.started) * 1000, 3),
                        ttft_ms=self.ttft_ms, channel=self.channel, attempts=self.attempts, **usage.as_dict())

    async def settle(self, usage: Usage, status: int = 200, partial: bool = False,
                     error_type: str | None = None) -> tuple[int, Account]:
        """Charge ``usage``; raises StoreError (the ticket stays open) when it cannot be recorded."""
        row = recorded = self.row(usage, status, partial, error_type)
        with trio.CancelScope(shield=True):
            try:
                account = await self.gateway.store.settle(self.hold_id, row)
            except AmountOutOfRange as exc:
                # A charge the ledger refuses (above the bound): never retried; the hold goes.
                log.error("request %s: charge of %s refused (%s); hold released", self.request_id,
                          format_usd(row.cost), exc)
                recorded = self.row(Usage(), status, partial, "charge_refused")
                account = await self.gateway.store.release(self.hold_id, recorded)
            except NotFound:
                # Another instance took this one for dead and recovered the hold.
                log.error("request %s: its hold was recovered by another instance (this one's lease "
                          "lapsed); not charged twice", self.request_id)
                self.closed = True
                self.end(replace(row, cost=0, error_type="instance_lost"))
                raise
        self.closed = True
        self.end(recorded)
        log.debug("request %s key=%s model=%s status=%s cost=%s partial=%s", self.request_id, self.key.prefix,
                  self.parsed.model.id, status, format_usd(row.cost), partial)
        return row.cost, account

    async def release(self, status: int, error_type: str | None) -> None:
        """Release the hold, nothing charged; raises StoreError when it cannot be recorded."""
        row = self.row(Usage(), status, False, error_type)
        with trio.CancelScope(shield=True):
            try:
                await self.gateway.store.release(self.hold_id, row)
            except NotFound:
                log.error("request %s: its hold was already recovered by another instance", self.request_id)
        self.closed = True
        self.end(row)
        log.debug("request %s key=%s model=%s status=%s released", self.request_id, self.key.prefix,
                  self.parsed.model.id, status)

    async def close(self, usage: Usage | None, status: int, partial: bool = False,
                    error_type: str | None = None) -> None:
        """Settle ``usage`` (release when None), retrying in the background if the store
        cannot record it now. Never raises StoreError."""
        try:
            if usage is None:
                await self.release(status, error_type)
            else:
                await self.settle(usage, status, partial, error_type)
        except StoreUnavailable as exc:
            log.warning("request %s: the ledger is unavailable (%s); retrying in the background",
                        self.request_id, exc)
            if usage is None:
                self.release_later(status, error_type)
            else:
                self.settle_later(usage, status, partial, error_type)
        except StoreError as exc:
            log.error("request %s: closing its hold failed: %s", self.request_id, exc)
            self.closed = True
            self.end(self.row(usage or Usage(), status, partial, error_type or "ledger_error"))

    def settle_later(self, usage: Usage, status: int, partial: bool, error_type: str | None) -> None:
        """The store failed to record this settlement: retry it in the background."""
        self._later(lambda: self.settle(usage, status, partial, error_type), self.row(usage, status, partial,
                                                                                    error_type))

    def release_later(self, status: int, error_type: str | None) -> None:
        self._later(lambda: self.release(status, error_type), self.row(Usage(), status, False, error_type))

    def _later(self, close, row: UsageRow) -> None:
        self.closed = True  # nothing else closes it from here on
        self.end(row)  # the request is over for the client and its key, whatever the ledger says
        nursery = self.gateway.after_response
        if nursery is None:
            log.error("request %s: hold %s left open (no background nursery to retry in)", self.request_id,
                      self.hold_id)
            return
        nursery.start_soon(_retry, close, self.request_id, self.hold_id)


async def _retry(close, request_id: str, hold_id: int) -> None:
    for pause in RETRY_PAUSES:
        await trio.sleep(pause)
        try:
            await close()
            log.info("request %s: its hold was closed after the store came back", request_id)
            return
        except StoreUnavailable:
            continue
        except (StoreError, NotFound):
            break
    log.error("request %s: hold %s left open; it is recovered (charged from its recorded progress, or "
              "released) when this instance's lease lapses", request_id, hold_id)


async def settle_answer(ticket: Ticket, usage: Usage) -> tuple[int, Account]:
    """Settle a whole (non-streamed) answer before its body goes out. When the charge
    cannot be recorded the answer is not delivered: the client is told to retry, and the
    hold is released (in the background while the ledger is unavailable)."""
    try:
        return await ticket.settle(usage)
    except StoreError as exc:
        log.error("settling request %s failed: %s", ticket.request_id, exc)
        if isinstance(exc, StoreUnavailable):
            ticket.release_later(503, "ledger_unavailable")
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
            ticket.settle_later(usage, 503, partial=True, error_type="ledger_unavailable")
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
                            failure: errors.GatewayError | None) -> None:
    """Close a stream's ticket that ``settle_stream_end`` did not: charge what it
    delivered, or release. With an after-response nursery this runs once the handler
    has returned (the ticket counts as closed from now on, so nothing else closes it)."""
    end = stream_end(tap.saw_message_start, tap.saw_message_stop, tap.error, failure, disconnected, delivered)
    if end.charge == "full":
        usage = tap.usage
    elif end.charge == "partial":
        usage = tap.usage.with_output_at_least(delivered)
    else:
        usage = None
    close = partial(ticket.close, usage, end.status, end.charge == "partial", end.error_type)
    nursery = ticket.gateway.after_response
    if nursery is None:
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
