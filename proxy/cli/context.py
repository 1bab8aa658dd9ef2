"""What an admin command gets: its arguments, the configuration, the ledger opener and
the accounts library on a store (without a key hook: running gateways see a change
through the ledger's change feed, within change_poll_interval), and the operator as the
actor of its changes."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import AsyncContextManager

from ..accounts.audit import Actor, operator
from ..accounts.ledger import open_ledger
from ..accounts.service import Accounts
from ..config import Config
from storage.base import Store


@dataclass(frozen=True)
class Command:
    args: argparse.Namespace
    config: Config

    def ledger(self, create: bool = False) -> AsyncContextManager[Store]:
        return open_ledger(self.config.database_url, create)

    def accounts(self, store: Store) -> Accounts:
        return Accounts(store, self.config.accounts, self.config.value_multiplier, self.config.payments.bonus)

    @property
    def actor(self) -> Actor:
        return operator()

    @property
    def as_json(self) -> bool:
        return bool(getattr(self.args, "json", False))


def json_flag(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    return parser
