"""Spend caps' periods: the UTC calendar day and month a moment falls in, and how long
until each rolls over (pure). The backends keep each key's charges per UTC day (the
day's number since 1970-01-01, ``spend_day`` of a usage row's unix time; in SQL,
``SPEND_DAY``) and sum them from the period's first day."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from .errors import SpendCapReached
from .records import KeyLimits


@dataclass(frozen=True)
class Period:
    name: str        # "daily" or "monthly"
    cap: int         # micro-USD
    start: int       # its first UTC day (spend_day)
    seconds_left: int


DAY = 86400
# The same in SQL, portable (SQLite and PostgreSQL): the day of a row's created_at.
SPEND_DAY = f"CAST(FLOOR(created_at / {DAY}) AS INTEGER)"


def spend_day(created_at: float) -> int:
    """The UTC day a charge counts in: its number since 1970-01-01, from unix time."""
    return int(created_at // DAY)


def day_of(day: int) -> str:
    """A spend day as ``YYYY-MM-DD``."""
    return datetime.fromtimestamp(day * DAY, timezone.utc).date().isoformat()


def spend_day_start(iso_day: str) -> float:
    """The unix time a ``YYYY-MM-DD`` UTC day starts at."""
    return datetime.fromisoformat(iso_day).replace(tzinfo=timezone.utc).timestamp()


def capped_periods(limits: KeyLimits, now: float) -> list[Period]:
    """The periods ``limits`` caps at unix time ``now``, longest first."""
    moment = datetime.fromtimestamp(now, timezone.utc)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    month = day.replace(day=1)
    next_month = (month + timedelta(days=32)).replace(day=1)
    periods = []
    if limits.monthly_usd:
        periods.append(Period("monthly", limits.monthly_usd, spend_day(month.timestamp()), _until(next_month, now)))
    if limits.daily_usd:
        periods.append(Period("daily", limits.daily_usd, spend_day(day.timestamp()), _until(day + timedelta(days=1), now)))
    return periods


def _until(moment: datetime, now: float) -> int:
    return max(1, int(moment.timestamp() - now + 0.999))


def check_periods(periods: list[Period], spent: dict[str, int], held: int, needed: int) -> None:
    """SpendCapReached for the first period (longest first) where the key's settled
    ``spent`` in it + its open holds ``held`` + ``needed`` would pass the cap."""
    for period in periods:
        committed = spent[period.name] + held
        if committed + needed > period.cap:
            raise SpendCapReached(period.name, period.cap, committed, needed, period.seconds_left)
