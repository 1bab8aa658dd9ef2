"""The model catalog: ids and aliases, limits, price lanes, upstream ids, endpoints.

Built-in defaults follow the product docs (models table and pricing page); every
field can be overridden, and models added, from the config file's ``[models.ID]``
tables. Pure: no I/O.

Aliases: a model answers to its dotted id (``claude-sonnet-4.5``), the dashed
form (``claude-sonnet-4-5``), any dated form (``claude-sonnet-4-5-20250929``),
``-latest``, its upstream id, and any extra aliases listed for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Iterable, Mapping

from .money import parse_usd, scale

LANES = ("input", "cache_write_5m", "cache_write_1h", "cache_read", "output")
ENDPOINTS = ("messages", "chat", "responses")

# Server tools the upstream bills per use (usage.server_tool_use.<kind>_requests), in
# micro-USD a use: Anthropic's list prices (web search $10 per 1,000; web fetch has no
# charge beyond its tokens). A kind not listed here nor in the config's [server_tools] is
# billed at UNLISTED_SERVER_TOOL, web search's price.
DEFAULT_SERVER_TOOLS: tuple[tuple[str, int], ...] = (("web_fetch", 0), ("web_search", 10_000))
UNLISTED_SERVER_TOOL = 10_000
MAX_SERVER_TOOL_USD = 100  # the highest price a [server_tools] entry may set, per use

CACHE_READ_FACTOR = Decimal("0.1")  # cache reads cost a tenth of the input price
_DATE_SUFFIX = re.compile(r"-(\d{8}|latest)$")


@dataclass(frozen=True)
class Prices:
    """Integer micro-USD per one million tokens, one field per lane."""

    input: int
    cache_write_5m: int
    cache_write_1h: int
    cache_read: int
    output: int
    server_tools: tuple[tuple[str, int], ...] = DEFAULT_SERVER_TOOLS  # (kind, micro-USD per use), by kind

    def as_usd(self) -> dict[str, float]:
        return {lane: getattr(self, lane) / 1_000_000 for lane in LANES}

    def server_tool(self, kind: str) -> int:
        """Micro-USD for one use of server tool ``kind`` (``web_search``)."""
        return dict(self.server_tools).get(kind, UNLISTED_SERVER_TOOL)


@dataclass(frozen=True)
class Model:
    id: str
    display_name: str
    upstream_id: str
    max_input: int
    max_output: int
    thinking: bool
    vision: bool
    prices: Prices
    created_at: str = "2025-01-01T00:00:00Z"
    aliases: tuple[str, ...] = ()
    endpoints: tuple[str, ...] = ENDPOINTS
    max_tokens_policy: str | None = None  # clamp | reject; None: the global setting

    @property
    def family(self) -> str | None:
        return family_of(self.id)


def _prices(input_usd: str, output_usd: str, cache_write_usd: str | None = None) -> Prices:
    """Lanes from the docs: cache write priced as listed (or as input), cache read 90% off."""
    inp = parse_usd(input_usd)
    write = parse_usd(cache_write_usd) if cache_write_usd is not None else inp
    return Prices(input=inp, cache_write_5m=write, cache_write_1h=write,
                  cache_read=scale(inp, CACHE_READ_FACTOR), output=parse_usd(output_usd))


DEFAULT_MODELS: tuple[Model, ...] = (
    Model("claude-opus-4.6", "Claude Opus 4.6", "claude-opus-4-6", 200_000, 32_000, True, True,
          _prices("5.00", "25.00"), "2026-02-05T00:00:00Z"),
    Model("claude-opus-4.5", "Claude Opus 4.5", "claude-opus-4-5-20251101", 200_000, 32_000, True, True,
          _prices("5.00", "25.00"), "2025-11-24T00:00:00Z"),
    Model("claude-opus-4", "Claude Opus 4", "claude-opus-4-20250514", 200_000, 32_000, True, True,
          _prices("15.00", "75.00"), "2025-05-22T00:00:00Z"),
    Model("claude-sonnet-4.6", "Claude Sonnet 4.6", "claude-sonnet-4-6", 200_000, 8192, True, True,
          _prices("3.00", "15.00"), "2026-02-17T00:00:00Z"),
    Model("claude-sonnet-4.5", "Claude Sonnet 4.5", "claude-sonnet-4-5-20250929", 200_000, 8192, True, True,
          _prices("3.00", "15.00"), "2025-09-29T00:00:00Z"),
    Model("claude-sonnet-4", "Claude Sonnet 4", "claude-sonnet-4-20250514", 200_000, 16_000, True, True,
          _prices("3.00", "15.00"), "2025-05-22T00:00:00Z"),
    Model("claude-haiku-4.5", "Claude Haiku 4.5", "claude-haiku-4-5-20251001", 200_000, 8192, False, True,
          _prices("1.00", "5.00"), "2025-10-15T00:00:00Z"),
    Model("claude-haiku-3.5", "Claude Haiku 3.5", "claude-3-5-haiku-20241022", 200_000, 8192, False, True,
          _prices("0.80", "4.00"), "2024-10-22T00:00:00Z", aliases=("claude-3-5-haiku", "claude-3.5-haiku")),
)


FAMILIES = ("opus", "sonnet", "haiku")
MAX_TOKENS_POLICIES = ("clamp", "reject")
_WORD = re.compile(r"[a-z]+")


def family_of(model_id: str) -> str | None:
    """The model family an id names (``claude-sonnet-5`` -> ``sonnet``); None for none,
    or for an id naming two (``opus-haiku``: which one the client meant is not known)."""
    words = set(_WORD.findall(model_id.lower()))
    named = [f for f in FAMILIES if f in words]
    return named[0] if len(named) == 1 else None


def normalize(model_id: str) -> str:
    """Lower-case, dots to dashes, date or ``-latest`` suffix removed."""
    key = model_id.strip().lower().replace(".", "-")
    return _DATE_SUFFIX.sub("", key)


@dataclass(frozen=True)
class Catalog:
    models: tuple[Model, ...]
    _index: Mapping[str, Model] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def build(cls, models: Iterable[Model]) -> "Catalog":
        models = tuple(models)
        index: dict[str, Model] = {}
        for model in models:
            for name in (model.id, model.upstream_id, *model.aliases):
                for key in (name.lower(), normalize(name)):
                    if key in index and index[key] is not model:
                        raise ValueError(f"model alias {name!r} is claimed by {index[key].id} and {model.id}")
                    index[key] = model
        return cls(models, index)

    def resolve(self, model_id: str) -> Model | None:
        if not isinstance(model_id, str):
            return None
        return self._index.get(model_id.strip().lower()) or self._index.get(normalize(model_id))

    def for_endpoint(self, endpoint: str) -> tuple[Model, ...]:
        return tuple(m for m in self.models if endpoint in m.endpoints)

    def newest_of_family(self, model_id: str, endpoint: str) -> Model | None:
        """For an id the catalog does not know that names a known family (a model newer
        than the catalog, such as ``claude-opus-4-8``): the newest catalog model of that
        family served on ``endpoint``."""
        family = family_of(model_id) if isinstance(model_id, str) else None
        if family is None:
            return None
        candidates = [m for m in self.models if m.family == family and endpoint in m.endpoints]
        return max(candidates, key=lambda m: m.created_at, default=None)


def default_catalog() -> Catalog:
    return Catalog.build(DEFAULT_MODELS)


_MODEL_FIELDS = {"display_name", "upstream_id", "max_input", "max_output", "thinking", "vision",
                 "created_at", "aliases", "endpoints", "prices", "max_tokens_policy", "server_tools"}


def server_tool_prices(table: Mapping[str, object], base: tuple[tuple[str, int], ...]) -> tuple[tuple[str, int], ...]:
    """``base`` with a ``[server_tools]`` table's prices (USD per use) laid over it, by kind."""
    merged = dict(base)
    merged.update({kind: parse_usd(value) for kind, value in table.items()})
    return tuple(sorted(merged.items()))


