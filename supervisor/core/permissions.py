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

MIN_INPUT_CHARS = 500  # of a tool's input, shown whatever the front end's post limit
DESCRIPTION_CHARS = 1000  # of the agent's words on why: the input is what is allowed


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
    OUTSIDE_TURN = "outside a turn"  # asked in a turn the agent began by itself: denied


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
    PermissionState.OUTSIDE_TURN: (
        "⛔ **Denied**: the agent asked in a turn it began by itself, not for a prompt of yours; "
        "ask it in a message to do this"
    ),
}


def choice_answer(kind: ChoiceKind) -> Answer | None:
    """What a choice means on a permission request; None if it means nothing there."""
    return _ANSWER_OF_CHOICE.get(kind)


def permission_text(
    req: PermissionAsked,
    state: PermissionState | str = PermissionState.PENDING,
    by: str = "",
    legend: str = "",
    max_chars: int = 16_000,
) -> str:
    """The post of a permission request: the tool, its input, why, and the front end's
    legend (how to answer) while it is pending or the outcome once it is answered (`by`
    names who answered); within `max_chars`, the front end's post limit."""
    state = PermissionState(state)
    head = [f"🔐 **Permission needed:** {code_span(req.tool_name or 'tool')}"]
    description = _fitted(req.description or str(req.input.get("description") or ""), DESCRIPTION_CHARS)
    if description.strip():
        head += ["> " + line for line in description.strip().splitlines()]
        head.append("")  # ends the quote: a next line would be read as part of it
    if state is PermissionState.PENDING:
        tail = [legend] if legend else []
    else:
        tail = [_OUTCOME[state] + (f" by {by}" if by else "")]
    # The same room in every state: the input shown does not change once answered.
    room = max(MIN_INPUT_CHARS, max_chars - len("\n".join(head)) - _LONGEST_TAIL - _BLOCK_FRAME)
    return "\n".join([*head, _input_block(req, room), *tail])


# What the input's room leaves for the rest: the longest outcome line (or a legend) and
# the code block's fences, its info string and a JSON remainder's own block.
_LONGEST_TAIL = 200
_BLOCK_FRAME = 100


def _input_block(req: PermissionAsked, room: int) -> str:
    """The input, as much as `room` holds, so what is approved is what is seen: a shell
    command as a shell block, a one-line path, URL or pattern as inline code, everything
    else as JSON (which input is which, the agent side says)."""
    key = req.key_argument
    value = req.input.get(key) if key else None
    if req.key_language and isinstance(value, str):
        return _code_block(value, req.key_language, room)
    if not (isinstance(value, str) and value.strip() and "\n" not in value):
        return _code_block(_json(req.input), "json", room)
    rest = {k: v for k, v in req.input.items() if k != key}
    shown = code_span(_fitted(value, room // 2))
    return shown + (f"\n{_code_block(_json(rest), 'json', room - len(shown))}" if rest else "")


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, default=str)


def _fitted(text: str, room: int) -> str:
    """`text`, or, too long for `room`, its start and its end with what lies between
    said: whoever allows the call allows what is not shown too."""
    if len(text) <= room:
        return text
    marker = "\n… ({} characters not shown here; allowing the call allows them too) …\n"
    keep = max(0, room - len(marker) - 10)
    start, end = text[: keep * 2 // 3], text[len(text) - keep // 3 :]
    return start + marker.format(len(text) - len(start) - len(end)) + end


def _code_block(text: str, info: str, room: int) -> str:
    text = _fitted(text, room)
    ticks = "`" * max(3, 1 + max(map(len, re.findall("`+", text)), default=0))
    return f"{ticks}{info}\n{text}\n{ticks}"
