"""Server tools are billed per use at the catalog's prices, held for what a request allows."""

from __future__ import annotations

import pytest

from proxy.billing import (DEFAULT_MAX_USES, allowed_server_tool_uses, hold_amount, server_tools_hold,
                           usage_cost)
from proxy.catalog import UNLISTED_SERVER_TOOL, default_catalog
from proxy.config import ConfigError, load_config
from proxy.protocol.usage import Usage

SONNET = default_catalog().resolve("claude-sonnet-4.5")


def test_usage_reads_every_per_use_server_tool():
    usage = Usage().merged({"input_tokens": 10, "output_tokens": 5, "server_tool_use": {
        "web_search_requests": 3, "web_fetch_requests": 1, "bogus": 4, "odd_requests": True, "no_requests": 0}})
    assert usage.server_tools == (("web_fetch", 1), ("web_search", 3))
    assert usage.server_tools_json() == '{"web_fetch":1,"web_search":3}'
    # streaming usage is cumulative: a later figure replaces the earlier one
    assert usage.merged({"server_tool_use": {"web_search_requests": 5}}).server_tools == (("web_search", 5),)
    assert usage.merged({"output_tokens": 7}).server_tools == usage.server_tools


def test_web_search_costs_a_cent_a_search_at_list_price():
    base = usage_cost(Usage(input_tokens=1000, output_tokens=100), SONNET.prices)
    searched = usage_cost(Usage(input_tokens=1000, output_tokens=100, server_tools=(("web_search", 3),)),
                          SONNET.prices)
    assert searched - base == 30_000  # 3 x $0.01
    fetched = usage_cost(Usage(server_tools=(("web_fetch", 2),)), SONNET.prices)
    assert fetched == 0  # web fetch: no charge beyond its tokens
    assert usage_cost(Usage(server_tools=(("new_tool", 1),)), SONNET.prices) == UNLISTED_SERVER_TOOL


def test_the_hold_covers_the_allowed_uses():
    body = {"tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
                      {"type": "web_fetch_20250910", "name": "web_fetch"},
                      {"type": "bash_20250124", "name": "bash"},
                      {"name": "lookup", "input_schema": {"type": "object"}}]}
    assert allowed_server_tool_uses(body) == (("bash", DEFAULT_MAX_USES), ("web_fetch", DEFAULT_MAX_USES),
                                              ("web_search", 5))
    assert server_tools_hold(body, SONNET.prices) == 5 * 10_000  # bash is a client tool: not priced
    assert hold_amount(SONNET, 100, 10, body) == hold_amount(SONNET, 100, 10) + 50_000
    unbounded = {"tools": [{"type": "web_search_20250305", "name": "web_search"}]}
    assert server_tools_hold(unbounded, SONNET.prices) == DEFAULT_MAX_USES * 10_000
    assert server_tools_hold({"tools": "nope"}, SONNET.prices) == 0


def test_prices_come_from_the_config(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[server_tools]\nweb_search = "0.02"\nweb_fetch = 0.001\n'
                    '[models.claude-haiku-4-5]\nserver_tools = {web_search = "0.005"}\n')
    catalog = load_config(str(path), env={}).catalog()
    assert catalog.resolve("claude-sonnet-4.5").prices.server_tool("web_search") == 20_000
    assert catalog.resolve("claude-sonnet-4.5").prices.server_tool("web_fetch") == 1_000
    assert catalog.resolve("claude-haiku-4.5").prices.server_tool("web_search") == 5_000
    assert catalog.resolve("claude-haiku-4.5").prices.server_tool("web_fetch") == 1_000


@pytest.mark.parametrize("text", ['[server_tools]\nweb_search = "-1"\n', '[server_tools]\nweb_search = "abc"\n',
                                  'server_tools = 3\n', '[server_tools]\nweb_search = 1000\n',
                                  '[models.claude-haiku-4-5]\nserver_tools = {web_search = "x"}\n'])
def test_bad_server_tool_prices_are_config_errors(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError):
        load_config(str(path), env={})
