"""The operator's side over real processes' plumbing: ``cheaplm upstream list|enable|
disable`` against a gateway served on loopback with simulators as its channels, and
usage rows that name the channel that served and the attempts it took.

The CLI runs its own ``trio.run``, so from a test it runs in a thread; the gateway
syncs with the store every 0.1 s here (2 s by default), so waits stay short."""

from __future__ import annotations

import re
from dataclasses import replace

import anthropic
import pytest
import trio

from proxy.cli.main import main
from proxy.serve import serve
from tests.conftest import UPSTREAM_KEY, Account, make_account, raw_ledger
from tests.upstream.conftest import _ask, _channel, _gateway, _rows, _simulator

pytestmark = pytest.mark.both_stores  # the ledger fixture: SQLite and PostgreSQL

SYNC = 0.1


async def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = await trio.to_thread.run_sync(main, list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def _table(out: str) -> dict[str, dict[str, str]]:
    """The CLI's table by its first column (cells may hold spaces: columns are cut at the header's offsets)."""
    lines = out.splitlines()
    starts = [m.start() for m in re.finditer(r"\S+", lines[0])]
    names = lines[0].split()
    rows = [dict(zip(names, (line[a:b].strip() for a, b in zip(starts, starts[1:] + [None])))) for line in lines[1:]]
    return {row[names[0]]: row for row in rows}


async def _health_channels(alice) -> dict[str, dict]:
    async with alice.http() as http:
        return {c["name"]: c for c in (await http.get("/health")).json()["upstream"]["channels"]}


async def _until(alice, name: str, state: str) -> dict:
    """The channel's /health row once it is in ``state`` (a few sync rounds at most)."""
    with trio.fail_after(5):
        while (channel := (await _health_channels(alice))[name])["state"] != state:
            await trio.sleep(SYNC / 2)
    return channel


async def _listed(capsys, db: str, name: str, requests: str) -> tuple[dict[str, dict[str, str]], str, str]:
    """``upstream list`` once the gateway has published ``requests`` for ``name``."""
    with trio.fail_after(5):
        while True:
            code, out, err = await _cli(capsys, "upstream", "list", "--db", db)
            assert code == 0, err
            rows = _table(out)
            if rows[name]["requests"] == requests:
                return rows, out, err
            await trio.sleep(SYNC)


async def test_the_cli_disables_and_enables_a_channel_of_a_running_gateway(nursery, config, capsys):
    primary = await _simulator(nursery)
    backup = await _simulator(nursery)
    running, alice = await _gateway(nursery, replace(config, channel_sync_interval=SYNC),
                                    [_channel("primary", primary.url), _channel("backup", backup.url, priority=1)])
    db = config.database_url
    await _ask(alice.anthropic(), "before")
    assert (len(primary.seen()), len(backup.seen())) == (1, 0)

    code, out, _ = await _cli(capsys, "upstream", "disable", "primary", "--reason", "maintenance", "--db", db)
    assert code == 0 and "disabled upstream channel primary" in out
    channel = await _until(alice, "primary", "disabled")
    assert channel["disabled_reason"] == "disabled by the operator: maintenance"
    for i in range(3):
        await _ask(alice.anthropic(), f"while disabled {i}")
    assert (len(primary.seen()), len(backup.seen())) == (1, 3)

    rows, out, err = await _listed(capsys, db, "backup", "3")
    assert list(rows) == ["primary", "backup"]
    assert rows["primary"]["state"] == "disabled (disabled by the operator: maintenance)"
    assert (rows["primary"]["requests"], rows["primary"]["failures"], rows["primary"]["in_flight"]) == ("1", "0", "0")
    assert (rows["backup"]["state"], rows["backup"]["url"], rows["backup"]["priority"]) == ("healthy", backup.url, "1")
    assert "1 running gateway instance" in err and UPSTREAM_KEY not in out + err

    code, out, _ = await _cli(capsys, "upstream", "enable", "primary", "--db", db)
    assert code == 0 and "enabled upstream channel primary" in out
    await _until(alice, "primary", "healthy")
    await _ask(alice.anthropic(), "after")
    assert (len(primary.seen()), len(backup.seen())) == (2, 3)
    # What the instance publishes (and the store keeps) never holds a key.
    raw = raw_ledger(db)
    published = raw.execute("SELECT channels FROM channel_snapshots").fetchall()
    raw.close()
    assert published and UPSTREAM_KEY not in repr(published)


async def test_two_gateways_on_one_ledger_are_listed_together_and_both_obey(nursery, config, capsys):
    primary = await _simulator(nursery)
    backup = await _simulator(nursery)
    one, alice = await _gateway(nursery, replace(config, channel_sync_interval=SYNC),
                                [_channel("primary", primary.url), _channel("backup", backup.url, priority=1)])
    two = await nursery.start(serve, one.gateway.config)
    alice_two = Account(alice.username, alice.key, two)
    await _ask(alice.anthropic(), "on one")
    for i in range(2):
        await _ask(alice_two.anthropic(), f"on two {i}")
    rows, _, err = await _listed(capsys, config.database_url, "primary", "3")
    assert rows["primary"]["state"] == "healthy" and "2 running gateway instance" in err
    assert (await _cli(capsys, "upstream", "disable", "primary", "--db", config.database_url))[0] == 0
    await _until(alice, "primary", "disabled")
    await _until(alice_two, "primary", "disabled")
    await _ask(alice_two.anthropic(), "after")
    assert (len(primary.seen()), len(backup.seen())) == (3, 1)


async def test_an_operator_enable_clears_a_refused_credential(nursery, config, capsys):
    bad = await _simulator(nursery)
    good = await _simulator(nursery)
    running, alice = await _gateway(nursery, replace(config, channel_sync_interval=SYNC),
                                    [_channel("bad", bad.url, key="sk-wrong"), _channel("good", good.url, priority=1)])
    await _ask(alice.anthropic())
    assert (await _health_channels(alice))["bad"]["state"] == "disabled"
    bad.state.api_key = "sk-wrong"  # the provider's side is fixed
    await _ask(alice.anthropic(), "still disabled")
    assert (len(bad.seen()), len(good.seen())) == (1, 2)
    assert (await _cli(capsys, "upstream", "enable", "bad", "--db", config.database_url))[0] == 0
    await _until(alice, "bad", "healthy")
    await _ask(alice.anthropic(), "served by bad again")
    assert (len(bad.seen()), len(good.seen())) == (2, 2)


async def test_usage_rows_name_the_channel_and_attempts_after_a_failover(nursery, config, capsys):
    primary = await _simulator(nursery, fault="529")
    backup = await _simulator(nursery)
    running, alice = await _gateway(nursery, config, [_channel("primary", primary.url),
                                                      _channel("backup", backup.url, priority=1)],
                                    cooldown=0)  # the primary does not rest: it is tried first every time
    await _ask(alice.anthropic(), "whole")
    async for _ in await _ask(alice.anthropic(), "streamed", stream=True):
        pass
    rows = await _rows(running, 2)
    assert [(r.channel, r.attempts, r.status) for r in rows] == [("backup", 2, 200), ("backup", 2, 200)]
    assert len(primary.seen()) == 2 and len(backup.seen()) == 2
    code, out, _ = await _cli(capsys, "usage", "alice", "--db", config.database_url)
    listed = list(_table(out).values())
    assert code == 0 and [(r["channel"], r["attempts"]) for r in listed] == [("backup", "2"), ("backup", "2")]


async def test_a_request_no_channel_served_still_says_how_many_were_tried(nursery, config):
    a = await _simulator(nursery, fault="529")
    b = await _simulator(nursery, fault="500")
    running, alice = await _gateway(nursery, config, [_channel("a", a.url), _channel("b", b.url)],
                                    cooldown=0, failures_to_open=10)  # both are tried every time
    with pytest.raises(anthropic.APIStatusError):
        await _ask(alice.anthropic(), "whole")
    with pytest.raises(anthropic.APIStatusError):
        async for _ in await _ask(alice.anthropic(), "streamed", stream=True):
            pass
    rows = await _rows(running, 2)
    assert [(r.channel, r.attempts, r.status, r.cost) for r in rows] == [(None, 2, 529, 0), (None, 2, 529, 0)]


async def test_a_single_upstream_is_the_channel_named_default(gateway, simulator, config, capsys):
    alice = await make_account(gateway)
    await _ask(alice.anthropic())
    [row] = await _rows(gateway, 1)
    assert (row.channel, row.attempts) == ("default", 1)
    code, out, err = await _cli(capsys, "upstream", "list", "--db", config.database_url)
    rows = _table(out)
    assert code == 0 and list(rows) == ["default"] and rows["default"]["url"] == simulator.url
    assert rows["default"]["state"] == "healthy" and "1 running gateway instance" in err
    code, out, err = await _cli(capsys, "upstream", "disable", "default", "--reason", "maintenance",
                                "--db", config.database_url)
    assert code == 0 and "default" in out


async def test_without_a_gateway_the_configuration_is_listed_and_names_are_checked(tmp_path, ledger, capsys):
    db = ledger
    assert (await _cli(capsys, "user", "create", "carol", "--db", db))[0] == 0
    config = tmp_path / "c.toml"
    config.write_text('[[upstreams]]\nname = "a"\nurl = "https://a.example"\napi_key = "sk-secret-a"\n'
                      '[[upstreams]]\nname = "b"\nurl = "https://b.example"\napi_key = "sk-secret-b"\n'
                      'priority = 1\nenabled = false\n')
    common = ("--db", db, "--config", str(config))
    code, out, err = await _cli(capsys, "upstream", "disable", "nope", *common)
    assert code == 1 and err == "cheaplm: no upstream channel named 'nope' (channels: a, b)\n"
    assert (await _cli(capsys, "upstream", "disable", "a", "--reason", "rotating\nits key", *common))[0] == 0
    code, out, err = await _cli(capsys, "upstream", "list", *common)
    rows = _table(out)
    assert rows["a"]["state"] == "disabled (disabled by the operator: rotating its key)"
    assert rows["b"]["state"] == "disabled (disabled in the configuration)" and rows["b"]["requests"] == "-"
    assert "no gateway is running" in err and "sk-secret" not in out + err


@pytest.mark.parametrize("value", ["0", "-1", "nan"])
def test_the_sync_interval_must_be_positive(tmp_path, capsys, value):
    config = tmp_path / "c.toml"
    config.write_text(f"channel_sync_interval = {value}\n")
    assert main(["upstream", "list", "--config", str(config), "--db", str(tmp_path / "x.db")]) == 1
    assert "channel_sync_interval must be a positive number" in capsys.readouterr().err
