"""Integer money: micro-USD, and the one rounding rule.

All amounts are ``int`` micro-USD (1 USD = 1_000_000). Prices are integer
micro-USD per one million tokens, so ``$3.00 / 1M tokens`` is ``3_000_000``.

The rounding rule (the only one in the code base): an amount that is not a whole
micro-USD is rounded **once**, half up (``.5`` goes up), by ``round_half_up``:
- a request's cost, ``sum(tokens_lane * price_lane) / 1_000_000`` micro-USD, rounded
  once for the whole request (nothing per lane or per event): ``cost_micro``;
- a payment's API value, paid x the value multiplier: ``scale``;
- a derived price (the cache-read lane, a tenth of the input price): ``scale``.
Amounts that come in from people (the CLI, the transfer API, the config) are never
rounded: more precision than a micro-dollar is refused (``parse_usd``).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from storage.base import MAX_AMOUNT  # the one bound on an amount (the store enforces it too)

MICRO = 1_000_000
TOKENS_PER_PRICE_UNIT = 1_000_000


def round_half_up(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded half up, for non-negative integers."""
    if numerator < 0 or denominator <= 0:
        raise ValueError("round_half_up takes a non-negative numerator and a positive denominator")
    return (2 * numerator + denominator) // (2 * denominator)


def scale(micro: int, factor: "Decimal | int") -> int:
    """``micro`` x ``factor`` (a non-negative exact decimal), rounded half up once."""
    numerator, denominator = Decimal(factor).as_integer_ratio()
    return round_half_up(micro * numerator, denominator)


def cost_micro(tokens_and_prices: "list[tuple[int, int]]") -> int:
    """Cost in micro-USD of ``[(tokens, price_micro_per_million), ...]``, rounded once."""
    exact = sum(tokens * price for tokens, price in tokens_and_prices)
    return round_half_up(exact, TOKENS_PER_PRICE_UNIT)


def parse_usd(value: "str | int | float | Decimal") -> int:
    """Parse a USD amount ("12.5", 12.5, "0.000001") into micro-USD exactly.

    Refuses more precision than a micro-dollar rather than rounding silently, and
    magnitudes beyond ``MAX_AMOUNT`` (before converting, so ``1e999999`` costs nothing).
    """
    try:
        amount = Decimal(str(value).strip().lstrip("$"))
    except (InvalidOperation, ValueError):
        raise ValueError(f"not a USD amount: {value!r}") from None
    if not amount.is_finite():
        raise ValueError(f"not a USD amount: {value!r}")
    if amount.copy_abs() > Decimal(MAX_AMOUNT) / MICRO:  # copy_abs: exact, never overflows
        raise ValueError(f"more than {format_usd(MAX_AMOUNT)} USD, the largest amount: {value!r}")
    micro = amount * MICRO
    if micro != micro.to_integral_value():
        raise ValueError(f"more precise than a micro-dollar: {value!r}")
    return int(micro)


def format_usd(micro: int) -> str:
    """Render micro-USD as a plain decimal string with six places: ``-1.500000``."""
    sign = "-" if micro < 0 else ""
    whole, frac = divmod(abs(micro), MICRO)
    return f"{sign}{whole}.{frac:06d}"


def usd_number(micro: int) -> float:
    """A JSON number for APIs that promise dollars as numbers (transfer API, model info)."""
    return float(Decimal(micro) / MICRO)


def credit_for(paid: int, multiplier: "Decimal | int", bonus: "tuple[tuple[int, int], ...]" = ()) -> int:
    """The API value a payment of ``paid`` buys, whichever way it was paid (a card, a code,
    a signed webhook): ``paid`` x the multiplier (``scale``: the one rounding), plus the
    bonus of the highest step of the bonus table ``((at_or_above, bonus), ...)`` that
    ``paid`` reaches (all micro-USD; steps do not add up: $100 gets the $100 step only)."""
    reached = [extra for threshold, extra in sorted(bonus) if paid >= threshold]
    return scale(paid, multiplier) + (reached[-1] if reached else 0)
