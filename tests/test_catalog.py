import pytest

from proxy.catalog import DEFAULT_MODELS, Catalog, apply_overrides, default_catalog, normalize


@pytest.mark.parametrize("alias,canonical", [
    ("claude-sonnet-4.5", "claude-sonnet-4.5"), ("claude-sonnet-4-5", "claude-sonnet-4.5"),
    ("claude-sonnet-4-5-20250929", "claude-sonnet-4.5"), ("CLAUDE-SONNET-4.5", "claude-sonnet-4.5"),
    ("claude-sonnet-4-5-latest", "claude-sonnet-4.5"), ("claude-sonnet-4", "claude-sonnet-4"),
    ("claude-sonnet-4-20250514", "claude-sonnet-4"), ("claude-haiku-4-5-20251001", "claude-haiku-4.5"),
    ("claude-opus-4-6", "claude-opus-4.6"), ("claude-opus-4.6", "claude-opus-4.6"),
    ("claude-opus-4-5-20251101", "claude-opus-4.5"), ("claude-opus-4", "claude-opus-4"),
    ("claude-haiku-3-5", "claude-haiku-3.5"), ("claude-3-5-haiku-20241022", "claude-haiku-3.5"),
    ("claude-3-5-haiku-latest", "claude-haiku-3.5"), ("claude-sonnet-4-6", "claude-sonnet-4.6"),
])
def test_aliases_resolve_to_one_entry(alias, canonical):
    assert default_catalog().resolve(alias).id == canonical


@pytest.mark.parametrize("unknown", ["gpt-4o", "claude-sonnet-5", "", "claude", 42, None])
def test_unknown_models(unknown):
    assert default_catalog().resolve(unknown) is None


def test_docs_figures():
    c = default_catalog()
    sonnet = c.resolve("claude-sonnet-4.5")
    assert (sonnet.max_input, sonnet.max_output, sonnet.thinking, sonnet.vision) == (200_000, 8192, True, True)
    assert (sonnet.prices.input, sonnet.prices.cache_write_5m, sonnet.prices.cache_read, sonnet.prices.output) == \
        (3_000_000, 3_000_000, 300_000, 15_000_000)
    haiku = c.resolve("claude-haiku-4.5")
    assert not haiku.thinking and haiku.prices.output == 5_000_000 and haiku.prices.cache_read == 100_000
    assert c.resolve("claude-opus-4").prices.output == 75_000_000
    assert c.resolve("claude-haiku-3.5").prices.input == 800_000
    assert c.resolve("claude-haiku-3.5").prices.cache_read == 80_000
    assert c.resolve("claude-opus-4.6").max_output == 32_000
    assert c.resolve("claude-sonnet-4").max_output == 16_000
    assert normalize("Claude-Sonnet-4.5-20250929") == "claude-sonnet-4-5"


def test_overrides_update_and_add():
    models = apply_overrides(DEFAULT_MODELS, {
        "claude-sonnet-4-5": {"max_output": 64000, "prices": {"output": "12.5"}, "endpoints": ["messages"]},
        "my-model": {"upstream_id": "upstream-x", "max_output": 1000, "prices": {"input": 1, "output": 2},
                     "aliases": ["mm"]},
    })
    c = Catalog.build(models)
    assert c.resolve("claude-sonnet-4.5").max_output == 64000
    assert c.resolve("claude-sonnet-4.5").prices.output == 12_500_000
    assert c.resolve("claude-sonnet-4.5").prices.input == 3_000_000
    assert [m.id for m in c.for_endpoint("chat")].count("claude-sonnet-4.5") == 0
    assert c.resolve("mm").upstream_id == "upstream-x" and c.resolve("my-model").prices.cache_read == 100_000


@pytest.mark.parametrize("bad", [
    {"claude-sonnet-4": {"colour": "red"}},
    {"claude-sonnet-4": {"prices": {"gold": 1}}},
    {"new-model": {"max_output": 5}},
    {"claude-sonnet-4": {"endpoints": ["fax"]}},
])
def test_bad_overrides(bad):
    with pytest.raises(ValueError):
        Catalog.build(apply_overrides(DEFAULT_MODELS, bad))


def test_alias_collision_refused():
    with pytest.raises(ValueError):
        Catalog.build(apply_overrides(DEFAULT_MODELS, {"claude-opus-4": {"aliases": ["claude-sonnet-4-5"]}}))


# -- model fallback ----------------------------------------------------------------------------

@pytest.mark.parametrize("model_id", ["opus-haiku", "haiku-opus"])
def test_ambiguous_family_does_not_fall_back(model_id):
    assert default_catalog().newest_of_family(model_id, "messages") is None
