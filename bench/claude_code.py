"""The `claude-code` scenario's request: what Claude Code sends, mid-session. Pure.

``body(...)`` builds, deterministically from a seed, a Messages request of the shape
and size Claude Code sends from a working session (about 120 KB of compact JSON):
the dated Sonnet id, ``max_tokens`` 32000 with thinking on (budget ``max_tokens - 1``),
``stream``, a system list with ``cache_control``, 24 tools whose descriptions run to
paragraphs and whose input schemas are draft-07 JSON schemas, ``metadata.user_id``,
``context_management``, and a tool loop of 35 messages (text, signed thinking,
tool_use and tool_result blocks) ending in a user turn that carries tool results and
the simulator's ``[sim ...]`` directive. The layout follows a recorded Claude Code 2.1
request (system: billing header, identity line, prompt; draft 2020-12 schemas;
``metadata.user_id`` a JSON string; ``is_error`` on tool results; cache breakpoints on two
system blocks and the last block). The text is made up (sentences and code lines drawn
from pools), not copied from Claude Code: what matters for the gateway is the structure
and the bytes it has to parse, rewrite or forward.
"""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from typing import Any, Sequence

from proxy.simulator.signatures import thinking_signature

MODEL = "claude-sonnet-4-5-20250929"
MAX_TOKENS = 32000
TARGET_BYTES = 120_000
PATH = "/v1/messages?beta=true"
HEADERS = {
    "anthropic-version": "2023-06-01",
    "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14,"
                      "context-management-2025-06-27",
    "x-app": "cli",
    "accept": "application/json",
    "user-agent": "claude-cli/2.1.197 (external, cli)",
    "x-claude-code-session-id": "5b0f3c9e-2d41-4c8a-9e57-0d6a1f2b7c33",
    "x-stainless-arch": "x64",
    "x-stainless-lang": "js",
    "x-stainless-os": "Linux",
    "x-stainless-package-version": "0.70.0",
    "x-stainless-retry-count": "0",
    "x-stainless-runtime": "node",
    "x-stainless-runtime-version": "v22.19.0",
    "x-stainless-timeout": "600",
    "anthropic-dangerous-direct-browser-access": "true",
}
ROUNDS = 17  # assistant/user pairs after the first prompt: 35 messages
SCHEMA = "https://json-schema.org/draft/2020-12/schema"
CWD = "/home/dev/projects/cheaplm"

# Sentences the descriptions and the system prompt are padded with ("usage notes").
_GUIDANCE = (
    "Always use absolute paths; relative paths are resolved against the session's working directory and may "
    "surprise the user.",
    "When several independent pieces of information are needed, batch the tool calls together in one message "
    "so that they run in parallel.",
    "Do not use this tool to communicate with the user; all text you output outside of tool use is displayed "
    "to the user.",
    "If the output exceeds the display limit it will be truncated before being returned to you; narrow the "
    "request instead of repeating it.",
    "Prefer the dedicated tools for reading, searching and editing files over shell commands such as cat, "
    "grep, sed, find or echo.",
    "Never guess at file contents or command results: read them, then act on what you read.",
    "Keep the user's repository clean: do not leave temporary files, debug prints or commented-out code behind.",
    "Respect the project's existing conventions, naming, formatting and libraries; look at neighbouring files "
    "before introducing anything new.",
    "When a command fails, read the error carefully, fix the cause and only then retry; do not loop on the "
    "same failing call.",
    "Quote paths that contain spaces with double quotes, and avoid interactive commands that wait for input.",
    "Results are returned as plain text; line numbers, when present, are for reference only and are not part "
    "of the file.",
    "This tool may be called many times in one turn; each call should make progress toward the user's goal.",
    "Only use emojis if the user explicitly requests it; avoid adding them to files unless asked.",
    "Large outputs cost context: ask for the part you need (a range of lines, a glob, a head limit) rather "
    "than everything.",
    "If the user denies a tool call, do not retry it unchanged; think about why it was denied and adjust "
    "your approach.",
    "Hooks configured by the user may run before or after this tool; treat their feedback as coming from the "
    "user.",
    "Never commit changes unless the user explicitly asks you to; it is very important to only commit when "
    "asked.",
    "Secrets, keys and credentials must never be printed, logged or committed, even when they appear in a "
    "file you read.",
    "When you are unsure which of several approaches the user wants, ask a short question instead of "
    "guessing.",
    "Verify your work: run the project's tests, linters and type checks after a change when they exist.",
    "A result that looks empty may mean the pattern, path or filter is wrong; check them before concluding "
    "that nothing matches.",
    "Write code that handles errors explicitly at system boundaries and trusts internal invariants elsewhere.",
    "The working directory persists between calls, but shell state such as variables and aliases does not.",
    "Mention file locations as path:line so that the user can jump straight to them.",
    "Keep responses short and direct: a few lines unless the user asks for detail or the task needs it.",
    "Read a file before editing it; an edit to a file that was not read in this session will be refused.",
    "Timeouts are in milliseconds; long-running processes should be started in the background and polled.",
    "Use the task list to track multi-step work and mark items completed as soon as they are done.",
    "Do not create documentation files unless explicitly requested; prefer editing existing files.",
    "Check the output of every step and report failures honestly instead of claiming success.",
)

