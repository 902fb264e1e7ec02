"""What a tool call does and how a turn ended, in plain words, on the agent side of the port.

ACP gives a human title (OpenCode: the command itself once known, "Bash" before), a kind
(`execute`, `edit`, `read`, ...) and the raw input. The line prefers the input's most
telling field, then the title, then the kind. Stop reasons become today's TurnEnded
words (render.completion_line reads them). Pure; never does I/O.
"""

from __future__ import annotations

from typing import Any

from supervisor.agent.acp.wire import ToolCallFields
from supervisor.core.agent_events import TurnEnded

MAX_CHARS = 200
# The input fields that best say what a call does, most telling first.
_TELLING = ("command", "filePath", "file_path", "path", "pattern", "url", "query", "description")


def tool_summary(title: str | None, kind: str | None, raw_input: Any) -> str:
    found = ""
    if isinstance(raw_input, dict):
        found = next((str(raw_input[k]) for k in _TELLING if raw_input.get(k)), "")
    line = " ".join((found or title or kind or "tool").split())
    return line if len(line) <= MAX_CHARS else line[: MAX_CHARS - 1] + "…"


def tool_text(call: ToolCallFields) -> str:
    texts = [c.content.text for c in call.content or [] if c.content and c.content.text]
    if texts:
        return "\n".join(texts)
    raw = call.raw_output
    if isinstance(raw, dict):
        return str(raw.get("error") or raw.get("output") or "")
    return str(raw) if isinstance(raw, str) else ""


# Stop reasons in today's TurnEnded words (render.completion_line reads these).
_STOPS: dict[str, tuple[str, str]] = {
    "max_tokens": ("error_max_tokens", "The answer reached the agent's token limit."),
    "max_turn_requests": ("error_max_requests", "The turn reached the agent's request limit."),
    "refusal": ("error_refusal", "The agent refused to go on."),
}


def turn_ended(stop_reason: str, total_cost_usd: float, session_id: str) -> TurnEnded:
    if stop_reason == "end_turn":
        return TurnEnded(
            total_cost_usd=total_cost_usd, terminal_reason="completed", session_id=session_id
        )
    if stop_reason == "cancelled":
        return TurnEnded(
            total_cost_usd=total_cost_usd,
            terminal_reason="aborted_cancelled",
            session_id=session_id,
        )
    subtype, message = _STOPS.get(
        stop_reason, ("error_" + stop_reason, f"The turn ended: {stop_reason}.")
    )
    return TurnEnded(
        subtype=subtype,
        is_error=True,
        errors=(message,),
        total_cost_usd=total_cost_usd,
        terminal_reason=stop_reason,
        session_id=session_id,
    )
