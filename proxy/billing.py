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
    """Micro-USD for a usage, every lane at its own price, rounded once."""
    return cost_micro([
        (usage.input_tokens, prices.input),
        (usage.cache_write_5m, prices.cache_write_5m),
        (usage.cache_write_1h, prices.cache_write_1h),
        (usage.cache_read, prices.cache_read),
        (usage.output_tokens, prices.output),
    ])


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


def hold_amount(model: Model, input_estimate: int, max_tokens: int) -> int:
    """The worst case: the prompt at the dearest input lane plus max_tokens of output."""
    prices = model.prices
    dearest_input = max(prices.input, prices.cache_write_5m, prices.cache_write_1h)
    return cost_micro([(input_estimate, dearest_input), (max_tokens, prices.output)])
