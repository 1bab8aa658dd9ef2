"""The operations on one database connection, by concern: what a backend's runner hands
to each call of the store (storage/sql/store.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..leases import Host
from .accounts import Accounts
from .channels import Channels
from .db import Db
from .ledger import Ledger
from .owners import Owners
from .late import LateCharges
from .payments import Payments
from .transfers import Transfers


@dataclass(frozen=True)
class Ops:
    db: Db
    ledger: Ledger
    accounts: Accounts
    owners: Owners
    channels: Channels
    payments: Payments
    transfers: Transfers
    late: LateCharges

    @classmethod
    def on(cls, db: Db, instance_id: str | None, clock: Callable[[], float], here: Host) -> "Ops":
        ledger = Ledger(db, instance_id, clock)
        return cls(db, ledger, Accounts(ledger), Owners(ledger, here), Channels(ledger, here), Payments(ledger),
                   Transfers(ledger), LateCharges(ledger))
