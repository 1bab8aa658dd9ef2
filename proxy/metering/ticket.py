"""A request's money life: its hold, settled or released exactly once.

Every metered request owns one ``Ticket``, opened by ``open_ticket`` (the key's rate
admission, then the hold). The store call that closes it is shielded from cancellation
(a disconnect must not leave money held), and the ticket counts as closed only once the
store has recorded it. When the store cannot record it, the close is retried in the
background by the meter's after-response nursery for as long as the process lives (a
charge that keeps failing hard is turned into a release), so no hold outlives its
request by more than a few retry intervals while its process is alive; a process that
dies leaves its holds to the lease recovery (charged from recorded progress, or
released). The settlement of a finished request is in settle.py.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Awaitable, Callable

import trio

from .. import errors
from ..adaptors.base import Parsed
from ..billing import server_tools_cost, server_tools_hold, usage_cost
from ..money import format_usd
from ..outcome import Outcome
from ..protocol.usage import Usage
from .meter import GIVE_UP_SETTLING_AFTER, RECLAIM_EVERY, RETRY_PAUSES, Meter
from storage.base import (Account, AmountOutOfRange, InsufficientBalance, KeyRecord, NotFound, SpendCapReached,
                          StoreError, StoreUnavailable, UsageRow)

if TYPE_CHECKING:
    from ..limits.base import Admission
    from ..protocol.stream_filter import AnthropicStreamTap

log = logging.getLogger("cheaplm.metering")

CLIENT_CLOSED = 499  # nginx's convention for "client closed the request"


class Progress:
    """What a stream has delivered so far (read by the settlement, even after a cancel)."""

    __slots__ = ("tokens",)

    def __init__(self) -> None:
        self.tokens = 0


async def open_ticket(meter: Meter, key: KeyRecord, parsed: Parsed, endpoint: str, request_id: str,
                      started: float, estimate: int, amount: int,
                      exact: Callable[[], Awaitable[int]] | None = None) -> "Ticket":
    """The key's rate limits (a 429 here: nothing held, no upstream contact), then the
    hold, which the key's spend caps bound with the balance. When ``amount`` (the worst
    case) is more than the balance or the caps allow, ``exact()`` sizes the hold on the
    real prompt and that is tried instead. A request that gets no ticket gives its
    admission back: it counts for nothing."""
    admission = await meter.limiter.admit(key.id, key.limits, estimate + parsed.max_tokens)
    try:
        try:
            hold_id = await meter.store.place_hold(key.account_id, amount, request_id, key.id)
        except (InsufficientBalance, SpendCapReached):
            if exact is None:
                raise
            meter.counted_holds += 1
            amount = await exact()
            hold_id = await meter.store.place_hold(key.account_id, amount, request_id, key.id)
    except BaseException as exc:
        if admission is not None:
            with trio.CancelScope(shield=True):
                await admission.cancel()
        if isinstance(exc, InsufficientBalance):
            raise errors.billing(
                f"Insufficient balance: this request may cost up to ${format_usd(amount)} and "
                f"${format_usd(max(exc.available, 0))} is available. Top up your balance.") from None
        raise
    meter.holds_open += 1  # (until the ticket's outcome is recorded: Ticket.end)
    return Ticket(meter, request_id, key, parsed, endpoint, hold_id, started, held=amount, admission=admission)


@dataclass
class Ticket:
    """One request's hold, settled or released exactly once."""

    meter: Meter
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
    detached: bool = False       # its upstream call runs in the after-response nursery, which closes it
    lease_lost: bool = False     # its hold was recovered by another instance: stop relaying
    relaying: trio.CancelScope | None = None  # the stream's reading scope, cancelled by stop()

    __hash__ = object.__hash__

    def served(self, channel: str | None, attempts: int) -> None:
        """The upstream channel that answered, after ``attempts`` tries."""
        self.channel, self.attempts = channel or None, attempts

    def tried(self, attempts: int) -> None:
        """No channel served: the usage row still says how many were tried."""
        self.attempts = self.attempts or attempts

    def first_output(self) -> None:
        if self.ttft_ms is None:
            self.ttft_ms = round((time.perf_counter() - self.started) * 1000, 3)

    def watch(self, tap: "AnthropicStreamTap", progress: Progress) -> None:
        """A stream starts: its progress is checkpointed while it is relayed."""
        self.tap, self.progress = tap, progress
        self.meter.in_flight.add(self)

    def unwatch(self) -> None:
        self.meter.in_flight.discard(self)

    def stop(self) -> None:
        """This instance lost its lease: the stream stops at once (its pump raises lease_error)."""
        self.lease_lost = True
        if self.relaying is not None:
            self.relaying.cancel()

    async def may_relay(self) -> None:
        """Before output goes to the client: the hold must still be this instance's (its
        lease confirmed when it may have lapsed), else the stream stops (a 503 error event)."""
        lease = self.meter.lease
        if not self.lease_lost and lease is not None and not lease.valid() and not await lease.confirm():
            self.lease_lost = True
        if self.lease_lost:
            raise errors.GatewayError(503, "This gateway instance was paused past its lease and its requests were "
                                           "taken over; the stream is stopped. Retry.", "api_error")

    async def end(self, row: UsageRow) -> None:
        """The one hook every metered outcome passes, once: the key's rate window learns
        the tokens really used, and the metrics and the request log the outcome."""
        if self.ended:
            return
        self.ended = True
        self.meter.holds_open -= 1
        if self.admission is not None:
            with trio.CancelScope(shield=True):
                await self.admission.finish(row.input_tokens + row.cache_write_5m + row.cache_write_1h
                                            + row.cache_read + row.output_tokens)
        key = self.key
        self.meter.record(Outcome(
            row.request_id, self.endpoint, row.status, key.username, key.prefix, row.model, row.stream,
            self.channel, self.attempts, row.error_type, row.partial, row.input_tokens, row.cache_write_5m,
            row.cache_write_1h, row.cache_read, row.output_tokens, row.cost, row.ttft_ms, row.latency_ms,
            row.server_tool_use))

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
        return self.row(self.partial_usage(self.tap.usage, self.progress.tokens), 500, True, "instance_lost")

    def partial_usage(self, usage: Usage, delivered: int) -> Usage:
        """What a stream cut short is charged: the output that reached the client (the
        upstream's own figure when higher), never more than the request's max_tokens."""
        output = min(max(usage.output_tokens, delivered), self.parsed.max_tokens)
        return replace(usage, output_tokens=output)

    async def cover_real_input(self, usage: Usage) -> None:
        """At ``message_start`` the real prompt size is known: when it costs more than the
        estimate the hold was sized on, grow the hold to cover it, or end the stream here
        (a 402 ``billing_error`` event, nothing delivered, nothing charged) when the
        balance cannot. So concurrent streams never take a balance below zero."""
        prices = self.parsed.model.prices
        needed = usage_cost(replace(usage, output_tokens=0, server_tools=()), prices) + usage_cost(
            Usage(output_tokens=self.parsed.max_tokens), prices) + server_tools_hold(self.parsed.body, prices)
        extra = needed - self.held
        if extra <= 0:
            return
        try:
            await self.meter.store.extend_hold(self.hold_id, extra)
        except InsufficientBalance as short:
            raise errors.billing(
                f"Insufficient balance: this prompt is {usage.prompt_tokens} tokens, more than estimated, and "
                f"${format_usd(max(short.available, 0))} is available for the ${format_usd(extra)} more it may "
                f"cost. Top up your balance.") from None
        except (StoreUnavailable, SpendCapReached) as exc:
            raise errors.from_store(exc) from None
        self.held = needed

    def row(self, usage: Usage, status: int, partial: bool, error_type: str | None) -> UsageRow:
        """The usage row of this request; a partial charge is an estimate, never above the hold."""
        cost = usage_cost(usage, self.parsed.model.prices)
        if partial:
            cost = min(cost, self.held)
        return UsageRow(request_id=self.request_id, key_id=self.key.id, model=self.parsed.model.id,
                        endpoint=self.endpoint, stream=self.parsed.stream, status=status,
                        cost=cost, partial=partial, error_type=error_type,
                        latency_ms=round((time.perf_counter() - self.started) * 1000, 3),
                        ttft_ms=self.ttft_ms, channel=self.channel, attempts=self.attempts,
                        server_tool_use=usage.server_tools_json(),
                        server_tool_cost=min(server_tools_cost(usage, self.parsed.model.prices), cost),
                        **usage.as_dict())

    async def settle(self, usage: Usage, status: int = 200, partial: bool = False,
                     error_type: str | None = None) -> tuple[int, Account]:
        """Charge ``usage``; raises StoreError (the ticket stays open) when it cannot be recorded."""
        row = recorded = self.row(usage, status, partial, error_type)
        with trio.CancelScope(shield=True):
            try:
                account = await self.meter.store.settle(self.hold_id, row)
            except AmountOutOfRange as exc:
                # A charge the ledger refuses (above the bound): never retried; the hold goes.
                log.error("request %s: charge of %s refused (%s); hold released", self.request_id,
                          format_usd(row.cost), exc)
                recorded = self.row(Usage(), status, partial, "charge_refused")
                account = await self.meter.store.release(self.hold_id, recorded)
            except NotFound:
                # Another instance took this one for dead and recovered the hold: it charged the
                # last checkpoint; what the client received beyond it is charged here.
                late = await self.meter.store.charge_recovered(self.hold_id, row) if row.cost else 0
                log.error("request %s: its hold was recovered by another instance (this one's lease "
                          "lapsed); %s more charged for what the client received", self.request_id,
                          format_usd(late))
                self.closed = True
                await self.end(replace(row, cost=late, error_type="instance_lost"))
                raise
        self.closed = True
        await self.end(recorded)
        if log.isEnabledFor(logging.DEBUG):  # (format_usd is not free: not on every request for nothing)
            log.debug("request %s key=%s model=%s status=%s cost=%s partial=%s", self.request_id, self.key.prefix,
                      self.parsed.model.id, status, format_usd(row.cost), partial)
        return row.cost, account

    async def release(self, status: int, error_type: str | None) -> None:
        """Release the hold, nothing charged; raises StoreError when it cannot be recorded."""
        row = self.row(Usage(), status, False, error_type)
        with trio.CancelScope(shield=True):
            try:
                await self.meter.store.release(self.hold_id, row)
            except NotFound:
                log.error("request %s: its hold was already recovered by another instance", self.request_id)
        self.closed = True
        await self.end(row)
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
        except NotFound:
            return  # recovered by another instance (logged, and the rest charged, by settle)
        except StoreError as exc:
            if isinstance(exc, StoreUnavailable):
                log.warning("request %s: the ledger is unavailable (%s); retrying in the background",
                            self.request_id, exc)
            else:
                log.error("request %s: closing its hold failed (%s); retrying in the background",
                          self.request_id, exc)
            await self.close_later(usage, status, partial, error_type)

    async def close_later(self, usage: Usage | None, status: int, partial: bool, error_type: str | None) -> None:
        """The store could not record this close now: the request is over for the client
        and its key whatever the ledger says, and the hold is closed in the background."""
        self.closed = True  # nothing else closes it from here on
        await self.end(self.row(usage or Usage(), status, partial, error_type))
        nursery = self.meter.after_response
        if nursery is None:
            log.error("request %s: hold %s left open (no background nursery to retry in); it is recovered "
                      "when this instance's lease lapses", self.request_id, self.hold_id)
            return
        self.meter.closes_pending += 1
        nursery.start_soon(self._retry, usage, status, partial, error_type)

    async def _retry(self, usage: Usage | None, status: int, partial: bool, error_type: str | None) -> None:
        """Try the close again after each pause of RETRY_PAUSES, then every RECLAIM_EVERY
        seconds for as long as the process lives. A charge the store refuses for another
        reason than unavailability (a corrupt page, a full disk) is given up after a few
        tries and the hold released instead, so the balance it reserves comes back."""
        hard = 0
        try:
            for attempt in itertools.count():
                await trio.sleep(RETRY_PAUSES[attempt] if attempt < len(RETRY_PAUSES) else RECLAIM_EVERY)
                try:
                    if usage is None:
                        await self.release(status, error_type)
                    else:
                        await self.settle(usage, status, partial, error_type)
                    log.info("request %s: its hold was closed after %d retries", self.request_id, attempt + 1)
                    return
                except NotFound:
                    return  # recovered by another instance meanwhile (logged by settle)
                except StoreUnavailable:
                    continue
                except StoreError as exc:
                    hard += 1
                    if usage is not None and hard >= GIVE_UP_SETTLING_AFTER:
                        log.error("request %s: its charge of %s could not be recorded (%s); its hold is "
                                  "released instead", self.request_id, format_usd(usage_cost(
                                      usage, self.parsed.model.prices)), exc)
                        usage, partial, error_type = None, False, "ledger_error"
        finally:
            self.meter.closes_pending -= 1
