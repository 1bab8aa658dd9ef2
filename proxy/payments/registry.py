"""The payment providers a gateway offers, built from its configuration: redemption codes
(always), the house-format signed webhook (``[accounts] webhook_secret``) and Stripe
Checkout (``[payments.stripe]``). The routes and pages ask the registry, never a provider
class; every provider credits by ``money.credit_for`` with the same bonus table."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from ..accounts.service import Accounts
from ..config import Config
from ..money import credit_for, format_usd
from .providers import CodeProvider, SignedWebhook, WebhookProvider
from .stripe_checkout import StripeCheckout
from storage.base import Store

TOPUP_MIN, TOPUP_MAX = 1, 500      # USD a user may pay at once (the pricing page's range)


@dataclass
class Payments:
    multiplier: Decimal
    bonus: tuple[tuple[int, int], ...]
    code: CodeProvider
    webhooks: dict[str, WebhookProvider] = field(default_factory=dict)
    card: StripeCheckout | None = None

    def credit_for(self, paid: int) -> int:
        """What paying ``paid`` micro-USD buys, by any provider (the page shows this)."""
        return credit_for(paid, self.multiplier, self.bonus)

    def webhook(self, name: str) -> WebhookProvider | None:
        return self.webhooks.get(name)

    def describe(self) -> dict:
        """For /health and the top-up page: what is on (never a secret)."""
        return {"codes": True, "card": self.card is not None, "webhooks": sorted(self.webhooks),
                "bonus": [{"paid_usd": format_usd(at), "bonus_usd": format_usd(extra)} for at, extra in self.bonus]}


def build(config: Config, store: Store, accounts: Accounts) -> Payments:
    multiplier, bonus = config.value_multiplier, config.payments.bonus
    payments = Payments(multiplier, bonus, CodeProvider(accounts))
    if config.accounts.webhook_secret:
        payments.webhooks["webhook"] = SignedWebhook(store, config.accounts.webhook_secret.encode(), multiplier, bonus)
    if config.payments.stripe is not None:
        payments.card = StripeCheckout(store, config.payments.stripe, multiplier, bonus)
        payments.webhooks[payments.card.name] = payments.card
    return payments
