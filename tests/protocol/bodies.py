"""Request bodies shared by the protocol and adaptor tests."""

TOOL_USE = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}
TOOL_RESULT = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "x"}]}


def tool_loop(assistant_content, thinking=None) -> dict:
    """A tool loop with thinking: the user, the assistant's ``assistant_content``, the tool result."""
    return {"model": "claude-sonnet-4-5-20250929", "max_tokens": 4000,
            "thinking": thinking if thinking is not None else {"type": "enabled", "budget_tokens": 2000},
            "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
            "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": assistant_content},
                         TOOL_RESULT]}
