"""Thinking blocks the gateway removed, remembered and put back. Pure: no I/O.

Anthropic refuses the next request of a tool loop when thinking is on and the last
assistant message does not start with its thinking block ("a final `assistant`
message must start with a thinking block"). The gateway removes those blocks from
streamed /v1/messages answers (by default) and OpenAI Chat Completions has no place
for a signature, so clients cannot send them back. Instead:

* ``TurnRecorder`` (streamed answer, fed the raw upstream events before any
  filtering) or ``turn_from_message`` (whole answer) captures the answer's layout
  as a ``Turn``: its thinking / redacted_thinking blocks exactly as the upstream
  sent them, and a placeholder for every other block. Only answers with at least
  one thinking block and at least one ``tool_use`` block make a Turn.
* A ``ThinkingMemory`` (thinking_memory.py; ``ThinkingStore`` in-process) keeps each Turn under
  (API key id, tool_use id) for each of its tool_use ids.
* ``restore(body, lookup)`` puts the blocks back into the assistant messages of the
  next request, byte-exact, found by the tool_use ids the client echoes.
  ``disable_thinking(body)`` is the fallback when the blocks are gone.

Wiring (the relay): record every answer that may have lost thinking on its way to the
client (filtered /v1/messages streams, every OpenAI answer) and ``remember`` its Turn
before the client can see the answer's end (write the chunk holding ``message_stop``
only after it); before sending a request, ``recall(key_id, lookup_ids(body))`` then
``restore(body, found.get)``; on "missing" send ``disable_thinking(result.body)``.
A changed body must be re-serialized (the client's raw bytes no longer apply).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Sequence

from .sse import event_name, parse_event

THINKING_TYPES = frozenset({"thinking", "redacted_thinking"})
THINKING_ON = frozenset({"enabled", "adaptive"})

# Approximate per-object overheads (bytes) for Turn.size: a dict block, a placeholder, a Turn.
_BLOCK_OVERHEAD = 120
_SLOT_OVERHEAD = 72
_TURN_OVERHEAD = 200


def _text_bytes(value: str) -> int:
    return len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass"))


# -- the turn --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Placeholder:
    """A non-thinking block of the recorded answer: its type, and its id when it has one
    (``tool_use``, ``server_tool_use``). The client sends these blocks back itself."""

    kind: str
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Turn:
    """One assistant answer's block layout, in order: each entry is either an exact
    thinking block (``{"type": "thinking", "thinking", "signature"}`` or
    ``{"type": "redacted_thinking", "data"}``) or a ``Placeholder``.

    Treat it as immutable: ``restore`` copies the thinking blocks it inserts."""

    layout: tuple[dict[str, Any] | Placeholder, ...]
    tool_use_ids: tuple[str, ...] = field(init=False, compare=False)
    size: int = field(init=False, compare=False)  # approximate bytes held, for a store's budget
    _ids: frozenset[str] = field(init=False, compare=False, repr=False)
    _placeholders: tuple[Placeholder, ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        placeholders = tuple(s for s in self.layout if isinstance(s, Placeholder))
        ids = tuple(s.id for s in placeholders if s.kind == "tool_use" and s.id)
        size = _TURN_OVERHEAD
        for slot in self.layout:
            if isinstance(slot, Placeholder):
                size += _SLOT_OVERHEAD + len(slot.kind) + (len(slot.id) if slot.id else 0)
            else:
                size += _BLOCK_OVERHEAD + sum(_text_bytes(v) for v in slot.values() if isinstance(v, str))
        object.__setattr__(self, "tool_use_ids", ids)
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "_ids", frozenset(ids))
        object.__setattr__(self, "_placeholders", placeholders)

    @property
    def thinking_blocks(self) -> list[dict[str, Any]]:
        return [s for s in self.layout if not isinstance(s, Placeholder)]

    @property
    def placeholders(self) -> tuple[Placeholder, ...]:
        return self._placeholders

    def has_tool_use(self, tool_use_id: str) -> bool:
        return tool_use_id in self._ids

    def apply(self, content: str | list) -> list:
        """An assistant message's content with this turn's thinking blocks put back.

        The client's own non-thinking blocks keep the client's order (and identity);
        thinking blocks the client did send are dropped (replaced by the recorded ones).
        When the client's blocks match the recorded placeholders one for one (same
        types in the same order, same ids), each thinking block goes back to its
        original position; otherwise all thinking blocks go first, then the client's
        blocks. A string content is one text block (none when empty)."""
        if isinstance(content, str):
            client: list = [{"type": "text", "text": content}] if content else []
        else:
            client = [b for b in content if not (isinstance(b, dict) and _kind(b) in THINKING_TYPES)]
        slots = self._placeholders
        matches = len(slots) == len(client)
        if matches:
            for slot, block in zip(slots, client):
                if not isinstance(block, dict) or block.get("type") != slot.kind \
                        or (slot.id is not None and block.get("id") != slot.id):
                    matches = False
                    break
        if matches:
            out, next_client = [], iter(client)
            for slot in self.layout:
                out.append(next(next_client) if type(slot) is Placeholder else dict(slot))
            return out
        return [dict(b) for b in self.layout if type(b) is not Placeholder] + client

    # A networked memory (Redis) stores turns as bytes.
    def to_json(self) -> bytes:
        return json.dumps(self.entries(), separators=(",", ":")).encode("ascii")  # \u escapes: any str survives

    @classmethod
    def from_json(cls, data: bytes | str) -> Turn:
        return cls.from_entries(json.loads(data))

    @classmethod
    def from_entries(cls, entries: list) -> Turn:
        """The turn of ``to_json``'s entries, parsed by any JSON parser."""
        return cls(tuple(Placeholder(e["placeholder"], e.get("id")) if "placeholder" in e else e for e in entries))

    def entries(self) -> list:
        """The layout as plain JSON values (what ``to_json`` writes)."""
        return [{"placeholder": s.kind, "id": s.id} if isinstance(s, Placeholder) else s for s in self.layout]


