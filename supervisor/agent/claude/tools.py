"""Claude Code's tools, as far as the thread needs to know them: which input says what a
call does (the command, the path, the pattern...), and which input is a shell command.
The core shows what the agent side says here; it knows no tool by name."""

from __future__ import annotations

import json
from typing import Any

# The one input that says what a call does, per tool; other tools show their input as JSON.
KEY_ARGUMENTS = {
    "Bash": "command",
    "Read": "file_path",
    "Write": "file_path",
    "Edit": "file_path",
    "MultiEdit": "file_path",
    "NotebookEdit": "notebook_path",
    "Grep": "pattern",
    "Glob": "pattern",
    "WebFetch": "url",
    "WebSearch": "query",
    "Task": "description",
}

SHELL_TOOLS = {"Bash": "bash"}  # tool -> the code block language its key argument is shown in


def tool_argument(name: str, tool_input: dict[str, Any]) -> str:
    """The key argument of a tool call as one line: the command, the path, the pattern..."""
    key = KEY_ARGUMENTS.get(name)
    value = tool_input.get(key) if key else None
    if isinstance(value, str) and value.strip():
        lines = value.strip().splitlines()
        return lines[0] + (" …" if len(lines) > 1 else "")
    if not tool_input:
        return ""
    return json.dumps(tool_input, ensure_ascii=False, separators=(", ", ": "), default=str)
