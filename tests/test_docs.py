"""The manual in docs/ names every setting and every ``cheaplm`` command (as datasette's
docs test does for its settings and plugin hooks).

The settings come from ``proxy.config.known_keys()`` (built from the tables load_config
parses with) and must each appear, in backticks, in docs/configuration.md; the commands,
subcommands and flags come from walking ``proxy.cli.build_parser()`` and must each appear
in docs/operations.md. Each check is also run on a copy of the page with one name removed,
so the test is known to fail when a name goes missing.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _page(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def missing_settings(text: str, keys) -> list[str]:
    return sorted(k for k in keys if f"`{k}`" not in text)


def cli_names(parser: argparse.ArgumentParser, prefix: str = "cheaplm"):
    """Every command path (``cheaplm user create``) and every flag it takes (``--rpm``)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                path = f"{prefix} {name}"
                yield "command", path
                yield from cli_names(sub, path)
        elif action.option_strings and not isinstance(action, argparse._HelpAction):
            for option in action.option_strings:
                if option.startswith("--"):
                    yield "flag", option


def _mentioned(kind: str, name: str, text: str) -> bool:
    if kind == "command":
        return re.search(rf"`{re.escape(name)}(?![\w-])", text) is not None
    return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text) is not None


def missing_cli(text: str, names) -> list[str]:
    return sorted({name for kind, name in names if not _mentioned(kind, name, text)})


@pytest.fixture(scope="module")
def settings():
    from proxy.config import known_keys
    return known_keys()


@pytest.fixture(scope="module")
def cli():
    from proxy.cli.main import build_parser
    return sorted(set(cli_names(build_parser())))


def test_every_setting_and_env_var_is_in_the_configuration_reference(settings):
    assert missing_settings(_page("configuration.md"), settings) == [], (
        "settings proxy.config accepts that docs/configuration.md does not name")


def test_known_keys_cover_each_table_of_the_config(settings):
    for key in ("db_path", "upstream.url", "upstreams[].api_key_env", "routing.cooldown",
                "accounts.webhook_secret", "models.ID.prices.cache_read", "CHEAPLM_UPSTREAM_API_KEY",
                "CHEAPLM_CONFIG", "trusted_proxies"):
        assert key in settings


def test_every_cli_command_subcommand_and_flag_is_in_the_operations_page(cli):
    assert missing_cli(_page("operations.md"), cli) == [], (
        "cheaplm commands or flags that docs/operations.md does not name")


def test_the_walk_sees_nested_subcommands_and_flags(cli):
    assert ("command", "cheaplm user create") in cli
    assert ("command", "cheaplm db check") in cli
    assert ("flag", "--daily-usd") in cli
    assert ("flag", "--help") not in cli


def test_a_missing_setting_fails(settings):
    text = _page("configuration.md")
    for key in ("routing.open_max", "CHEAPLM_LOG_FORMAT", "port"):
        assert missing_settings(text.replace(f"`{key}`", "``"), settings) == [key]


def test_a_missing_command_or_flag_fails(cli):
    text = _page("operations.md")
    without_command = text.replace("`cheaplm upstream disable", "`cheaplm upstream off")
    assert missing_cli(without_command, cli) == ["cheaplm upstream disable"]
    without_flag = re.sub(r"(?<![\w-])--prompt-cache(?![\w-])", "", text)
    assert missing_cli(without_flag, cli) == ["--prompt-cache"]


def test_relative_links_in_the_readme_and_docs_point_at_files():
    root = DOCS.parent
    broken = []
    for page in [root / "README.md", root / "CHANGELOG.md", *sorted(DOCS.glob("*.md"))]:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
            path = target.split("#", 1)[0]
            if path and "://" not in path and not (page.parent / path).exists():
                broken.append(f"{page.relative_to(root)}: {target}")
    assert broken == []
