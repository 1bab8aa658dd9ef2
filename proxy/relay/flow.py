"""The metered request flow shared by every client protocol.

read body -> authenticate -> adaptor parses and validates -> restrictions ->
hold -> upstream (whole or streamed) -> settle from real usage (or release).

Every hold is owned by a ``Ticket`` that settles or releases it exactly once,
shielded from cancellation, so a disconnect, an upstream failure or a bug never
leaves money held. The client's disconnect cancels the upstream request at once.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import aclosing
from typing import Callable, Protocol, TypeVar

import trio

from .. import errors
from ..adaptors.base import Adaptor, Parsed, RequestRules, StreamRenderer
from ..catalog import Model
from .exchange import Exchange
from .account_rates import AccountRates
from .detached import run_detached
from .sizing import exact_hold, worst_case
from ..auth import check_request
from ..billing import estimate_input_tokens
from ..runtime import Gateway
from ..ids import new_request_id
from ..metering.settle import settle_answer, settle_stream_end, settle_unfinished
from ..metering.ticket import CLIENT_CLOSED, Progress, Ticket, open_ticket
from ..money import format_usd
from ..outcome import Outcome
from ..protocol.sse import event_name
from ..protocol.stream_filter import AnthropicStreamTap
from ..protocol.thinking import TurnRecorder, disable_thinking, lookup_ids, restore, thinking_enabled, turn_from_message
from ..protocol.usage import Usage
from ..upstream.base import UpstreamRequest
from ..upstream.status import upstream_error
from .drain import StreamDrain, shutting_down
from storage.base import KeyRecord, StoreError

log = logging.getLogger("cheaplm.relay")


class _Checked(Protocol):
    """What checked_request needs of a parsed body."""

    @property
    def model(self) -> Model: ...

    @property
    def stream(self) -> bool: ...


P = TypeVar("P", bound=_Checked)


async def read_body(gateway: Gateway, ex: Exchange) -> bytes:
    config = gateway.config
    return await ex.read_body(config.max_body_bytes, config.body_timeout, config.body_grace, config.body_min_rate)


async def handle(gateway: Gateway, ex: Exchange, adaptor: Adaptor, upstream_path: str, rates: AccountRates,
                 drain: StreamDrain) -> None:
    request_id = new_request_id()
    started = time.perf_counter()
    known = Known()
    try:
        ticket, request = await _admit(gateway, ex, adaptor, upstream_path, request_id, started, known, rates)
    except trio.BrokenResourceError:  # the client left while sending its body
        _record_refusal(gateway, adaptor, request_id, started, known,
                        errors.GatewayError(CLIENT_CLOSED, "client disconnected", "client_disconnected"))
        return
    except (StoreError, errors.GatewayError) as exc:  # (a hold the balance cannot cover was worded in _admit)
        error = errors.from_store(exc) if isinstance(exc, StoreError) else exc
        _record_refusal(gateway, adaptor, request_id, started, known, error)
        await _answer_error(ex, adaptor, error, request_id)
        return
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ex.watch_disconnect, nursery.cancel_scope)
            try:
                if ticket.parsed.stream:
                    await _relay_stream(gateway, ex, adaptor, ticket, request, drain)
                else:
                    await _relay_whole(gateway, ex, adaptor, ticket, request)
            except errors.GatewayError as error:
                if not ex.disconnected:
                    await _answer_error(ex, adaptor, error, request_id)
            finally:
                nursery.cancel_scope.cancel()
    finally:
        if not ticket.closed and not ticket.detached:
            await ticket.close(None, CLIENT_CLOSED if ex.disconnected else 500, error_type="gateway_error")


class Known:
    """What is known of a request refused before its hold: its key and its parsed body
    (which has ``model`` and ``stream``), if that far."""

    __slots__ = ("key", "parsed")

    def __init__(self) -> None:
        self.key: KeyRecord | None = None
        self.parsed = None


async def checked_request(gateway: Gateway, ex: Exchange, parse: Callable[[bytes, RequestRules], P],
                          known: Known) -> tuple[KeyRecord, P]:
    """The first steps of every keyed route that forwards a body (the metered ones, and
    count_tokens): the key and the restrictions that need no body first (nothing is read
    for a request refused anyway), the body, ``parse``d, and the key's restrictions on
    its model and streaming. ``known`` learns each as it is had. Raises the refusal."""
    known.key = key = await gateway.authorize(ex.headers, ex.peer)
    raw = await read_body(gateway, ex)
    known.parsed = parsed = parse(raw, gateway.rules)
    check_request(key, parsed.model, parsed.stream)
    return key, parsed


async def _admit(gateway: Gateway, ex: Exchange, adaptor: Adaptor, upstream_path: str, request_id: str,
                 started: float, known: Known, rates: AccountRates) -> tuple[Ticket, UpstreamRequest]:
    """Everything before the upstream: the checked request (above), then the hold.
    Raises the refusal."""
    key, parsed = await checked_request(gateway, ex, adaptor.parse, known)
    parsed.pass_thinking = key.pass_thinking if key.pass_thinking is not None else gateway.config.pass_thinking
    await _restore_thinking(gateway, key, parsed, request_id)
    request = UpstreamRequest(upstream_path, parsed.model, ex.headers, parsed.encoded, parsed.body)
    request.body()  # encoded now: a body that cannot be written back is a 400, nothing held
    estimate = estimate_input_tokens(parsed.body)
    free_tier = await rates.admit_free_tier(key)
    try:
        ticket = await open_ticket(gateway.meter, key, parsed, adaptor.endpoint, request_id, started, estimate,
                                   worst_case(parsed, estimate), exact_hold(gateway, parsed, ex.headers))
    except BaseException:
        if free_tier:  # refused before the upstream: it counts for nothing
            with trio.CancelScope(shield=True):
                await rates.give_back_free_tier(key)
        raise
    if parsed.notes and log.isEnabledFor(logging.DEBUG):
        log.debug("request %s: %s", request_id, ", ".join(f"{k.decode()}={v.decode()}" for k, v in parsed.notes))
    return ticket, request


def _record_refusal(gateway: Gateway, adaptor: Adaptor, request_id: str, started: float, known: Known,
                    error: errors.GatewayError) -> None:
    key, parsed = known.key, known.parsed
    gateway.record(Outcome(
        request_id, adaptor.endpoint, error.status, key.username if key else None, key.prefix if key else None,
        parsed.model.id if parsed else None, parsed.stream if parsed else False, error_type=error.error_type,
        duration_ms=round((time.perf_counter() - started) * 1000, 3)))


async def _restore_thinking(gateway: Gateway, key: KeyRecord, parsed: Parsed, request_id: str) -> None:
    """A tool loop with thinking enabled whose assistant turns lack the thinking blocks
    the gateway removed (a filtered stream, an OpenAI client): put them back, byte for
    byte, from this key's memory. When they are gone (a restart, evicted) the request is
    served without thinking rather than refused by the upstream."""
    ids = lookup_ids(parsed.body)
    if not ids:
        return
    found = await gateway.thinking.recall(key.id, ids)
    result = restore(parsed.body, found.get)
    if result.status == "restored":
        parsed.body = result.body
        parsed.changed()
    elif result.status == "missing" and parsed.body["thinking"].get("type") == "enabled":
        # (adaptive thinking may skip a block, so the upstream does not require one)
        log.info("request %s: thinking blocks of the tool loop are not available (%s); served without "
                 "thinking", request_id, result.reason)
        parsed.body = disable_thinking(parsed.body)
        parsed.changed()
        parsed.notes.append((b"x-cheaplm-thinking", b"disabled"))


def _needs_recording(adaptor: Adaptor, parsed: Parsed, filtered: bool) -> bool:
    """Will the client lose this answer's signed thinking blocks (a filtered stream, or an
    OpenAI client, whose format has no place for them) in a tool loop?"""
    body = parsed.body
    if not body.get("tools") or not thinking_enabled(body):
        return False
    return filtered or adaptor.endpoint != "messages"


async def _answer_error(ex: Exchange, adaptor: Adaptor, error: errors.GatewayError, request_id: str) -> None:
    if ex.started:
        await ex.end_stream(adaptor.error_event(error, request_id))
    else:
        await ex.respond_error(error, adaptor.error_body(error, request_id), request_id)


async def _relay_whole(gateway: Gateway, ex: Exchange, adaptor: Adaptor, ticket: Ticket,
                       request: UpstreamRequest) -> None:
    """A whole answer. The upstream call and its settlement run in the after-response
    nursery, not under the client's disconnect: a client that leaves before the answer is
    charged what the upstream bills for it (the operator pays for the prompt either way),
    from the answer's own usage, with status 499 (the README's billing section says why)."""
    message, response, cost, account = await run_detached(gateway, ticket, lambda: _fetch_whole(
        gateway, ex, ticket, request))
    if _needs_recording(adaptor, ticket.parsed, filtered=False):
        turn = turn_from_message(message.get("content"))
        if turn is not None:
            await gateway.thinking.remember(ticket.key.id, turn)
    rendered = adaptor.render_message(response.body, message, ticket.parsed)
    await ex.respond(200, rendered, [
        (b"request-id", ticket.request_id.encode()),
        (b"x-cheaplm-cost-usd", format_usd(cost).encode()),
        (b"x-cheaplm-balance-usd", format_usd(account.balance).encode()),
        *ticket.parsed.notes,
        *ticket.limit_headers,
    ])


async def _fetch_whole(gateway: Gateway, ex: Exchange, ticket: Ticket, request: UpstreamRequest):
    """(message, response, cost, account): the upstream's answer, settled; or the error,
    its hold released."""
    try:
        response = await gateway.upstream.send(request)
    except errors.GatewayError as error:
        ticket.tried(request.attempts)
        await ticket.close(None, error.status, error_type=error.error_type)
        raise
    ticket.served(response.channel, response.attempts)
    if response.status != 200:
        error = upstream_error(response.status, response.body, response.headers)
        await ticket.close(None, error.status, error_type=error.error_type)
        raise error
    try:
        message = json.loads(response.body)
        usage = Usage().merged(message["usage"])
    except (ValueError, KeyError, TypeError):
        await ticket.close(None, 502, error_type="api_error")
        raise errors.GatewayError(502, "Upstream sent an unreadable response", "api_error") from None
    ticket.first_output()
    if ex.disconnected:  # nobody to deliver it to: charged all the same, as the upstream bills it
        cost, account = await settle_answer(ticket, usage, CLIENT_CLOSED, "client_disconnected")
    else:
        cost, account = await settle_answer(ticket, usage)
    return message, response, cost, account


def _split_at_stop(events: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """(the events before ``message_stop``, ``message_stop`` and after)."""
    for i, raw in enumerate(events):
        if event_name(raw) == "message_stop":
            return events[:i], events[i:]
    return events, []


async def _pump(upstream, tap: AnthropicStreamTap, renderer: StreamRenderer, ex: Exchange, ticket: Ticket,
                idle: float, progress: Progress) -> list[bytes]:
    """Relay upstream chunks to the client as they come, one write per upstream read,
    up to ``message_stop``, which is returned unsent (with anything after it): the
    stream's charge must be durable before its final event reaches the client.

    One idle scope covers the whole stream, its deadline pushed forward at most once a
    second: a new scope per chunk would cost more than the chunk."""
    held: list[bytes] = []
    input_checked = False
    with trio.CancelScope(deadline=trio.current_time() + idle) as reading:
        ticket.relaying = reading
        async with aclosing(upstream.chunks()) as chunks:
            async for chunk in chunks:
                now = trio.current_time()
                if now + idle - reading.deadline > 1.0:
                    reading.deadline = now + idle
                events = tap.events(chunk)
                if not events:
                    continue
                if not input_checked and tap.saw_message_start:
                    input_checked = True
                    await ticket.cover_real_input(tap.usage)
                if tap.saw_message_stop:
                    events, held = _split_at_stop(events)
                out = renderer.render(events) if events else b""
                if out:
                    await ticket.may_relay()
                    await ex.write(out)
                if tap.last_delta_tokens:
                    ticket.first_output()
                    progress.tokens += tap.last_delta_tokens
                if held:
                    break
    if ticket.lease_lost:
        await ticket.may_relay()  # (raises: the stream stops here)
    if reading.cancelled_caught:
        raise errors.upstream_timeout("stream (no data within the idle timeout)")
    return held


async def _relay_stream(gateway: Gateway, ex: Exchange, adaptor: Adaptor, ticket: Ticket,
                        request: UpstreamRequest, drain: StreamDrain) -> None:
    filtered = not adaptor.keep_thinking(ticket.parsed.pass_thinking)
    recorder = TurnRecorder() if _needs_recording(adaptor, ticket.parsed, filtered) else None
    tap = AnthropicStreamTap(filter_thinking=filtered, observer=recorder.feed if recorder else None)
    progress = Progress()
    ticket.watch(tap, progress)
    stream_error: errors.GatewayError | None = None
    try:
        async with gateway.upstream.stream(request) as upstream:
            ticket.served(upstream.channel, upstream.attempts)
            if upstream.status != 200:
                error = upstream_error(upstream.status, await upstream.read(), upstream.headers)
                await ticket.close(None, error.status, error_type=error.error_type)
                raise error
            renderer = adaptor.stream_renderer(ticket.parsed, ticket.request_id)
            await ex.start_stream([(b"request-id", ticket.request_id.encode()), *ticket.parsed.notes,
                                   *ticket.limit_headers])
            try:
                with drain.stream() as draining:  # a graceful shutdown's end (drain.py)
                    held = await _pump(upstream, tap, renderer, ex, ticket, gateway.upstream.idle_timeout,
                                       progress)
                if draining.cancelled_caught:
                    raise shutting_down()
                held += tap.close_events()
                if tap.truncated and tap.error is None:
                    raise errors.GatewayError(502, "Upstream closed the stream before message_stop", "api_error")
                if tap.saw_message_stop and tap.error is None:
                    await settle_stream_end(ticket, tap.usage)
                    if recorder is not None and (turn := recorder.turn()) is not None:
                        # before the end goes out: a fast client's next turn needs it
                        await gateway.thinking.remember(ticket.key.id, turn)
                await ex.end_stream(renderer.render(held) + renderer.close())
            except errors.GatewayError as error:
                # Mid-stream failure (idle timeout, dropped connection): the client gets an
                # error event in its own protocol, then the stream ends.
                stream_error = error
                numbered = getattr(renderer, "error_event", None)  # (a renderer that numbers its events)
                await ex.end_stream(numbered(error) if numbered else adaptor.error_event(error, ticket.request_id))
    except errors.GatewayError as error:  # no upstream answered: the usage row says what the client was told
        stream_error = error
        raise
    finally:
        ticket.unwatch()
        if not ticket.closed:
            ticket.tried(request.attempts)
            await settle_unfinished(ticket, tap, progress.tokens, ex.disconnected, stream_error, answered=ex.started)
