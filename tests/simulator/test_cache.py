"""The simulator's prompt cache (proxy/upstream/sim_cache.py): breakpoints, reads of the
longest cached prefix, writes up to the last breakpoint, TTL, one cache per instance."""

from proxy.simulator.cache import TTL, PromptCache, boundaries

SYSTEM = [{"type": "text", "text": "You are a coding agent. " * 200, "cache_control": {"type": "ephemeral"}}]


def _turns(n: int) -> dict:
    """A conversation of n user turns, the last user message marked (as Claude Code does)."""
    messages = []
    for i in range(n):
        if i:
            messages.append({"role": "assistant", "content": f"answer {i} " * 50})
        messages.append({"role": "user", "content": [{"type": "text", "text": f"question {i} " * 50}]})
    messages[-1]["content"][-1]["cache_control"] = {"type": "ephemeral"}
    return {"model": "m", "system": SYSTEM, "messages": messages, "max_tokens": 10}


def test_no_breakpoint_no_cache_figures():
    assert PromptCache().use({"model": "m", "messages": [{"role": "user", "content": "hi"}]}, 0) is None


def test_a_conversation_reads_what_its_previous_turn_wrote():
    cache = PromptCache()
    first = cache.use(_turns(1), 0)
    marks = [b for b in boundaries(_turns(1))[0] if b.marked]
    assert first.read == 0 and first.written == marks[-1].tokens and first.uncached >= 1
    second = cache.use(_turns(2), 1)
    # The system prompt and turn 1 (up to its old breakpoint) are read; the new turn written.
    assert second.read == marks[-1].tokens and second.written > 0
    third = cache.use(_turns(3), 2)
    assert third.read == [b for b in boundaries(_turns(2))[0] if b.marked][-1].tokens


def test_another_instance_has_its_own_cache():
    a, b = PromptCache(), PromptCache()
    a.use(_turns(1), 0)
    assert b.use(_turns(2), 1).read == 0 and a.use(_turns(2), 1).read > 0


def test_entries_expire_after_the_ttl_unless_read():
    cache = PromptCache()
    cache.use(_turns(1), 0)
    assert cache.use(_turns(1), TTL - 1).read > 0  # a hit refreshes
    assert cache.use(_turns(1), 2 * TTL - 2).read > 0
    assert cache.use(_turns(1), 4 * TTL).read == 0


def test_the_prefix_includes_the_model():
    cache = PromptCache()
    cache.use(_turns(1), 0)
    assert cache.use({**_turns(2), "model": "other"}, 1).read == 0
