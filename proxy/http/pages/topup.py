"""The top-up page's figures (views.py renders the page; app.js asks POST
/api/topup/checkout for a card payment and goes where it answers): an amount from $1 to
$500 (``?amount=``), what it buys by ``Payments.credit_for`` (the rule the ledger credits
by: the server's figure is the one that counts; app.js repeats it as the slider moves,
from the multiplier and bonus steps rendered here), the bonus table, whether card
payments are on, and the words for Stripe's return (``?checkout=success|cancelled``)."""

from __future__ import annotations

from typing import Any

import orjson
from quart import request

from ...money import MICRO, format_usd, parse_usd
from ...payments.registry import TOPUP_MAX, TOPUP_MIN
from ..api.payments import current_payments

DEFAULT_USD = 20
RETURNS = {"success": "Payment received, thank you: your balance grows as soon as Stripe confirms it "
                      "(usually within seconds; reload to see it).",
           "cancelled": "Payment cancelled: nothing was charged."}


def short_usd(micro: int) -> str:
    """``10.000000`` -> ``10``, ``12.340000`` -> ``12.34``: for sentences, not for ledgers."""
    return format_usd(micro).rstrip("0").rstrip(".")


def topup_values() -> dict[str, Any]:
    """What the page shows for the amount in ``?amount=`` (the default when absent or out of range)."""
    payments = current_payments()
    try:
        paid = parse_usd(request.args.get("amount", str(DEFAULT_USD)))
    except ValueError:
        paid = 0
    if not TOPUP_MIN * MICRO <= paid <= TOPUP_MAX * MICRO or paid % (MICRO // 100):
        paid = DEFAULT_USD * MICRO
    steps = [{"paid": short_usd(at), "bonus": short_usd(extra)} for at, extra in payments.bonus]
    rule = {"multiplier": format(payments.multiplier.normalize(), "f"),
            "bonus": [[at, extra] for at, extra in payments.bonus]}  # micro-USD, for app.js
    return {"card_on": payments.card is not None, "topup_min": TOPUP_MIN, "topup_max": TOPUP_MAX,
            "amount": short_usd(paid), "you_get": format_usd(payments.credit_for(paid)),
            "multiplier": rule["multiplier"], "bonus_steps": steps, "rule": orjson.dumps(rule).decode(),
            "notice": RETURNS.get(request.args.get("checkout", ""))}

