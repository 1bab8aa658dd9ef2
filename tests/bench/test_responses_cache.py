"""bench/responses_cache.py on a short conversation: with automatic caching the resent
prefix is read from the simulator's cache from the second request on; without, never."""

from __future__ import annotations

from bench.responses_cache import measure


async def test_auto_cache_reads_the_resent_prefix(tmp_path):
    on = await measure(True, 2, tmp_path)
    off = await measure(False, 2, tmp_path)
    assert on["requests"] == off["requests"] == 4
    assert off["cache_read"] == off["cache_write"] == 0
    # the first request writes ~10k tokens of instructions and tools, the three after read them
    assert on["cache_write"] > 10_000 and on["cache_read"] > 3 * 10_000
    assert on["cache_read"] > 0.7 * on["prompt_tokens"]
    assert on["cost"] < off["cost"] / 2
