"""Token usage by price lane, read from Anthropic ``usage`` objects. Pure."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    cache_read: int = 0
    output_tokens: int = 0

    @property
    def cache_write(self) -> int:
        return self.cache_write_5m + self.cache_write_1h

    @property
    def prompt_tokens(self) -> int:
        return self.input_tokens + self.cache_write + self.cache_read

    def merged(self, usage: dict) -> "Usage":
        """Fold in an Anthropic usage object; absent or null fields keep their value.

        Streaming usage is cumulative (``message_delta`` repeats totals), so a
        field that appears replaces the previous figure rather than adding to it.
        """
        if not isinstance(usage, dict):
            return self
        changes: dict[str, int] = {}
        for key, lane in (("input_tokens", "input_tokens"), ("cache_read_input_tokens", "cache_read"),
                          ("output_tokens", "output_tokens")):
            value = usage.get(key)
            if isinstance(value, int) and value >= 0:
                changes[lane] = value
        split = usage.get("cache_creation")
        total = usage.get("cache_creation_input_tokens")
        if isinstance(split, dict) and (
                isinstance(split.get("ephemeral_5m_input_tokens"), int)
                or isinstance(split.get("ephemeral_1h_input_tokens"), int)):
            five = split.get("ephemeral_5m_input_tokens") or 0
            hour = split.get("ephemeral_1h_input_tokens") or 0
            # If the total disagrees with the split, the unexplained rest is 5-minute writes.
            if isinstance(total, int) and total > five + hour:
                five += total - five - hour
            changes["cache_write_5m"], changes["cache_write_1h"] = five, hour
        elif isinstance(total, int) and total >= 0:
            changes["cache_write_5m"], changes["cache_write_1h"] = total, 0
        return replace(self, **changes) if changes else self

    def with_output_at_least(self, tokens: int) -> "Usage":
        return self if tokens <= self.output_tokens else replace(self, output_tokens=tokens)

    def as_dict(self) -> dict[str, int]:
        return {"input_tokens": self.input_tokens, "cache_write_5m": self.cache_write_5m,
                "cache_write_1h": self.cache_write_1h, "cache_read": self.cache_read,
                "output_tokens": self.output_tokens}