_CODE = (
    "from __future__ import annotations",
    "import trio",
    "from dataclasses import dataclass, field",
    "from typing import Any, Sequence",
    "",
    "",
    "class StreamTap:",
    '    """Watch an Anthropic event stream on its way to the client."""',
    "    __slots__ = (\"_decoder\", \"_usage\", \"_blocks\")",
    "    def __init__(self, *, filter_thinking: bool = False) -> None:",
    "        self._decoder = SSEDecoder()",
    "        self._usage: dict[str, int] = {}",
    "    def feed(self, chunk: bytes) -> list[bytes]:",
    "        events = self._decoder.feed(chunk)",
    "        return [self._one(event) for event in events if event]",
    "    async def settle(self, store: Store, hold: Hold, usage: Usage) -> None:",
    "        cost = self.catalog.price(hold.model, usage)",
    "        await store.settle(hold.id, cost, usage.as_dict())",
    "        if cost > hold.amount:",
    "            log.warning(\"settle above hold: %s > %s (%s)\", cost, hold.amount, hold.model)",
    "    return {\"type\": \"error\", \"error\": {\"type\": kind, \"message\": message}}",
    "    max_tokens = body.get(\"max_tokens\")",
    "    if not isinstance(max_tokens, int) or max_tokens < 1:",
    "        raise GatewayError(400, \"max_tokens: must be a positive integer\")",
    "    model = catalog.resolve(body.get(\"model\"))",
    "    async with trio.open_nursery() as nursery:",
    "        nursery.start_soon(self._pump, upstream, client)",
    "    except (trio.BrokenResourceError, trio.ClosedResourceError):",
    "        return None",
    "    for index, block in enumerate(message.get(\"content\") or []):",
    "        if block.get(\"type\") == \"tool_use\":",
    "            calls.append({\"id\": block[\"id\"], \"name\": block[\"name\"]})",
    "    assert response.status_code == 200, response.text",
    "    headers = {\"x-api-key\": key, \"anthropic-version\": \"2023-06-01\"}",
    "    @pytest.mark.parametrize(\"model\", [\"claude-sonnet-4.5\", \"claude-haiku-4.5\"])",
    "    def test_hold_covers_the_worst_case(store, model):",
    "        hold = estimate_hold(catalog.get(model), input_tokens=1200, max_tokens=8192)",
    "        assert hold.amount >= catalog.get(model).prices.output * 8192",
    "    # Release what the hold kept beyond the settled cost, in one transaction.",
    "    await self._lane.run(lambda db: db.execute(RELEASE, (hold.id,)))",
)

_PATHS = ("proxy/relay.py", "proxy/gateway.py", "proxy/catalog.py", "proxy/billing.py", "proxy/protocol/sse.py",
          "proxy/protocol/stream_filter.py", "proxy/upstream/transport.py", "storage/sqlite.py",
          "tests/test_billing.py", "tests/test_stream_filter.py", "proxy/adaptors/anthropic.py", "proxy/errors.py")


def _sentences(rng: random.Random, length: int, pool: Sequence[str] = _GUIDANCE, bullet: str = "- ") -> str:
    """Lines drawn from ``pool`` until ``length`` characters."""
    out: list[str] = []
    size = 0
    while size < length:
        line = bullet + rng.choice(pool)
        out.append(line)
        size += len(line) + 1
    return "\n".join(out)


def _described(rng: random.Random, base: str, length: int) -> str:
    """A tool description: its own paragraphs, then usage notes up to ``length``."""
    if len(base) >= length:
        return base
    return base + "\n\nUsage notes:\n" + _sentences(rng, length - len(base) - 15)


