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
    # Server tool uses by kind (``usage.server_tool_use.web_search_requests`` -> ("web_search", n)),
    # sorted by kind, zero counts left out.
    server_tools: tuple[tuple[str, int], ...] = ()

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
        tools = server_tool_counts(usage.get("server_tool_use"))
        if tools is not None:
            changes["server_tools"] = tools
        return replace(self, **changes) if changes else self

    def with_output_at_least(self, tokens: int) -> "Usage":
        return self if tokens <= self.output_tokens else replace(self, output_tokens=tokens)

    def server_tools_json(self) -> str | None:
        """The server tool uses as a compact JSON object (``{"web_search":3}``), None for none."""
        if not self.server_tools:
            return None
        return "{" + ",".join(f'"{kind}":{count}' for kind, count in self.server_tools) + "}"

    def as_dict(self) -> dict[str, int]:
        return {"input_tokens": self.input_tokens, "cache_write_5m": self.cache_write_5m,
                "cache_write_1h": self.cache_write_1h, "cache_read": self.cache_read,
                "output_tokens": self.output_tokens}


def server_tool_counts(value: object) -> tuple[tuple[str, int], ...] | None:
    """The per-use counts of an Anthropic ``server_tool_use`` object (every
    ``<kind>_requests`` integer), or None when there is no such object. Kinds are plain
    names (letters, digits, underscores), so they can be written as JSON keys as they are."""
    if not isinstance(value, dict):
        return None
    counts = []
    for key, count in value.items():
        if (isinstance(key, str) and key.endswith("_requests") and isinstance(count, int)
                and not isinstance(count, bool) and count > 0):
            kind = key[: -len("_requests")]
            if kind and kind.replace("_", "").isalnum() and kind.isascii():
                counts.append((kind, count))
    return tuple(sorted(counts))
