"""A model's output cap applied to an Anthropic Messages body. Pure.

Coding tools ask for more output than a model's documented maximum by default
(Claude Code sends ``max_tokens: 32000`` with a thinking budget of 31999; OpenCode's
title request 48000; Continue 32000). Under the ``clamp`` policy such a request is
served with ``max_tokens`` lowered to the cap, and an enabled thinking budget
lowered with it so that it stays at least 1024 and below ``max_tokens`` (thinking
is dropped when that is impossible). Under ``reject`` it is refused, as Anthropic
would refuse it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MIN_THINKING_BUDGET = 1024


class OutputCapExceeded(ValueError):
    pass


@dataclass(frozen=True)
class CapResult:
    max_tokens: int
    clamped_from: int | None = None        # the client's max_tokens, when lowered
    thinking_budget: int | None = None     # the new budget, when lowered
    thinking_dropped: bool = False

    @property
    def changed(self) -> bool:
        return self.clamped_from is not None


def apply_output_cap(body: dict[str, Any], cap: int, policy: str, param: str = "max_tokens") -> CapResult:
    """Check ``body["max_tokens"]`` (a validated positive int) against ``cap``; under
    ``clamp`` edit ``body`` in place (``max_tokens`` and ``thinking``)."""
    asked = body["max_tokens"]
    if asked <= cap:
        return CapResult(asked)
    if policy != "clamp":
        raise OutputCapExceeded(f"{param}: {asked} > {cap}, which is the maximum allowed number of output "
                                f"tokens for this model")
    body["max_tokens"] = cap
    thinking = body.get("thinking")
    if not isinstance(thinking, dict) or thinking.get("type") != "enabled":
        return CapResult(cap, asked)
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < cap:
        return CapResult(cap, asked)
    if cap - 1 < MIN_THINKING_BUDGET:
        del body["thinking"]
        return CapResult(cap, asked, thinking_dropped=True)
    body["thinking"] = {**thinking, "budget_tokens": cap - 1}
    return CapResult(cap, asked, thinking_budget=cap - 1)