def _schema(properties: dict[str, Any], required: Sequence[str] = ()) -> dict:
    schema: dict[str, Any] = {"$schema": SCHEMA, "type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    schema["additionalProperties"] = False
    return schema


def _s(description: str, **extra: Any) -> dict:
    return {"type": "string", "description": description, **extra}


def _n(description: str, **extra: Any) -> dict:
    return {"type": "number", "description": description, **extra}


def _b(description: str) -> dict:
    return {"type": "boolean", "description": description}


# name -> (description paragraphs, description length, input schema)
def _tool_specs() -> list[tuple[str, str, int, dict]]:
    todo_item = {"type": "object", "properties": {
        "content": {"type": "string", "minLength": 1},
        "status": {"type": "string", "enum": ["pending", "in_progress", "completed"]},
        "activeForm": {"type": "string", "minLength": 1}},
        "required": ["content", "status", "activeForm"], "additionalProperties": False}
    option = {"type": "object", "properties": {
        "label": _s("The display text for this option that the user will see and select. Should be concise "
                    "(1-5 words) and clearly describe the choice."),
        "description": _s("Explanation of what this option means or what will happen if chosen. Useful for "
                          "providing context about trade-offs or implications.")},
        "required": ["label", "description"], "additionalProperties": False}
    question = {"type": "object", "properties": {
        "question": _s("The complete question to ask the user. Should be clear, specific, and end with a "
                       "question mark."),
        "header": _s("Very short label displayed as a chip/tag (max 12 chars). Examples: \"Auth method\", "
                     "\"Library\", \"Approach\"."),
        "options": {"type": "array", "items": option, "minItems": 2, "maxItems": 4,
                    "description": "The available choices for this question. Must have 2-4 options. Each option "
                                   "should be a distinct, mutually exclusive choice."},
        "multiSelect": {"type": "boolean", "description": "Set to true to allow the user to select multiple "
                                                          "options instead of just one."}},
        "required": ["question", "header", "options", "multiSelect"], "additionalProperties": False}
    return [
        ("Task", "Launch a new agent to handle complex, multi-step tasks autonomously. Each agent type has its own "
                 "tools and instructions; the agent works on its own and returns a single final report that is "
                 "not shown to the user, so summarise what matters from it.\n\nAvailable agent types and the tools "
                 "they have access to:\n- general-purpose: General-purpose agent for researching complex "
                 "questions, searching for code, and executing multi-step tasks. (Tools: *)\n- Explore: Fast "
                 "agent specialized for exploring codebases: finding files by pattern, searching code for "
                 "keywords, answering questions about how the code works. (Tools: Glob, Grep, Read, Bash)\n- "
                 "Plan: Software architect agent for designing implementation plans. (Tools: all but Edit, "
                 "Write)\n\nWhen NOT to use the Task tool:\n- To read a specific file path, use Read or Glob "
                 "instead, to find the match more quickly\n- To search for a specific class definition, use "
                 "Glob instead\n- To search code within two or three files, use Read instead", 6000,
         _schema({"description": _s("A short (3-5 word) description of the task"),
                  "prompt": _s("The task for the agent to perform"),
                  "subagent_type": _s("The type of specialized agent to use for this task"),
                  "model": _s("Optional model to use for this agent. If not specified, inherits from parent.",
                              enum=["sonnet", "opus", "haiku"]),
                  "resume": _s("Optional agent ID to resume from. The agent continues with its full previous "
                               "context preserved.")},
                 ["description", "prompt", "subagent_type"])),
        ("Bash", "Executes a given bash command in a persistent shell session with optional timeout, ensuring "
                 "proper handling and security measures.\n\nIMPORTANT: This tool is for terminal operations "
                 "like git, npm, docker, etc. DO NOT use it for file operations (reading, writing, editing, "
                 "searching, finding files) - use the specialized tools for this instead.\n\nBefore executing "
                 "the command, please follow these steps:\n1. Directory Verification: if the command will create "
                 "new directories or files, first check that the parent directory exists and is the correct "
                 "location.\n2. Command Execution: always quote file paths that contain spaces with double "
                 "quotes; after ensuring proper quoting, execute the command and capture its output.\n\n# "
                 "Committing changes with git\nOnly create commits when requested by the user. When the user "
                 "asks you to create a new git commit, run git status, git diff and git log in parallel, draft "
                 "a concise commit message that focuses on the why rather than the what, add the relevant "
                 "untracked files, create the commit and run git status afterwards to verify it succeeded. "
                 "NEVER update the git config, NEVER run destructive or irreversible git commands (push --force, "
                 "hard reset) unless the user explicitly requests them, NEVER skip hooks.\n\n# Creating pull "
                 "requests\nUse the gh command via the Bash tool for ALL GitHub-related tasks including working "
                 "with issues, pull requests, checks, and releases.", 9600,
         _schema({"command": _s("The command to execute"),
                  "timeout": _n("Optional timeout in milliseconds (max 600000)"),
                  "description": _s("Clear, concise description of what this command does in 5-10 words, in "
                                    "active voice."),
                  "run_in_background": _b("Set to true to run this command in the background. Use BashOutput "
                                          "to read the output later."),
                  "dangerouslyDisableSandbox": _b("Set this to true to dangerously override sandbox mode and "
                                                  "run commands without sandboxing.")}, ["command"])),
        ("Glob", "- Fast file pattern matching tool that works with any codebase size\n- Supports glob patterns "
                 "like \"**/*.js\" or \"src/**/*.ts\"\n- Returns matching file paths sorted by modification "
                 "time\n- Use this tool when you need to find files by name patterns\n- When you are doing an "
                 "open ended search that may require multiple rounds of globbing and grepping, use the Task tool "
                 "instead", 800,
         _schema({"pattern": _s("The glob pattern to match files against"),
                  "path": _s("The directory to search in. If not specified, the current working directory will "
                             "be used. Must be a valid directory path if provided.")}, ["pattern"])),
        ("Grep", "A powerful search tool built on ripgrep.\n\n  Usage:\n  - ALWAYS use Grep for search tasks. "
                 "NEVER invoke `grep` or `rg` as a Bash command.\n  - Supports full regex syntax (e.g., "
                 "\"log.*Error\", \"function\\\\s+\\\\w+\")\n  - Filter files with glob parameter (e.g., "
                 "\"*.js\", \"**/*.tsx\") or type parameter (e.g., \"js\", \"py\", \"rust\")\n  - Output modes: "
                 "\"content\" shows matching lines, \"files_with_matches\" shows only file paths (default), "
                 "\"count\" shows match counts\n  - Pattern syntax: uses ripgrep (not grep) - literal braces "
                 "need escaping\n  - Multiline matching: by default patterns match within single lines only.",
         1700,
         _schema({"pattern": _s("The regular expression pattern to search for in file contents"),
                  "path": _s("File or directory to search in (rg PATH). Defaults to current working directory."),
                  "glob": _s("Glob pattern to filter files (e.g. \"*.js\", \"*.{ts,tsx}\") - maps to rg --glob"),
                  "output_mode": _s("Output mode. Defaults to \"files_with_matches\".",
                                    enum=["content", "files_with_matches", "count"]),
                  "-B": _n("Number of lines to show before each match (rg -B). Requires output_mode: content."),
                  "-A": _n("Number of lines to show after each match (rg -A). Requires output_mode: content."),
                  "-C": _n("Number of lines to show before and after each match (rg -C)."),
                  "-n": _b("Show line numbers in output (rg -n). Requires output_mode: \"content\"."),
                  "-i": _b("Case insensitive search (rg -i)"),
                  "type": _s("File type to search (rg --type). Common types: js, py, rust, go, java, etc."),
                  "head_limit": _n("Limit output to first N lines/entries, equivalent to \"| head -N\"."),
                  "offset": _n("Skip first N lines/entries before applying head_limit."),
                  "multiline": _b("Enable multiline mode where . matches newlines and patterns can span lines "
                                  "(rg -U --multiline-dotall). Default: false.")}, ["pattern"])),
        ("ExitPlanMode", "Use this tool when you are in plan mode and have finished presenting your plan and are "
                         "ready to code. This will prompt the user to exit plan mode.\nIMPORTANT: Only use this "
                         "tool when the task requires planning the implementation steps of a task that requires "
                         "writing code. For research tasks where you're gathering information, searching files, "
                         "reading files or in general trying to understand the codebase - do NOT use this tool.",
         1500, _schema({"plan": _s("The plan you came up with, that you want to run by the user for approval. "
                                   "Supports markdown. The plan should be pretty concise.")}, ["plan"])),
        ("Read", "Reads a file from the local filesystem. You can access any file directly by using this tool.\n"
                 "Assume this tool is able to read all files on the machine. If the User provides a path to a "
                 "file assume that path is valid. It is okay to read a file that does not exist; an error will "
                 "be returned.\n\nUsage:\n- The file_path parameter must be an absolute path, not a relative "
                 "path\n- By default, it reads up to 2000 lines starting from the beginning of the file\n- You "
                 "can optionally specify a line offset and limit (especially handy for long files)\n- Any lines "
                 "longer than 2000 characters will be truncated\n- Results are returned using cat -n format, "
                 "with line numbers starting at 1\n- This tool can read images (eg PNG, JPG), PDF files and "
                 "Jupyter notebooks (.ipynb files)", 2300,
         _schema({"file_path": _s("The absolute path to the file to read"),
                  "offset": _n("The line number to start reading from. Only provide if the file is too large "
                               "to read at once"),
                  "limit": _n("The number of lines to read. Only provide if the file is too large to read at "
                              "once.")}, ["file_path"])),
        ("Edit", "Performs exact string replacements in files.\n\nUsage:\n- You must use your `Read` tool at "
                 "least once in the conversation before editing. This tool will error if you attempt an edit "
                 "without reading the file.\n- When editing text from Read tool output, ensure you preserve the "
                 "exact indentation (tabs/spaces) as it appears AFTER the line number prefix.\n- The edit will "
                 "FAIL if `old_string` is not unique in the file. Either provide a larger string with more "
                 "surrounding context to make it unique or use `replace_all` to change every instance.", 1500,
         _schema({"file_path": _s("The absolute path to the file to modify"),
                  "old_string": _s("The text to replace"),
                  "new_string": _s("The text to replace it with (must be different from old_string)"),
                  "replace_all": {"type": "boolean", "default": False,
                                  "description": "Replace all occurences of old_string (default false)"}},
                 ["file_path", "old_string", "new_string"])),
        ("Write", "Writes a file to the local filesystem.\n\nUsage:\n- This tool will overwrite the existing file "
                  "if there is one at the provided path.\n- If this is an existing file, you MUST use the Read "
                  "tool first to read the file's contents.\n- ALWAYS prefer editing existing files in the "
                  "codebase. NEVER write new files unless explicitly required.", 950,
         _schema({"file_path": _s("The absolute path to the file to write (must be absolute, not relative)"),
                  "content": _s("The content to write to the file")}, ["file_path", "content"])),
        ("NotebookEdit", "Completely replaces the contents of a specific cell in a Jupyter notebook (.ipynb file) "
                         "with new source. The notebook_path parameter must be an absolute path. Use "
                         "edit_mode=insert to add a new cell at the index specified by cell_id, and "
                         "edit_mode=delete to delete the cell.", 750,
         _schema({"notebook_path": _s("The absolute path to the Jupyter notebook file to edit"),
                  "cell_id": _s("The ID of the cell to edit."),
                  "new_source": _s("The new source for the cell"),
                  "cell_type": _s("The type of the cell (code or markdown).", enum=["code", "markdown"]),
                  "edit_mode": _s("The type of edit to make (replace, insert, delete). Defaults to replace.",
                                  enum=["replace", "insert", "delete"])}, ["notebook_path", "new_source"])),
        ("WebFetch", "- Fetches content from a specified URL and processes it using an AI model\n- Takes a URL "
                     "and a prompt as input\n- Fetches the URL content, converts HTML to markdown\n- Processes "
                     "the content with the prompt using a small, fast model\n- Returns the model's response "
                     "about the content\n- Use this tool when you need to retrieve and analyze web content\n- "
                     "HTTP URLs will be automatically upgraded to HTTPS\n- Includes a self-cleaning 15-minute "
                     "cache for faster responses when repeatedly accessing the same URL\n- When a URL "
                     "redirects to a different host, the tool will inform you and provide the redirect URL.",
         1900, _schema({"url": _s("The URL to fetch content from", format="uri"),
                        "prompt": _s("The prompt to run on the fetched content")}, ["url", "prompt"])),
        ("TodoWrite", "Use this tool to create and manage a structured task list for your current coding "
                      "session. This helps you track progress, organize complex tasks, and demonstrate "
                      "thoroughness to the user.\n\n## When to Use This Tool\n1. Complex multi-step tasks - "
                      "when a task requires 3 or more distinct steps or actions\n2. Non-trivial and complex "
                      "tasks that require careful planning\n3. User explicitly requests todo list\n4. User "
                      "provides multiple tasks (numbered or comma-separated)\n5. After receiving new "
                      "instructions - immediately capture user requirements as todos\n6. When you start "
                      "working on a task - mark it as in_progress BEFORE beginning work. Ideally you should "
                      "only have one todo as in_progress at a time\n7. After completing a task - mark it as "
                      "completed and add any new follow-up tasks discovered during implementation\n\n## When "
                      "NOT to Use This Tool\nSkip using this tool when there is only a single, straightforward "
                      "task, the task is trivial, or it can be completed in less than 3 trivial steps.\n\n## "
                      "Task States and Management\n- pending: Task not yet started\n- in_progress: Currently "
                      "working on (limit to ONE task at a time)\n- completed: Task finished successfully\n\n"
                      "Task descriptions must have two forms: content (the imperative form, e.g. \"Run "
                      "tests\") and activeForm (the present continuous form, e.g. \"Running tests\").", 6600,
         _schema({"todos": {"type": "array", "items": todo_item, "description": "The updated todo list"}},
                 ["todos"])),
        ("WebSearch", "- Allows Claude to search the web and use the results to inform responses\n- Provides "
                      "up-to-date information for current events and recent data\n- Returns search result "
                      "information formatted as search result blocks, including links as markdown "
                      "hyperlinks\n- Domain filtering is supported to include or block specific websites\n"
                      "- Web search is only available in the US", 1200,
         _schema({"query": _s("The search query to use", minLength=2),
                  "allowed_domains": {"type": "array", "items": {"type": "string"},
                                      "description": "Only include search results from these domains"},
                  "blocked_domains": {"type": "array", "items": {"type": "string"},
                                      "description": "Never include search results from these domains"}},
                 ["query"])),
        ("BashOutput", "- Retrieves output from a running or completed background bash shell\n- Takes a "
                       "shell_id parameter identifying the shell\n- Always returns only new output since the "
                       "last check\n- Returns stdout and stderr output along with shell status\n- Supports "
                       "optional regex filtering to show only lines matching a pattern", 550,
         _schema({"bash_id": _s("The ID of the background shell to retrieve output from"),
                  "filter": _s("Optional regular expression to filter the output lines. Only lines matching "
                               "this regex will be included in the result.")}, ["bash_id"])),
        ("KillShell", "- Kills a running background bash shell by its ID\n- Takes a shell_id parameter "
                      "identifying the shell to kill\n- Returns a success or failure status", 320,
         _schema({"shell_id": _s("The ID of the background shell to kill")}, ["shell_id"])),
        ("AskUserQuestion", "Use this tool when you need to ask the user questions during execution. This "
                            "allows you to:\n1. Gather user preferences or requirements\n2. Clarify ambiguous "
                            "instructions\n3. Get decisions on implementation choices as you work\n4. Offer "
                            "choices to the user about what direction to take.\n\nUsers will always be able to "
                            "select \"Other\" to provide custom text input.", 1300,
         _schema({"questions": {"type": "array", "items": question, "minItems": 1, "maxItems": 4,
                                "description": "Questions to ask the user (1-4 questions)"},
                  "answers": {"type": "object", "additionalProperties": {"type": "string"},
                              "description": "User answers collected by the permission component"}},
                 ["questions"])),
        ("Skill", "Execute a skill within the main conversation\n\n<skills_instructions>\nWhen users ask you to "
                  "perform tasks, check if any of the available skills below can help complete the task more "
                  "effectively. Skills provide specialized capabilities and domain knowledge.\n\nHow to use "
                  "skills:\n- Invoke skills using this tool with the skill name only (no arguments)\n- When you "
                  "invoke a skill, you will see <command-message>The \"{name}\" skill is loading</command-"
                  "message>\n- The skill's prompt will expand and provide detailed instructions on how to "
                  "complete the task\n</skills_instructions>\n\n<available_skills>\n</available_skills>", 1900,
         _schema({"skill": _s("The skill name (no arguments). E.g., \"pdf\" or \"xlsx\"")}, ["skill"])),
        ("SlashCommand", "Execute a slash command within the main conversation\n\nHow slash commands work:\n"
                         "When you use this tool or when a user types a slash command, you will see <command-"
                         "message>{name} is running…</command-message> followed by the expanded prompt.\n\n"
                         "Usage:\n- `command` (required): The slash command to execute, including any "
                         "arguments\n- Example: `command: \"/review-pr 123\"`\n\nIMPORTANT: Only use this tool "
                         "for custom slash commands that appear in the Available Commands list below.", 1700,
         _schema({"command": _s("The slash command to execute with its arguments, e.g., \"/review-pr 123\"")},
                 ["command"])),
        ("EnterPlanMode", "Use this tool when you encounter a complex task that requires careful planning and "
                          "exploration before implementation. This tool transitions you into plan mode where "
                          "you can thoroughly explore the codebase and design an implementation approach.\n\n"
                          "## When to Use This Tool\n- Complex feature implementations that touch many files\n"
                          "- Tasks with multiple valid approaches where the user should choose\n- Changes "
                          "with architectural impact\n\n## When NOT to Use This Tool\n- Simple, well-defined "
                          "changes\n- Pure research or questions", 2600, _schema({})),
        ("ListMcpResourcesTool", "List available resources from configured MCP servers.\nEach returned resource "
                                 "will include all standard MCP resource fields plus a 'server' field "
                                 "indicating which server the resource belongs to.", 420,
         _schema({"server": _s("Optional server name to filter resources by")})),
        ("ReadMcpResourceTool", "Reads a specific resource from an MCP server, identified by server name and "
                                "resource URI.", 380,
         _schema({"server": _s("The MCP server name"), "uri": _s("The resource URI to read")},
                 ["server", "uri"])),
        ("mcp__ide__getDiagnostics", "Get language diagnostics from VS Code", 260,
         _schema({"uri": _s("Optional file URI to get diagnostics for. If not provided, gets diagnostics for "
                            "all files.")})),
        ("mcp__ide__executeCode", "Execute python code in the Jupyter kernel for the current notebook file.\n\n"
                                  "All code will be executed in the current Jupyter kernel.\n\nAvoid declaring "
                                  "variables or modifying the state of the kernel unless the user explicitly "
                                  "asks for it.\n\nAny code executed will persist across calls to this tool, "
                                  "unless the kernel has been restarted.", 950,
         _schema({"code": _s("The code to be executed on the kernel.")}, ["code"])),
        ("mcp__context7__resolve-library-id", "Resolves a package/product name to a Context7-compatible library "
                                              "ID and returns a list of matching libraries.\n\nYou MUST call "
                                              "this function before 'get-library-docs' to obtain a valid "
                                              "Context7-compatible library ID UNLESS the user explicitly "
                                              "provides a library ID in the format '/org/project' or "
                                              "'/org/project/version' in their query.\n\nSelection Process:\n"
                                              "1. Analyze the query to understand what library/package the "
                                              "user is looking for\n2. Return the most relevant match based "
                                              "on name similarity, description relevance, documentation "
                                              "coverage and trust score", 1850,
         _schema({"libraryName": _s("Library name to search for and retrieve a Context7-compatible library "
                                    "ID.")}, ["libraryName"])),
        ("mcp__context7__get-library-docs", "Fetches up-to-date documentation for a library. You must call "
                                            "'resolve-library-id' first to obtain the exact Context7-compatible "
                                            "library ID required to use this tool.", 520,
         _schema({"context7CompatibleLibraryID": _s("Exact Context7-compatible library ID (e.g., "
                                                    "'/mongodb/docs', '/vercel/next.js')"),
                  "topic": _s("Topic to focus documentation on (e.g., 'hooks', 'routing')."),
                  "tokens": _n("Maximum number of tokens of documentation to retrieve (default: 5000).")},
                 ["context7CompatibleLibraryID"])),
    ]


def tools(rng: random.Random) -> list[dict]:
    return [{"name": name, "description": _described(rng, base, length), "input_schema": schema}
            for name, base, length, schema in _tool_specs()]


def system(rng: random.Random) -> list[dict]:
    sections = ("Tone and style", "Professional objectivity", "Task Management", "Doing tasks",
                "Tool usage policy", "Code References")
    main = ["You are an interactive CLI tool that helps users with software engineering tasks. Use the "
            "instructions below and the tools available to you to assist the user.\n\nIMPORTANT: Assist with "
            "authorized security testing, defensive security tasks, CTF challenges, and educational contexts. "
            "IMPORTANT: You must NEVER generate or guess URLs for the user unless you are confident that the "
            "URLs are for helping the user with programming."]
    for title in sections:
        main.append(f"# {title}\n" + _sentences(rng, 2900))
    main.append(f"Here is useful information about the environment you are running in:\n<env>\nWorking "
                f"directory: {CWD}\nIs directory a git repo: Yes\nPlatform: linux\nOS Version: Linux 6.8.0-49-"
                f"generic\nToday's date: 2025-11-03\n</env>\nYou are powered by the model named Sonnet 4.5. The "
                f"exact model ID is claude-sonnet-4-5-20250929.\n\nAssistant knowledge cutoff is January 2025.")
    log = "\n".join(f"{rng.getrandbits(28):07x} {rng.choice(_GUIDANCE)[:70]}" for _ in range(5))
    main.append(f"gitStatus: This is the git status at the start of the conversation.\nCurrent branch: main\n\n"
                f"Main branch (you will usually use this for PRs): main\n\nStatus:\n M proxy/relay.py\n M "
                f"tests/test_billing.py\n?? notes.txt\n\nRecent commits:\n{log}")
    return [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.197.a1f; cc_entrypoint=cli;"},
            {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude.",
             "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "\n\n".join(main), "cache_control": {"type": "ephemeral"}}]


def _code(rng: random.Random, lines: int, start: int = 1) -> str:
    """``cat -n`` style file contents, as the Read tool returns them."""
    return "\n".join(f"{n:6}\t{rng.choice(_CODE)}" for n in range(start, start + lines))


# The bench starts its simulator with this signing secret (`cheaplm simulator --secret`),
# so the conversation's thinking blocks carry signatures it accepts, as a real
# conversation's do upstream.
SIGNING_SECRET = "cheaplm-bench-signing-secret"


def _signature(thinking: str) -> str:
    return thinking_signature(SIGNING_SECRET.encode(), thinking)


def _tool_id(rng: random.Random) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return "toolu_01" + "".join(rng.choice(alphabet) for _ in range(22))


def _round(rng: random.Random, n: int, kind: str | None = None) -> tuple[dict, dict, list[dict]]:
    """One step of the tool loop: the assistant's turn (signed thinking, sometimes a
    sentence, one or two tool calls) and the user's turn with their results."""
    thought = " ".join(rng.choice(_GUIDANCE) for _ in range(rng.randrange(1, 4)))
    content: list[dict] = [{"type": "thinking", "signature": _signature(thought), "thinking": thought}]
    if rng.random() < 0.5:
        content.append({"type": "text", "text": rng.choice(_GUIDANCE)})
    results: list[dict] = []
    for i in range(2 if rng.random() < 0.3 else 1):
        path = f"{CWD}/{rng.choice(_PATHS)}"
        if not (i == 0 and kind):
            kind = rng.choice(("Read", "Read", "Grep", "Bash", "Edit", "Glob", "TodoWrite"))
        if kind == "Read":
            offset = rng.randrange(1, 400)
            call, result = {"file_path": path, "offset": offset, "limit": 60}, _code(rng, rng.randrange(6, 18),
                                                                                         offset)
        elif kind == "Grep":
            call = {"pattern": rng.choice(("max_tokens", "budget_tokens", "def settle", "filter_thinking")),
                    "path": CWD, "output_mode": "content", "-n": True}
            result = "\n".join(f"{CWD}/{rng.choice(_PATHS)}:{rng.randrange(1, 900)}:{rng.choice(_CODE)}"
                               for _ in range(rng.randrange(3, 8)))
        elif kind == "Bash":
            call = {"command": "python -m pytest -q -x tests/test_billing.py", "description": "Run billing tests"}
            result = "\n".join(f"tests/test_billing.py::test_{rng.choice(('hold', 'settle', 'refund'))}_{i} PASSED"
                               for i in range(rng.randrange(4, 10))) + "\n\n%d passed in 2.41s" % rng.randrange(4, 10)
        elif kind == "Edit":
            old, new = rng.choice(_CODE), rng.choice(_CODE)
            call = {"file_path": path, "old_string": old, "new_string": new}
            result = (f"The file {path} has been updated. Here's the result of running `cat -n` on a snippet of "
                      f"the edited file:\n" + _code(rng, 8, rng.randrange(1, 300)))
        elif kind == "Glob":
            call = {"pattern": "**/*.py", "path": f"{CWD}/proxy"}
            result = "\n".join(f"{CWD}/{rng.choice(_PATHS)}" for _ in range(rng.randrange(5, 15)))
        else:
            call = {"todos": [{"content": f"Step {i}: {rng.choice(_GUIDANCE)[:60]}",
                               "status": "completed" if i < n % 5 else "pending",
                               "activeForm": f"Working on step {i}"} for i in range(5)]}
            result = ("Todos have been modified successfully. Ensure that you continue to use the todo list to "
                      "track your progress. Please proceed with the current tasks if applicable")
        tool_id = _tool_id(rng)
        content.append({"type": "tool_use", "id": tool_id, "name": kind, "input": call})
        results.append({"tool_use_id": tool_id, "type": "tool_result", "content": result, "is_error": False})
    return {"role": "assistant", "content": content}, {"role": "user", "content": results}, results


def _size(body: dict) -> int:
    return len(encode(body))


def encode(body: dict) -> bytes:
    """Compact JSON, as Claude Code (JSON.stringify) sends it."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def body(directive: str, *, max_tokens: int = MAX_TOKENS, model: str = MODEL, seed: int = 0,
         target_bytes: int = TARGET_BYTES) -> dict:
    """A Claude Code request of about ``target_bytes`` (compact JSON), its last user
    turn carrying ``directive``. Thinking's budget is ``max_tokens - 1`` (as Claude Code
    sends with 32000), which the API accepts for ``max_tokens`` >= 1025."""
    if max_tokens <= 1024:
        raise ValueError("max_tokens must be above 1024 for a valid thinking budget (>= 1024, < max_tokens)")
    rng = random.Random(seed)
    device = hashlib.sha256(rng.randbytes(16)).hexdigest()
    session = str(uuid.UUID(bytes=rng.randbytes(16), version=4))
    claude_md = ("<system-reminder>\nAs you answer the user's questions, you can use the following context:\n"
                 "# claudeMd\nCodebase and user instructions are shown below. Be sure to adhere to these "
                 "instructions. IMPORTANT: These instructions OVERRIDE any default behavior and you MUST follow "
                 f"them exactly as written.\n\nContents of {CWD}/CLAUDE.md (project instructions, checked into "
                 "the codebase):\n\n" + _sentences(rng, 2500) + "\n</system-reminder>")
    messages: list[dict] = [{"role": "user", "content": [
        {"type": "text", "text": claude_md},
        {"type": "text", "text": "The gateway returns 400 when Claude Code sends max_tokens above the model's cap. "
                                 "Clamp it to the catalog's max_output, keep the thinking budget valid, and add "
                                 "tests."}]}]
    last_results: list[dict] = []
    for n in range(ROUNDS):
        assistant, user, last_results = _round(rng, n, "Read" if n == 0 else None)
        messages += [assistant, user]
    # Cache breakpoints as Claude Code sets them: two system blocks and the last message's
    # last block (the API allows four).
    last_results.append({"type": "text", "text": f"<system-reminder>Continue. {directive}</system-reminder>",
                         "cache_control": {"type": "ephemeral"}})
    request = {
        "model": model,
        "messages": messages,
        "system": system(rng),
        "tools": tools(rng),
        "metadata": {"user_id": json.dumps({"device_id": device, "account_uuid": "", "session_id": session},
                                           separators=(",", ":"))},
        "max_tokens": max_tokens,
        "thinking": {"type": "enabled", "budget_tokens": max_tokens - 1},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "stream": True,
    }
    # Pad to the target with the result of the conversation's first tool call, a file read.
    read = next(b for b in messages[1]["content"] if b["type"] == "tool_use")
    read["input"] = {"file_path": read["input"]["file_path"]}
    filler = next(b for b in messages[2]["content"] if b["tool_use_id"] == read["id"])
    filler["content"] = ""
    lines: list[str] = []
    budget = target_bytes - _size(request)
    size = 0
    while size < budget:
        line = f"{len(lines) + 1:6}\t{rng.choice(_CODE)}"
        lines.append(line)
        size += len(json.dumps(line)) - 2 + 2  # the line, escaped, and its "\n"
    filler["content"] = "\n".join(lines)
    return request
