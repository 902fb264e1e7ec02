"""What a session core is handed and what it asks its shell to do.

The values `core.session.SessionCore` takes in (its settings, a prompt) and the effects it
returns for the trio shell (`runtime.session`) to carry out, in order. Plain frozen values:
nothing here decides, performs I/O or reads a clock.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import attrs

from supervisor.core.agent_events import AgentCommand, Image
from supervisor.core.events import ChoiceKind
from supervisor.core.markdown import NO_LIMIT
from supervisor.core.restart import RestartPolicy
from supervisor.core.state import SessionRecord
from supervisor.core.thread_ops import PutPost
from supervisor.core.words import Words

# --- inputs --------------------------------------------------------------------


@attrs.frozen
class SessionSettings:
    turn_timeout_s: float = 1800
    stall_timeout_s: float = 300
    approval_timeout_s: float = 600
    idle_suspend_s: float = 0
    notify_after_s: float = 60
    interrupt_grace_s: float = 10  # after an interrupt, how long a result may take before we kill
    show_thinking: bool = True
    username: str = ""  # the person, for mentions
    agent_name: str = ""  # the configured agent the session runs, as `!status` names it
    permalink: Callable[[str], str] = str  # post id -> a link to it (pure: no I/O)
    # kinds offered -> the line that says how to choose, in the front end's terms (pure)
    legend: Callable[[tuple[ChoiceKind, ...]], str] = lambda _kinds: ""
    words: Words = attrs.Factory(Words)  # how the front end names commands and places in the help texts
    restart: RestartPolicy = attrs.Factory(RestartPolicy)
    # The front end's own numbers (`supervisor.chat.ChatLink`); the defaults hold none.
    max_message_chars: int = NO_LIMIT  # a longer answer continues in the next message
    typing_every_s: float = math.inf  # how often a turn repeats the typing signal


@attrs.frozen
class QueuedPrompt:
    post_id: str
    channel_id: str
    text: str
    images: tuple[Image, ...] = ()


# --- effects ---------------------------------------------------------------------


@attrs.frozen
class ToAgent:
    command: AgentCommand


@attrs.frozen
class Show:
    op: PutPost


@attrs.frozen
class OfferChoices:
    """Once the post `key` exists, let the person choose one of `kinds` on it (none: not
    what an earlier `OfferChoices` of it said either)."""

    key: str
    kinds: tuple[ChoiceKind, ...]


@attrs.frozen
class SettleChoices:
    """The choice offered on that post was made: stop offering it."""

    post_id: str


@attrs.frozen
class MarkHandled:
    channel_id: str
    post_id: str


@attrs.frozen
class SaveRecord:
    record: SessionRecord
    durable: bool = False  # on disk before the next effect is carried out
    # Written at once, not with company a moment later, though nothing waits for it: a
    # crash in between would cost the person something (an answer posted again).
    at_once: bool = False


@attrs.frozen
class LaunchAgent:
    resume: bool
    delay_s: float = 0.0


@attrs.frozen
class StopAgent:
    reason: str  # "end", "suspend", "hung", "shutdown"


@attrs.frozen
class Typing:
    pass


@attrs.frozen
class SendFile:
    """Post a file into the thread, beside the outbox: the shell starts it once the
    effects before it are carried out (its command's `MarkHandled` durable)."""

    path: str  # as typed after `!get`; the shell checks it stays inside the cwd


@attrs.frozen
class EditPost:
    """Change a post this session made in an earlier run (the outbox knows only this run's)."""

    post_id: str
    text: str


@attrs.frozen
class FetchFiles:
    """Save a held prompt's attachments in its session's folder, beside the running turn;
    the shell hands the prompt, now naming them, back with `SessionCore.files_saved`."""

    prompt: QueuedPrompt
    file_ids: tuple[str, ...]


@attrs.frozen
class Finished:
    """The session is over (ended or failed): the shell may end its task."""


Effect = (
    ToAgent
    | Show
    | OfferChoices
    | SettleChoices
    | MarkHandled
    | SaveRecord
    | LaunchAgent
    | StopAgent
    | Typing
    | SendFile
    | EditPost
    | FetchFiles
    | Finished
)


# Effects that show nothing by themselves: a Show waits for the poster, which the shell
# wakes only once the saves before it are durable.
_SHOWS_NOTHING_YET = (Show, SaveRecord, ToAgent, OfferChoices)


def saves_a_mark_carries(effects: list[Effect]) -> frozenset[int]:
    """The durable saves (by index) that may ride on the write of a handled mark later in
    the same run: the store writes every change in order, so the mark's acknowledgement
    covers them too. A turn's end and the next queued prompt reaching its agent then cost
    one write, not two. Only across effects that show nothing by themselves: whatever
    they put waits for the poster, which the shell wakes once the mark is durable."""
    carried: set[int] = set()
    waiting: list[int] = []
    for index, effect in enumerate(effects):
        if isinstance(effect, MarkHandled):
            carried.update(waiting)
            waiting = []
        elif isinstance(effect, SaveRecord) and effect.durable:
            waiting.append(index)
        elif not isinstance(effect, _SHOWS_NOTHING_YET):
            waiting = []  # something shows (or starts) before the mark: they are awaited
    return frozenset(carried)
