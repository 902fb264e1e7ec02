"""Permission requests in a thread: how one reads, and what a choice on it means.

Owns the text of a request's post in each of its states, and the mapping from a choice
(whatever the front end shows: a reaction, a button) to an answer.

Must never decide who may answer (the session checks `allowed_users`), send anything to
the agent, or do I/O: text in, text out.
"""

from __future__ import annotations

import enum
import json
import re

from supervisor.core.agent_events import PermissionAsked
from supervisor.core.events import ChoiceKind
from supervisor.core.render import code_span

INPUT_CHARS = 3000  # how much of a tool's input a request shows, so the post stays small


class Answer(enum.Enum):
    ALLOW = "allow"  # this one call
    ALLOW_SESSION = "allow for session"  # this call, and the like for the rest of the session
    DENY = "deny"
    STOP = "stop"  # deny, and interrupt the turn


class PermissionState(enum.StrEnum):
    PENDING = "pending"  # waiting for a reaction
    ALLOWED = "allowed"
    ALLOWED_FOR_SESSION = "allowed for session"
    DENIED = "denied"
    TIMED_OUT = "timed out"  # nobody answered in time: denied
    CANCELLED = "cancelled"  # the agent withdrew the request
    STOPPED = "stopped"  # denied, and the turn was stopped
    LAPSED = "lapsed"  # the supervisor restarted before it was answered


# The choices offered on a pending request, in the order they are shown.
PERMISSION_CHOICES: tuple[ChoiceKind, ...] = ("allow_once", "allow_always", "reject")

_ANSWER_OF_CHOICE: dict[ChoiceKind, Answer] = {
    "allow_once": Answer.ALLOW,
    "allow_always": Answer.ALLOW_SESSION,
    "reject": Answer.DENY,
    "stop": Answer.STOP,
}

_OUTCOME = {
    PermissionState.ALLOWED: "✅ **Allowed once**",
    PermissionState.ALLOWED_FOR_SESSION: "🔁 **Allowed for this session**",
    PermissionState.DENIED: "⛔ **Denied**",
    PermissionState.TIMED_OUT: "⏰ **No answer in time: denied**",
    PermissionState.CANCELLED: "🚫 **Cancelled**: the agent no longer needs an answer",
    PermissionState.STOPPED: "🛑 **Denied, and the turn was stopped**",
    PermissionState.LAPSED: "⌛ **Lapsed**: the supervisor restarted before it was answered; the turn was cut",
}


def choice_answer(kind: ChoiceKind) -> Answer | None:
    """What a choice means on a permission request; None if it means nothing there."""
    return _ANSWER_OF_CHOICE.get(kind)


def permission_text(
    req: PermissionAsked, state: PermissionState | str = PermissionState.PENDING, by: str = "", legend: str = ""
) -> str:
    """The post of a permission request: the tool, its input, why, and the front end's
    legend (how to answer) while it is pending or the outcome once it is answered (`by`
    names who answered)."""
    state = PermissionState(state)
    lines = [f"🔐 **Permission needed:** {code_span(req.tool_name or 'tool')}"]
    description = req.description or str(req.input.get("description") or "")
    if description.strip():
        lines += ["> " + line for line in description.strip().splitlines()]
        lines.append("")  # ends the quote: a next line would be read as part of it
    lines.append(_input_block(req))
    if state is PermissionState.PENDING:
        if legend:
            lines.append(legend)
    else:
        lines.append(_OUTCOME[state] + (f" by {by}" if by else ""))
    return "\n".join(lines)


def _input_block(req: PermissionAsked) -> str:
    """The whole input, so what is approved is what is seen: a shell command as a shell
    block, a one-line path, URL or pattern as inline code, everything else as JSON (which
    input is which, the agent side says)."""
    key = req.key_argument
    value = req.input.get(key) if key else None
    if req.key_language and isinstance(value, str):
        return _code_block(value, req.key_language)
    if not (isinstance(value, str) and value.strip() and "\n" not in value):
        return _code_block(_json(req.input), "json")
    rest = {k: v for k, v in req.input.items() if k != key}
    return code_span(value) + (f"\n{_code_block(_json(rest), 'json')}" if rest else "")


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, default=str)


def _code_block(text: str, info: str) -> str:
    if len(text) > INPUT_CHARS:
        hidden = len(text) - INPUT_CHARS
        text = text[:INPUT_CHARS] + f"\n… ({hidden} more characters not shown)"
    ticks = "`" * max(3, 1 + max(map(len, re.findall("`+", text)), default=0))
    return f"{ticks}{info}\n{text}\n{ticks}"