def _thinking_block(block: dict) -> dict[str, Any]:
    """The canonical block to send back: exactly the fields the API takes, as received."""
    if block.get("type") == "redacted_thinking":
        return {"type": "redacted_thinking", "data": block.get("data", "")}
    return {"type": "thinking", "thinking": block.get("thinking", ""), "signature": block.get("signature", "")}


def _placeholder(block: dict) -> Placeholder:
    kind = block.get("type")
    block_id = block.get("id")
    return Placeholder(kind if isinstance(kind, str) else "", block_id if isinstance(block_id, str) else None)


def _worth_keeping(layout: Sequence[dict | Placeholder]) -> bool:
    thinking = tool_use = False
    for slot in layout:
        if isinstance(slot, Placeholder):
            tool_use = tool_use or (slot.kind == "tool_use" and bool(slot.id))
        else:
            thinking = True
    return thinking and tool_use


def turn_from_message(content: Any) -> Turn | None:
    """The Turn of a whole (non-streamed) answer's ``content`` list, or None when it has
    no thinking block or no tool_use block."""
    if not isinstance(content, list):
        return None
    layout = [_thinking_block(b) if _kind(b) in THINKING_TYPES else _placeholder(b)
              for b in content if isinstance(b, dict)]
    return Turn(tuple(layout)) if _worth_keeping(layout) else None


# -- recording a stream ----------------------------------------------------------------------

class _Block:
    __slots__ = ("kind", "id", "parts", "signature", "data", "stopped")

    def __init__(self, block: dict) -> None:
        kind = block.get("type")
        self.kind = kind if isinstance(kind, str) else ""
        block_id = block.get("id")
        self.id = block_id if isinstance(block_id, str) else None
        self.stopped = False
        self.parts: list[str] = []
        self.signature: list[str] = []
        self.data = ""
        if self.kind == "thinking":
            for name, into in (("thinking", self.parts), ("signature", self.signature)):
                value = block.get(name)
                if isinstance(value, str) and value:
                    into.append(value)
        elif self.kind == "redacted_thinking":
            data = block.get("data")
            self.data = data if isinstance(data, str) else ""

    def slot(self) -> dict[str, Any] | Placeholder:
        if self.kind == "thinking":
            return {"type": "thinking", "thinking": "".join(self.parts), "signature": "".join(self.signature)}
        if self.kind == "redacted_thinking":
            return {"type": "redacted_thinking", "data": self.data}
        return Placeholder(self.kind, self.id)


def _event_data(raw: bytes) -> dict | None:
    """The JSON object of one raw event: sliced straight out of the usual
    ``event: …\\ndata: {…}\\n\\n`` layout, else parsed per the SSE spec."""
    start = raw.find(b"\ndata: ")
    payload: bytes | str
    if start >= 0 and raw.find(b"\n", start + 7) == len(raw) - 2 and raw.endswith(b"\n\n") \
            and b"\r" not in raw:
        payload = raw[start + 7:-2]
    else:
        payload = parse_event(raw).data
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


