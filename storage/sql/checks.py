"""The ledger's invariants, checked in one read snapshot: each broken one becomes a
line of text for the operator (``cheaplm db check``). Portable SQL (every backend:
db.py); a backend adds findings of its own (SQLite: money stored as a float)."""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

from ..caps import SPEND_DAY, day_of
from ..records import StoreStats
from .db import Db

Finding = Callable[[Db], Iterable[str]]


def _balance_is_ledger_sum(conn: Db) -> Iterable[str]:
    for username, balance, total in conn.execute(
            "SELECT a.username, a.balance, COALESCE(SUM(l.delta), 0) AS total FROM accounts a "
            "LEFT JOIN ledger l ON l.account_id = a.id GROUP BY a.id, a.username, a.balance "
            "HAVING a.balance != COALESCE(SUM(l.delta), 0) ORDER BY a.username"):
        yield f"account {username}: balance {balance} but its ledger entries sum to {total}"


def _last_entry_matches(conn: Db) -> Iterable[str]:
    for username, balance, entry, after in conn.execute(
            "SELECT a.username, a.balance, l.id, l.balance_after FROM accounts a "
            "JOIN ledger l ON l.id = (SELECT MAX(id) FROM ledger WHERE account_id = a.id) "
            "WHERE l.balance_after != a.balance ORDER BY a.username"):
        yield f"account {username}: balance {balance} but its last ledger entry ({entry}) says {after}"


def _chain(conn: Db) -> Iterable[str]:
    for entry, username, delta, after, before in conn.execute(
            "SELECT c.id, a.username, c.delta, c.balance_after, c.before FROM ("
            "  SELECT id, account_id, delta, balance_after,"
            "         LAG(balance_after, 1, 0) OVER (PARTITION BY account_id ORDER BY id) AS before"
            "  FROM ledger) c JOIN accounts a ON a.id = c.account_id "
            "WHERE c.balance_after != c.before + c.delta ORDER BY c.id"):
        yield (f"ledger entry {entry} ({username}): balance_after {after} but the entry before it "
               f"left {before} and the delta is {delta}")


def _held_is_open_holds(conn: Db) -> Iterable[str]:
    for username, held, total in conn.execute(
            "SELECT a.username, a.held, COALESCE(SUM(h.amount), 0) FROM accounts a "
            "LEFT JOIN holds h ON h.account_id = a.id AND h.state = 'open' "
            "GROUP BY a.id, a.username, a.held HAVING a.held != COALESCE(SUM(h.amount), 0) ORDER BY a.username"):
        yield f"account {username}: held {held} but its open holds add up to {total}"
    for username, held in conn.execute("SELECT username, held FROM accounts WHERE held < 0 ORDER BY username"):
        yield f"account {username}: held is negative ({held})"
    for hold, amount in conn.execute("SELECT id, amount FROM holds WHERE amount <= 0 ORDER BY id"):
        yield f"hold {hold}: amount {amount} is not positive"


def _charges_match_usage(conn: Db) -> Iterable[str]:
    """Every charge is one ledger entry (kind 'charge', ref = the request id, delta =
    -cost; with a 'late_charge' entry after it when the instance that relayed a recovered
    stream charged the rest) of the account whose usage row has that request id and a
    positive cost."""
    for ref, count, total, cost, same_account in conn.execute(
            "SELECT l.ref, SUM(CASE WHEN l.kind = 'charge' THEN 1 ELSE 0 END), SUM(l.delta), u.cost, "
            "       MIN(CASE WHEN l.account_id = u.account_id THEN 1 ELSE 0 END) "
            "FROM ledger l LEFT JOIN usage u ON u.request_id = l.ref "
            "WHERE l.kind IN ('charge', 'late_charge') GROUP BY l.ref, u.cost ORDER BY l.ref"):
        if cost is None:
            yield f"request {ref}: charged ({-total}) but has no usage row"
        elif count > 1:
            yield f"request {ref}: charged {count} times ({-total} in all) for a cost of {cost}"
        elif total != -cost:
            yield f"request {ref}: charged {-total} but its usage row says it cost {cost}"
        elif not same_account:
            yield f"request {ref}: charged to another account than its usage row's"
    for (request_id,) in conn.execute(
            "SELECT request_id FROM usage WHERE cost > 0 "
            "EXCEPT SELECT ref FROM ledger WHERE kind = 'charge' ORDER BY 1"):
        yield f"request {request_id}: its usage row has a cost but no ledger charge"
    for request_id, cost in conn.execute("SELECT request_id, cost FROM usage WHERE cost < 0 ORDER BY request_id"):
        yield f"request {request_id}: negative cost {cost}"


def _key_spend_is_usage_sum(conn: Db) -> Iterable[str]:
    """Each key's spend per UTC day (what its caps read) is the sum of that day's charges
    and of the transfers the key made."""
    for key_id, day, spent, total in conn.execute(
            "SELECT key_id, day, SUM(spent), SUM(cost) FROM ("
            "  SELECT key_id, day, spent, 0 AS cost FROM key_spend UNION ALL"
            f"  SELECT key_id, {SPEND_DAY}, 0, cost FROM usage WHERE cost > 0 UNION ALL"
            f"  SELECT key_id, {SPEND_DAY}, 0, -delta FROM ledger WHERE kind = 'transfer_out' AND key_id IS NOT NULL"
            ") per_day GROUP BY key_id, day HAVING SUM(spent) != SUM(cost) ORDER BY key_id, day"):
        yield (f"key {key_id} on {day_of(day)}: its spend is recorded as {spent} but that day's charges "
               f"sum to {total}")


def _nothing_below_zero(conn: Db) -> Iterable[str]:
    """No balance, nor available balance (balance - held), is below zero."""
    for username, balance, held in conn.execute(
            "SELECT username, balance, held FROM accounts WHERE balance < 0 OR balance - held < 0 ORDER BY username"):
        if balance < 0:
            yield f"account {username}: balance {balance} is below zero"
        else:
            yield f"account {username}: available balance {balance - held} is below zero (held {held})"


def _charges_within_holds(conn: Db) -> Iterable[str]:
    """No request was charged more than its hold."""
    for request_id, cost, amount in conn.execute(
            "SELECT u.request_id, u.cost, h.amount FROM usage u JOIN holds h ON h.request_id = u.request_id "
            "WHERE u.cost > h.amount ORDER BY u.request_id"):
        yield f"request {request_id}: charged {cost}, more than its hold of {amount}"


FINDINGS: tuple[Finding, ...] = (_balance_is_ledger_sum, _last_entry_matches, _chain,
                                 _held_is_open_holds, _charges_match_usage, _key_spend_is_usage_sum,
                                 _nothing_below_zero, _charges_within_holds)


def check(conn: Db, extra: Sequence[Finding] = ()) -> list[str]:
    return [problem for finding in (*extra, *FINDINGS) for problem in finding(conn)]


def stats(conn: Db) -> StoreStats:
    return StoreStats(*conn.execute(
        "SELECT (SELECT COUNT(*) FROM accounts), (SELECT COUNT(*) FROM ledger), "
        "(SELECT COUNT(*) FROM holds WHERE state = 'open')").fetchone())
