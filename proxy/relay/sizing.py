"""How big a request's hold is: the worst case when the balance covers it, else the real
prompt counted by the upstream first (count_tokens: free, and it sees what the gateway's
estimate cannot: documents by URL or file_id, images, server-side expansions).

The worst case is the model's whole input window at the dearest input lane, plus
``max_tokens`` of output, plus the server tool uses the request allows. A hold that size
can never be passed by the request's real cost, so an account that can afford it is never
counted (no extra round trip). Near an empty balance (or a spend cap) the hold is sized on
the counted prompt instead, with a margin for the count's own imprecision, or the request
is refused with the endpoint's 402 before anything is sent.
"""

from __future__ import annotations

import json
from functools import partial

from .. import errors
from ..adaptors.base import Parsed, with_model
from ..billing import hold_amount
from ..runtime import Gateway
from ..upstream.base import UpstreamRequest
from ..upstream.status import upstream_error

# The fields of a Messages request that count_tokens takes (the others it refuses).
COUNTED_FIELDS = ("messages", "system", "tools", "tool_choice", "thinking", "mcp_servers")
# Anthropic says a count "may differ by a small amount" from the message's real input:
# a counted hold covers 2% and 64 tokens more.
COUNT_MARGIN_PERCENT = 2
COUNT_MARGIN_TOKENS = 64


def worst_case(parsed: Parsed, estimate: int) -> int:
    """The hold no request can outgrow: its model's input window (or the estimate, if larger)."""
    return hold_amount(parsed.model, max(parsed.model.max_input, estimate), parsed.max_tokens, parsed.body)


def counted_hold(parsed: Parsed, input_tokens: int) -> int:
    """The hold for a prompt the upstream counted at ``input_tokens``."""
    margin = input_tokens * COUNT_MARGIN_PERCENT // 100 + COUNT_MARGIN_TOKENS
    return hold_amount(parsed.model, input_tokens + margin, parsed.max_tokens, parsed.body)


async def count_input(gateway: Gateway, parsed: Parsed, headers) -> int:
    """The prompt's input tokens, as the upstream counts them. An upstream that refuses
    the count (the prompt is invalid, it is overloaded) answers the request with its error."""
    body = {k: v for k, v in parsed.body.items() if k in COUNTED_FIELDS}
    request = UpstreamRequest("/v1/messages/count_tokens", parsed.model, headers, partial(with_model, body))
    response = await gateway.upstream.send(request)
    if response.status != 200:
        raise upstream_error(response.status, response.body, response.headers)
    try:
        tokens = json.loads(response.body)["input_tokens"]
    except (ValueError, KeyError, TypeError):
        tokens = None
    if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 0:
        raise errors.GatewayError(502, "Upstream sent an unreadable token count", "api_error")
    return tokens


def exact_hold(gateway: Gateway, parsed: Parsed, headers):
    """The coroutine function open_ticket calls when the worst case is more than the key
    may hold: the hold sized on the counted prompt."""
    async def sized() -> int:
        return counted_hold(parsed, await count_input(gateway, parsed, headers))
    return sized