class TurnRecorder:
    """Reassembles the blocks of one streamed answer from its raw upstream events.

    Feed every event (``feed``, or ``feed_event`` when the caller already knows its
    name), before any filtering or renumbering. Only ``content_block_start`` /
    ``content_block_stop`` events and the deltas of an open thinking block are
    JSON-parsed; everything else costs one name check."""

    __slots__ = ("_blocks", "_thinking_open", "complete")

    def __init__(self) -> None:
        self._blocks: dict[int, _Block] = {}
        self._thinking_open = 0
        self.complete = False  # message_stop seen

    def feed(self, raw: bytes) -> None:
        self.feed_event(event_name(raw), raw)

    def feed_event(self, name: str | None, raw: bytes) -> None:
        if name == "content_block_delta":
            if self._thinking_open and (b'"thinking_delta"' in raw or b'"signature_delta"' in raw):
                self._delta(raw)
        elif name == "content_block_start":
            data = _event_data(raw)
            index = data.get("index") if data else None
            block = data.get("content_block") if data else None
            if isinstance(index, int) and isinstance(block, dict) and index not in self._blocks:
                record = self._blocks[index] = _Block(block)
                if record.kind == "thinking":
                    self._thinking_open += 1
        elif name == "content_block_stop":
            data = _event_data(raw)
            record = self._blocks.get(data.get("index")) if data else None  # type: ignore[arg-type]
            if record is not None and not record.stopped:
                record.stopped = True
                if record.kind == "thinking":
                    self._thinking_open -= 1
        elif name == "message_stop":
            self.complete = True

    def _delta(self, raw: bytes) -> None:
        data = _event_data(raw)
        if not data:
            return
        record = self._blocks.get(data.get("index"))  # type: ignore[arg-type]
        delta = data.get("delta")
        if record is None or record.kind != "thinking" or record.stopped or not isinstance(delta, dict):
            return
        kind = delta.get("type")
        if kind == "thinking_delta" and isinstance(delta.get("thinking"), str):
            record.parts.append(delta["thinking"])
        elif kind == "signature_delta" and isinstance(delta.get("signature"), str):
            record.signature.append(delta["signature"])

    def turn(self) -> Turn | None:
        """The answer's Turn: None unless it has a thinking block and a tool_use block,
        and every block that started also stopped (a cut stream is not a turn)."""
        if not self._blocks or any(not b.stopped for b in self._blocks.values()):
            return None
        layout = [self._blocks[i].slot() for i in sorted(self._blocks)]
        return Turn(tuple(layout)) if _worth_keeping(layout) else None


# -- putting blocks back ---------------------------------------------------------------------

Lookup = Callable[[str], "Turn | None"]
Scope = Literal["last", "loop", "all"]
Status = Literal["not_needed", "restored", "missing"]


@dataclass(frozen=True, slots=True)
class RestoreResult:
    """``status``: "restored" (``body`` is a new dict with blocks put back into
    ``restored`` assistant messages), "missing" (the last assistant message of a tool
    loop needs its thinking and it is not known: ``body`` is the caller's, unchanged;
    send ``disable_thinking(body)`` instead) or "not_needed" (``body`` is the
    caller's, unchanged). ``reason`` says why, for logs."""

    status: Status
    body: dict[str, Any]
    restored: int = 0
    reason: str = ""


def _kind(item: dict) -> str | None:
    """An object's ``type`` when it is a string (clients send anything)."""
    kind = item.get("type")
    return kind if isinstance(kind, str) else None


def thinking_enabled(body: dict[str, Any]) -> bool:
    thinking = body.get("thinking")
    return isinstance(thinking, dict) and _kind(thinking) in THINKING_ON


def _has_tool_result(message: Any) -> bool:
    if not isinstance(message, dict) or message.get("role") != "user":
        return False
    content = message.get("content")
    if isinstance(content, list):
        for block in content:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                return True
    return False


def _starts_with_thinking(content: Any) -> bool:
    return isinstance(content, list) and bool(content) and isinstance(content[0], dict) \
        and _kind(content[0]) in THINKING_TYPES


def _tool_use_ids(content: Any) -> list[str]:
    if not isinstance(content, list):
        return []
    return [b["id"] for b in content
            if isinstance(b, dict) and b.get("type") == "tool_use" and isinstance(b.get("id"), str)]


def _is_assistant(message: Any) -> bool:
    return isinstance(message, dict) and message.get("role") == "assistant"


