"""The simulator's prompt cache, modelled on Anthropic's (opt-in: ``--prompt-cache``).

A request's ``cache_control`` breakpoints (on tools, system blocks and message blocks,
in that order) each mark a prefix to write. A prefix this simulator saw written within
the TTL is read from the cache wherever it ends (at any block boundary up to the last
breakpoint, as Anthropic looks back from a breakpoint): the longest counts as
``cache_read_input_tokens``;
what lies between it and the last breakpoint is written (``cache_creation_input_tokens``)
and the rest is plain input. Each instance has its own cache, as each upstream account
or region has: requests of one conversation spread over several channels miss it.

Pure: a clock is passed in; tokens are estimated at four bytes of JSON a token, as the
simulator's other figures are.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Iterator

TTL = 300.0          # Anthropic's default (5 minutes), refreshed on every hit
MAX_ENTRIES = 10_000
BYTES_PER_TOKEN = 4


@dataclass(frozen=True)
class Boundary:
    prefix: str      # a hash of everything up to and including this block
    tokens: int      # the prefix's size in tokens
    marked: bool     # a cache_control breakpoint


@dataclass(frozen=True)
class CacheUse:
    read: int
    written: int
    uncached: int    # input tokens after the last breakpoint


def _parts(body: dict) -> Iterator[Any]:
    """The prompt's pieces in cache order: tools, system blocks, message blocks."""
    yield from body.get("tools") or ()
    system = body.get("system")
    if isinstance(system, str):
        yield {"type": "text", "text": system}
    elif isinstance(system, list):
        yield from system
    for message in body.get("messages") or ():
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        yield {"role": message.get("role")}
        yield from blocks


def boundaries(body: dict) -> tuple[list[Boundary], int]:
    """(every block boundary of the prompt in order, its total tokens)."""
    digest = hashlib.blake2b(str(body.get("model")).encode(), digest_size=16)
    size, found = 0, []
    for part in _parts(body):
        marked = isinstance(part, dict) and isinstance(part.get("cache_control"), dict)
        # (the marker is not content: moving it to a later block keeps the prefix the same)
        content = {k: v for k, v in part.items() if k != "cache_control"} if isinstance(part, dict) else part
        data = json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
        digest.update(data)
        size += len(data)
        found.append(Boundary(digest.copy().hexdigest(), size // BYTES_PER_TOKEN, marked))
    return found, max(1, size // BYTES_PER_TOKEN)


class PromptCache:
    def __init__(self) -> None:
        self._entries: OrderedDict[str, float] = OrderedDict()  # prefix -> expires at

    def use(self, body: dict, now: float) -> CacheUse | None:
        """What this request reads and writes; None when it marks no breakpoint."""
        found, total = boundaries(body)
        marks = [b for b in found if b.marked]
        if not marks:
            return None
        last = marks[-1].tokens
        read = 0
        for boundary in found:
            expires = self._entries.get(boundary.prefix)
            if boundary.tokens <= last and expires is not None and expires > now:
                read = max(read, boundary.tokens)
                self._entries[boundary.prefix] = now + TTL  # a hit refreshes the entry
        for mark in marks:
            self._entries[mark.prefix] = now + TTL
            self._entries.move_to_end(mark.prefix)
        while len(self._entries) > MAX_ENTRIES:
            self._entries.popitem(last=False)
        return CacheUse(read, max(last - read, 0), max(total - last, 1))