def apply_overrides(base: Iterable[Model], overrides: Mapping[str, Mapping],
                    server_tools: Mapping[str, object] | None = None) -> tuple[Model, ...]:
    """Merge config ``[models.ID]`` tables into the defaults.

    An existing id (any alias form) is updated field by field; a new id must give
    ``upstream_id``, ``max_output`` and ``prices.input``/``prices.output``.
    Prices are USD per million tokens, as strings or numbers. ``server_tools`` (the
    ``[server_tools]`` table, USD per use by kind) applies to every model; a model's own
    ``server_tools`` table to that model, over it.
    """
    models = {m.id: m for m in base}
    if server_tools:
        models = {i: replace(m, prices=replace(m.prices, server_tools=server_tool_prices(
            server_tools, m.prices.server_tools))) for i, m in models.items()}
    lookup = Catalog.build(models.values())
    for model_id, table in overrides.items():
        unknown = set(table) - _MODEL_FIELDS
        if unknown:
            raise ValueError(f"models.{model_id}: unknown field(s) {sorted(unknown)}")
        existing = lookup.resolve(model_id)
        price_table = dict(table.get("prices", {}))
        bad_lanes = set(price_table) - set(LANES)
        if bad_lanes:
            raise ValueError(f"models.{model_id}.prices: unknown lane(s) {sorted(bad_lanes)}")
        own_tools = table.get("server_tools") or {}
        fields = {k: v for k, v in table.items() if k not in ("prices", "server_tools")}
        for k in ("aliases", "endpoints"):
            if k in fields:
                fields[k] = tuple(fields[k])
        if existing is not None:
            prices = replace(models[existing.id].prices, **{k: parse_usd(v) for k, v in price_table.items()})
            prices = replace(prices, server_tools=server_tool_prices(own_tools, prices.server_tools))
            models[existing.id] = replace(existing, prices=prices, **fields)
            continue
        try:
            inp, out = price_table["input"], price_table["output"]
            prices = _prices(str(inp), str(out), None)
            prices = replace(prices, **{k: parse_usd(v) for k, v in price_table.items()})
            prices = replace(prices, server_tools=server_tool_prices(
                {**(server_tools or {}), **own_tools}, prices.server_tools))
            models[model_id] = Model(
                id=model_id, display_name=fields.pop("display_name", model_id),
                upstream_id=fields.pop("upstream_id"), max_input=fields.pop("max_input", 200_000),
                max_output=fields.pop("max_output"), thinking=fields.pop("thinking", False),
                vision=fields.pop("vision", False), prices=prices, **fields)
        except KeyError as missing:
            raise ValueError(f"models.{model_id}: a new model needs {missing}") from None
    bad = [m.id for m in models.values() if set(m.endpoints) - set(ENDPOINTS)]
    if bad:
        raise ValueError(f"models {bad}: endpoints must be among {ENDPOINTS}")
    bad = [m.id for m in models.values() if m.max_tokens_policy not in (None, *MAX_TOKENS_POLICIES)]
    if bad:
        raise ValueError(f"models {bad}: max_tokens_policy must be one of {MAX_TOKENS_POLICIES}")
    return tuple(models.values())