def _plan(body: dict[str, Any], scope: Scope) -> tuple[int | None, list[tuple[int, list[str]]], str]:
    """(index of the assistant message that must start with thinking, or None;
    (index, tool_use ids) of each assistant message to restore, that one first;
    why none is required)."""
    if not thinking_enabled(body):
        return None, [], "thinking is off"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return None, [], "no messages"
    count = len(messages)
    required: int | None = None
    reason = ""
    if not _has_tool_result(messages[-1]):
        reason = "the last message carries no tool_result"
    elif count < 2 or not _is_assistant(messages[-2]):
        reason = "no assistant message before the tool results"
    elif _starts_with_thinking(messages[-2].get("content")):
        reason = "the last assistant message starts with thinking"
    else:
        required = count - 2
    plan = [(required, _tool_use_ids(messages[required].get("content")))] if required is not None else []
    if scope == "last":
        return required, plan, reason
    first = 0
    if scope == "loop":
        first = count
        while first > 0 and (_is_assistant(messages[first - 1]) or _has_tool_result(messages[first - 1])):
            first -= 1
    for index in range(first, count):
        message = messages[index]
        if index == required or not _is_assistant(message):
            continue
        content = message.get("content")
        if _starts_with_thinking(content):
            continue
        ids = _tool_use_ids(content)
        if ids:
            plan.append((index, ids))
    return required, plan, reason


def lookup_ids(body: dict[str, Any], scope: Scope = "all") -> list[str]:
    """Every tool_use id ``restore(body, …, scope)`` may look up, in message order
    (empty when nothing is to restore): fetch these in one batch from a networked
    memory, then call ``restore`` with the batch's ``dict.get``."""
    _, plan, _ = _plan(body, scope)
    return [i for _, ids in sorted(plan) for i in ids]


def _find(ids: list[str], lookup: Lookup) -> tuple[Turn | None, str]:
    if not ids:
        return None, "the assistant message has no tool_use block"
    turn = None
    for tool_use_id in ids:
        turn = lookup(tool_use_id)
        if turn is not None:
            break
    if turn is None:
        return None, "no recorded turn for its tool_use ids"
    for tool_use_id in ids:
        if not turn.has_tool_use(tool_use_id):
            return None, "its tool_use ids are not all from one recorded turn"
    return turn, ""


def restore(body: dict[str, Any], lookup: Lookup, scope: Scope = "all") -> RestoreResult:
    """Put recorded thinking blocks back into ``body`` (an Anthropic Messages request).

    Needed when thinking is on (``enabled`` / ``adaptive``), the last message is a user
    message with tool_result blocks and the assistant message before it does not start
    with a thinking block: its tool_use ids must all belong to one recorded turn (the
    first id ``lookup`` finds), else the result is "missing".

    ``scope`` also restores other assistant messages (best effort, skipped when not
    found) so that what is sent for a message does not change from one request to the
    next: a changed prefix is a prompt-cache miss, and models with "preserved thinking"
    check that nothing before a thinking block changed since it was produced. "all":
    every assistant message, as a client that kept its thinking sends them; "loop":
    those of the trailing tool loop; "last": only the required one.

    Never mutates ``body``: a new body shares every message it does not change."""
    required, plan, reason = _plan(body, scope)
    if not plan:
        return RestoreResult("not_needed", body, 0, reason or "no assistant message to restore")
    messages = body["messages"]
    rebuilt: dict[int, list] = {}
    for index, ids in plan:
        turn, why = _find(ids, lookup)
        if turn is None:
            if index == required:
                return RestoreResult("missing", body, 0, f"messages.{index}: {why}")
            continue
        rebuilt[index] = turn.apply(messages[index]["content"])
    if not rebuilt:
        return RestoreResult("not_needed", body, 0, reason or "no recorded turn for earlier messages")
    new_messages = list(messages)
    for index, content in rebuilt.items():
        new_messages[index] = {**messages[index], "content": content}
    new_body = dict(body)
    new_body["messages"] = new_messages
    return RestoreResult("restored", new_body, len(rebuilt))


def disable_thinking(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` without ``thinking``, to serve a tool loop whose thinking blocks are lost
    rather than answer 400. Context-management edits that require thinking
    (``clear_thinking_*``: "strategy requires `thinking` to be enabled or adaptive") go
    too; ``context_management`` goes when nothing else is left in it. Everything else
    (temperature, top_p, tool_choice, …) stays as the client sent it. Not mutated."""
    out = dict(body)
    out.pop("thinking", None)
    management = out.get("context_management")
    if isinstance(management, dict) and isinstance(management.get("edits"), list):
        edits = [e for e in management["edits"]
                 if not (isinstance(e, dict) and str(e.get("type", "")).startswith("clear_thinking"))]
        if len(edits) != len(management["edits"]):
            rest = {k: v for k, v in management.items() if k != "edits"}
            if edits:
                out["context_management"] = {**rest, "edits": edits}
            elif rest:
                out["context_management"] = rest
            else:
                out.pop("context_management")
    return out
