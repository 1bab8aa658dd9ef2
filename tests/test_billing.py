from proxy.billing import IMAGE_TOKENS, estimate_input_tokens, hold_amount, usage_cost
from proxy.catalog import default_catalog
from proxy.money import round_half_up
from proxy.protocol.usage import Usage


def test_usage_cost_prices_each_lane():
    sonnet = default_catalog().resolve("claude-sonnet-4.5").prices
    usage = Usage(input_tokens=472, cache_write_5m=60, cache_write_1h=40, cache_read=2000, output_tokens=89)
    exact = 472 * 3_000_000 + 60 * 3_000_000 + 40 * 3_000_000 + 2000 * 300_000 + 89 * 15_000_000
    assert usage_cost(usage, sonnet) == round_half_up(exact, 10**6) == 3651


def test_hold_is_worst_case():
    model = default_catalog().resolve("claude-opus-4.6")
    assert hold_amount(model, 1000, 500) == 1000 * 5 + 500 * 25
    assert hold_amount(model, 0, 0) == 0


def test_estimate_counts_text_images_and_tools():
    text_only = {"messages": [{"role": "user", "content": "x" * 400}]}
    assert 134 <= estimate_input_tokens(text_only) <= 150
    cjk = {"messages": [{"role": "user", "content": "漢" * 300}]}  # about one token a character
    assert estimate_input_tokens(cjk) >= 300
    with_image = {"messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "A" * 1_000_000}},
        {"type": "text", "text": "what is this"}]}]}
    assert IMAGE_TOKENS <= estimate_input_tokens(with_image) < IMAGE_TOKENS + 50
    with_system_tools = {"system": [{"type": "text", "text": "s" * 800}], "messages": [],
                         "tools": [{"name": "t", "description": "d" * 400, "input_schema": {"type": "object"}}]}
    assert estimate_input_tokens(with_system_tools) > 300
