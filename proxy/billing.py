"""Billing maths: what a request may cost at most (the hold) and what it did cost. Pure.

The storage side (hold -> settle/release) lives in storage/; the request flow
that calls both lives in relay.py.
"""

from __future__ import annotations

from typing import Any

from .catalog import Model, Prices
from .money import cost_micro
from .protocol.usage import Usage

# A conservative ratio: Claude's tokenizer averages about 4 bytes a token on English and
# code, and about 3 on CJK text (one token a character); 3 keeps the estimate at or
# above the real count for nearly all text, so the hold covers the real prompt.
BYTES_PER_TOKEN = 3
IMAGE_TOKENS = 1600  # Anthropic's ceiling for one image (about 1.15 megapixels)
DOCUMENT_BYTES_PER_TOKEN = 8  # base64 PDF/text documents, a deliberately rough figure


def usage_cost(usage: Usage, prices: Prices) -> int:
    """Micro-USD for a usage, every lane at its own price, rounded once, plus its server
    tool uses at their price a use (exact: whole micro-USD)."""
    return cost_micro([
        (usage.input_tokens, prices.input),
        (usage.cache_write_5m, prices.cache_write_5m),
        (usage.cache_write_1h, prices.cache_write_1h),
        (usage.cache_read, prices.cache_read),
        (usage.output_tokens, prices.output),
    ]) + server_tools_cost(usage, prices)


def server_tools_cost(usage: Usage, prices: Prices) -> int:
    return sum(count * prices.server_tool(kind) for kind, count in usage.server_tools)


def estimate_input_tokens(body: dict[str, Any]) -> int:
    """A quick upper-leaning estimate of a Messages request's prompt tokens.

    Text counts one token per three UTF-8 bytes; an image counts as the largest
    image Anthropic accepts without downscaling; base64 documents by size.
    """
    chars = 0
    tokens = 0
    stack: list[Any] = [body.get("system"), body.get("messages"), body.get("tools")]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            chars += len(item) if item.isascii() else len(item.encode("utf-8", "surrogatepass"))
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            kind = item.get("type")
            if kind == "image":
                tokens += IMAGE_TOKENS
                continue
            source = item.get("source")
            if kind == "document" and isinstance(source, dict) and isinstance(source.get("data"), str):
                tokens += len(source["data"]) // DOCUMENT_BYTES_PER_TOKEN
                continue
            for key, value in item.items():
                if key not in ("type", "cache_control", "id", "tool_use_id", "signature"):
                    chars += len(key)  # (a tool's input counts by its keys too)
                    stack.append(value)
    return tokens + -(-chars // BYTES_PER_TOKEN) + 8


def hold_amount(model: Model, input_estimate: int, max_tokens: int, body: dict[str, Any] | None = None) -> int:
    """The worst case: the prompt at the dearest input lane plus max_tokens of output,
    plus the server tool uses the request's tools allow (``server_tools_hold``)."""
    prices = model.prices
    dearest_input = max(prices.input, prices.cache_write_5m, prices.cache_write_1h)
    tools = server_tools_hold(body, prices) if body is not None else 0
    return cost_micro([(input_estimate, dearest_input), (max_tokens, prices.output)]) + tools


# A server tool declared without max_uses may be used this many times in one request, for
# the hold (the upstream sets no bound of its own; a model rarely searches more than a few
# times a turn). A request that uses more is charged what it used, within its balance.
DEFAULT_MAX_USES = 20
MAX_USES_BOUND = 1000  # a max_uses above this holds as this many


def allowed_server_tool_uses(body: dict[str, Any]) -> tuple[tuple[str, int], ...]:
    """(kind, uses) for each priced server tool in the request's ``tools``: a tool whose
    type is ``<kind>_<date>`` (``web_search_20250305``), at its ``max_uses`` or
    DEFAULT_MAX_USES."""
    tools = body.get("tools")
    if not isinstance(tools, list):
        return ()
    uses: dict[str, int] = {}
    for tool in tools:
        if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
            continue
        kind, _, date = tool["type"].rpartition("_")
        if not kind or not (len(date) == 8 and date.isdigit()):
            continue
        allowed = tool.get("max_uses")
        if not isinstance(allowed, int) or isinstance(allowed, bool) or allowed < 0:
            allowed = DEFAULT_MAX_USES
        uses[kind] = uses.get(kind, 0) + min(allowed, MAX_USES_BOUND)
    return tuple(sorted(uses.items()))


def server_tools_hold(body: dict[str, Any], prices: Prices) -> int:
    """Micro-USD the allowed server tool uses may cost: only kinds the catalog prices
    (Anthropic-defined client tools such as ``bash_20250124`` cost nothing upstream)."""
    listed = dict(prices.server_tools)
    return sum(n * listed[kind] for kind, n in allowed_server_tool_uses(body) if kind in listed)
