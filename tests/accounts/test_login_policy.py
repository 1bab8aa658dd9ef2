"""The login throttles (proxy/accounts/sessions.py; README "Accounts"): guesses from
many addresses at one account verify at most the account's limit, the owner's known
client still logs in during the attack, a client's failures slow only that client
(progressive delays), a disabled account is no password oracle, and sessions do not
pile up."""

from decimal import Decimal

import pytest
import trio

from proxy.accounts.service import BAD_LOGIN, AccountError, Accounts
from proxy.config import AccountsConfig
from proxy.limits.backoff import LocalBackoff, LocalMemo
from storage import open_store
from tests.conftest import query_ledger

RIGHT = "the right password"
POLICY = AccountsConfig(password_time_cost=1, password_memory_kib=64, login_failures_per_account=20,
                        login_failures_per_ip=20, login_window=900, login_backoff=1.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(ledger):
    s = await open_store(ledger, instance_id="test")
    yield s
    await s.aclose()


def counting(accounts: Accounts) -> list[str]:
    """The passwords the library verified (argon2), in order."""
    verified: list[str] = []
    original = accounts._verify

    async def spy(stored, password):
        verified.append(password)
        return await original(stored, password)
    accounts._verify = spy
    return verified


async def attempt(accounts: Accounts, password: str, ip: str, username: str = "owner") -> int:
    try:
        await accounts.login(username, password, ip)
    except AccountError as exc:
        return exc.status
    return 200


async def test_many_addresses_guess_at_once_and_the_owner_still_logs_in(store):
    clock = Clock()
    accounts = Accounts(store, POLICY, Decimal(30), monotonic=clock)
    await accounts.create_user("owner", RIGHT)
    assert await attempt(accounts, RIGHT, "198.51.100.7") == 200  # the owner's usual client
    verified = counting(accounts)
    outcomes: list[int] = []

    async def guess(i: int) -> None:
        outcomes.append(await attempt(accounts, f"guess-{i}", f"10.{i // 250}.{i % 250}.1"))
    async with trio.open_nursery() as nursery:
        for i in range(200):  # 200 addresses, each guessing once, all at once
            nursery.start_soon(guess, i)
    limit = POLICY.login_failures_per_account
    assert len(verified) == limit, "the account's slot is taken before the (slow) verify"
    assert outcomes.count(401) == limit and outcomes.count(429) == 200 - limit
    print(f"\n200 concurrent guesses from 200 addresses: {len(verified)} verified, "
          f"{outcomes.count(429)} refused with 429")
    # the owner's known client is not held by the account-wide limit
    assert await attempt(accounts, RIGHT, "198.51.100.7") == 200
    # a client the account has never logged in from is, until the window has room (the trade-off)
    assert await attempt(accounts, RIGHT, "203.0.113.9") == 429
    clock.now += POLICY.login_window + 1
    assert await attempt(accounts, RIGHT, "203.0.113.9") == 200


async def test_one_clients_failures_slow_only_that_client_progressively(store):
    clock = Clock()
    accounts = Accounts(store, POLICY, Decimal(30), monotonic=clock)
    await accounts.create_user("owner", RIGHT)
    attacker, owner = "10.0.0.66", "192.0.2.10"
    assert await attempt(accounts, "typo", attacker) == 401   # a first failure: no wait
    waits = []
    for _ in range(5):
        assert await attempt(accounts, "wrong", attacker) == 401
        with pytest.raises(AccountError) as held:
            await accounts.login("owner", RIGHT, attacker)  # even the right password waits
        assert held.value.status == 429
        waits.append(held.value.retry_after)
        clock.now += held.value.retry_after
    assert waits == [1, 2, 4, 8, 16]  # login_backoff x 2^(n-2)
    # another client, never failing and never seen before, logs in at once
    assert await attempt(accounts, RIGHT, owner) == 200
    # the right password from the slowed client, once its wait is over, resets it
    assert await attempt(accounts, RIGHT, attacker) == 200
    assert await attempt(accounts, "typo again", attacker) == 401
    assert await attempt(accounts, RIGHT, attacker) == 200


async def test_one_address_spraying_accounts_is_held(store):
    clock = Clock()
    accounts = Accounts(store, AccountsConfig(password_time_cost=1, password_memory_kib=64, login_failures_per_ip=3),
                        monotonic=clock)
    for name in ("a1", "a2", "a3", "a4"):
        await accounts.create_user(name, RIGHT)
    assert [await attempt(accounts, "wrong", "10.9.9.9", name) for name in ("a1", "a2", "a3", "a4")] == [
        401, 401, 401, 429]
    assert await attempt(accounts, RIGHT, "10.9.9.10", "a4") == 200  # another address is not held


async def test_wrong_current_passwords_count_as_failed_logins_of_that_client(store):
    clock = Clock()
    accounts = Accounts(store, POLICY, monotonic=clock)
    await accounts.create_user("ann", RIGHT)
    for _ in range(2):
        with pytest.raises(AccountError) as refused:
            await accounts.change_password("ann", "a wrong guess", "a new long password", "10.0.0.5")
        assert refused.value.status == 403
    with pytest.raises(AccountError) as held:
        await accounts.change_password("ann", RIGHT, "a new long password", "10.0.0.5")
    assert held.value.status == 429 and held.value.retry_after >= 1
    assert await attempt(accounts, "a wrong guess", "10.0.0.5", "ann") == 429  # the same client's logins too
    clock.now += held.value.retry_after
    await accounts.change_password("ann", RIGHT, "a new long password", "10.0.0.5")
    assert await attempt(accounts, "a new long password", "10.0.0.6", "ann") == 200


async def test_a_disabled_account_is_no_password_oracle(store):
    accounts = Accounts(store, POLICY)
    await accounts.create_user("dora", RIGHT)
    await accounts.set_disabled("dora", True)
    with pytest.raises(AccountError) as wrong:
        await accounts.login("dora", "not the password", "10.0.0.7")
    assert (wrong.value.status, str(wrong.value)) == (401, BAD_LOGIN)  # as for any wrong password
    with pytest.raises(AccountError) as right:
        await accounts.login("dora", RIGHT, "10.0.0.8")
    assert right.value.status == 403 and "disabled" in str(right.value)


@pytest.mark.both_stores
async def test_sessions_are_capped_per_account_and_expired_ones_purged(store, ledger):
    accounts = Accounts(store, AccountsConfig(password_time_cost=1, password_memory_kib=64, max_sessions=3))
    sam = await accounts.create_user("sam", RIGHT)
    tokens = [(await accounts.login("sam", RIGHT, "10.0.0.9"))[1] for _ in range(5)]
    live = [t for t in tokens if await accounts.session(t) is not None]
    assert live == tokens[-3:]  # the oldest ended

    query_ledger(ledger, "INSERT INTO sessions (token_hash, account_id, created_at, expires_at) "
                 "VALUES ('old', ?, 1.0, 1.0)", (sam.account_id,))  # expired long ago
    assert query_ledger(ledger, "SELECT COUNT(*) FROM sessions")[0][0] == 4
    await accounts.create_user("tia", RIGHT)
    await accounts.login("tia", RIGHT, "10.0.0.9")  # any new session removes the expired ones
    assert query_ledger(ledger, "SELECT COUNT(*) FROM sessions")[0][0] == 4


async def test_backoff_and_memo_in_the_process():
    now = [0.0]
    backoff = LocalBackoff(1.0, 10.0, lambda: now[0])
    assert [await backoff.take("k") for _ in range(2)] == [0.0, 0.0]  # the typo's and one more
    assert await backoff.take("k") == pytest.approx(1.0)
    now[0] = 1.0
    assert await backoff.take("k") == 0.0 and await backoff.take("k") == pytest.approx(2.0)
    waits = []
    for _ in range(3):
        now[0] += 100.0
        assert await backoff.take("k") == 0.0
        waits.append(await backoff.take("k"))
    assert waits == [pytest.approx(4.0), pytest.approx(8.0), pytest.approx(10.0)]  # at most ``most``
    await backoff.give_back("k")
    assert await backoff.take("k") == 0.0
    memo = LocalMemo(5.0, lambda: now[0])
    await memo.add("pair")
    assert await memo.has("pair") and not await memo.has("other")
    now[0] += 5.0
    assert not await memo.has("pair")


async def test_an_address_counts_once_however_it_is_spelt_and_an_ipv6_client_is_its_64(store):
    """The per-address limits (failed logins, signups) are keyed by the address, not by
    its text: an IPv6 client (which is given a /64) or another spelling of one address
    does not get a fresh allowance."""
    clock = Clock()
    policy = AccountsConfig(password_time_cost=1, password_memory_kib=64, login_failures_per_ip=3,
                            login_failures_per_account=100, signups_per_hour=2)
    accounts = Accounts(store, policy, Decimal(30), monotonic=clock)
    for i, name in enumerate(("a", "b", "c")):
        await accounts.create_user(name, RIGHT)
    spellings = ["2001:db8:0:1::1", "2001:DB8:0:1:0:0:0:1", "[2001:db8:0:1::1]", "2001:db8:0:1:ffff::2"]
    outcomes = [await attempt(accounts, "wrong", ip, username) for ip, username in zip(spellings, "abca")]
    assert outcomes == [401, 401, 401, 429]
    v4 = ("192.0.2.1", "::ffff:192.0.2.1", "::FFFF:c000:201", "192.0.2.1")
    assert [await attempt(accounts, "wrong", ip, name) for ip, name in zip(v4, "bcab")] == [401, 401, 401, 429]
    for n, ip in enumerate(("2001:db8:0:2::1", "2001:db8:0:2::2", "2001:db8:0:2:8000::3")):
        try:
            await accounts.signup(f"new{n}", RIGHT, None, ip)
        except AccountError as exc:
            assert n == 2 and exc.status == 429
        else:
            assert n < 2
