"""One line that says what a tool call does, computed on the agent side of the port.

ACP gives a human title (OpenCode: the command itself once known, "Bash" before), a kind
(`execute`, `edit`, `read`, ...) and the raw input. The line prefers the input's most
telling field, then the title, then the kind. Pure; never does I/O.
"""

from __future__ import annotations

from typing import Any

MAX_CHARS = 200
# The input fields that best say what a call does, most telling first.
_TELLING = ("command", "filePath", "file_path", "path", "pattern", "url", "query", "description")


def tool_summary(title: str | None, kind: str | None, raw_input: Any) -> str:
    found = ""
    if isinstance(raw_input, dict):
        found = next((str(raw_input[k]) for k in _TELLING if raw_input.get(k)), "")
    line = " ".join((found or title or kind or "tool").split())
    return line if len(line) <= MAX_CHARS else line[: MAX_CHARS - 1] + "…"
