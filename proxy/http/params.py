"""Query-string parameters (and the few header fields read as numbers), parsed in one
place for every route: a value that is not what the route takes is a 400 naming the
parameter, never a 5xx.

``str.isdigit`` is true for "²" and "٣", which ``int`` refuses or reads; and ``int`` of
more than 4300 digits raises. Numbers here are ASCII digits, at most ``MAX_DIGITS`` of
them, read only then."""

from __future__ import annotations

from typing import Mapping

from quart import request

from .. import errors

MAX_DIGITS = 19  # every number a route takes fits in a signed 64-bit integer
MAX_TEXT = 128


def ascii_int(text: str, max_digits: int = MAX_DIGITS) -> int | None:
    """``text`` as a non-negative integer when it is 1..``max_digits`` ASCII digits; else None."""
    if not 0 < len(text) <= max_digits or not text.isascii() or not text.isdigit():
        return None
    return int(text)


def int_arg(name: str, default: int | None, low: int, high: int,
            args: Mapping[str, str] | None = None, refusal: str | None = None) -> int | None:
    """The whole number ``name`` from ``low`` to ``high`` (``default`` when absent or
    empty; a leading "-" only when ``low`` is negative); else a 400 saying ``refusal``."""
    text = (request.args if args is None else args).get(name)
    if text is None or text == "":
        return default
    negative = low < 0 and text.startswith("-")
    value = ascii_int(text[1:] if negative else text)
    if value is not None and negative:
        value = -value
    if value is None or not low <= value <= high:
        raise errors.invalid_request(refusal or f"{name} must be a whole number from {low} to {high}", param=name)
    return value


def str_arg(name: str, args: Mapping[str, str] | None = None) -> str | None:
    """The text ``name`` (None when absent or empty): at most ``MAX_TEXT`` characters."""
    text = (request.args if args is None else args).get(name)
    if text is not None and len(text) > MAX_TEXT:
        raise errors.invalid_request(f"{name} is too long", param=name)
    return text or None
