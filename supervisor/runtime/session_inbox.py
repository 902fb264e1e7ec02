"""What reaches a session's inbox: from the router (a prompt, a command, a choice, the
end), and from the session's own tasks (its agent's events and lifetime, its poster's
progress). The session task takes them one at a time, in order, and hands each to its core.
"""

from __future__ import annotations

import attrs

from supervisor.core import commands
from supervisor.core.agent_events import AgentEvent
from supervisor.core.events import ChoiceKind
from supervisor.core.session import QueuedPrompt
from supervisor.core.thread_ops import PutPost

INBOX_SIZE = 1000
# Slots of a session's inbox the router leaves free: the session's own tasks (its poster)
# report there without waiting, and must find room even while the thread is flooded.
INBOX_HEADROOM = 100
# The agent's output waits (and with it the agent, its stdout pipe full) while the inbox
# holds this much: a flood of it leaves the person's messages room beside it, so they are
# taken in their turn, not after the flood, and the headroom stays free.
AGENT_OUTPUT_ROOM = INBOX_SIZE - 2 * INBOX_HEADROOM

# --- from the router ------------------------------------------------------------------


@attrs.frozen
class PromptIn:
    prompt: QueuedPrompt
    file_ids: tuple[str, ...] = ()  # attachments, saved before the prompt reaches the core


@attrs.frozen
class CommandIn:
    command: commands.ThreadCommand | commands.BadCommand
    post_id: str
    channel_id: str


@attrs.frozen
class ChoiceIn:
    kind: ChoiceKind
    post_id: str


@attrs.frozen
class EndIn:
    # The `!end NAME` post of a main place (channel id, post id): marked handled with the
    # ended record, so a stop before the session takes this leaves it to the next start.
    mark: tuple[str, str] | None = None


@attrs.frozen
class WakeIn:
    """The person turned to the thread: a suspended agent starts now."""


@attrs.frozen
class StoppingIn:
    """The supervisor stops: no new turn starts, and a running one is interrupted (the
    next start says it was cut)."""


SessionInput = PromptIn | CommandIn | ChoiceIn | EndIn | WakeIn | StoppingIn


# --- from the session's own tasks (its agent runner, its poster, its file fetches) ----


@attrs.frozen
class FromAgent:
    generation: int
    events: list[AgentEvent]


@attrs.frozen
class AgentUp:
    generation: int
    pid: int


@attrs.frozen
class AgentDown:
    generation: int
    code: int | None
    stderr_tail: str
    last_line_at: float  # when it last printed a line; math.inf if unknown (counts as just now)


@attrs.frozen
class Settled:
    pass


@attrs.frozen
class PostMade:
    key: str
    post_id: str


@attrs.frozen
class FilesSaved:
    """A held prompt's attachments are saved: the prompt now names them."""

    prompt: QueuedPrompt
    notice: PutPost | None  # the files that could not be saved, if any


SessionMessage = SessionInput | FromAgent | AgentUp | AgentDown | Settled | PostMade | FilesSaved  # all of it
