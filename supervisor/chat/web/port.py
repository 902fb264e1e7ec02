"""The web chat's own records of what the page did, as its inbox keeps them.

`MessagePosted`, `ChoiceMade` and `StopAsked` are what `WebChat` records (durably, once
per client id) and replays after a restart; `link.to_core` turns each into the core's
event (`Posted`, `ChoiceMade`). The kinds of choice are the core's own (`ChoiceKind`).
Nothing here names a web concept (no WebSocket, no client id: the event id IS the page's
client id).
"""

from __future__ import annotations

import attrs

from supervisor.core.events import CHOICE_KINDS, ChoiceKind

# The one place of the web chat: the page. Its main thread takes commands only (`!new`...).
WEB_PLACE = "web"
MAIN_THREAD = "main"

OptionKind = ChoiceKind
OPTION_KINDS = CHOICE_KINDS


@attrs.frozen
class ThreadRef:
    place: str
    thread_id: str


@attrs.frozen
class AttachmentRef:
    """A file the page uploaded; `fetch_attachment` returns its bytes."""

    id: str
    name: str
    size: int


@attrs.frozen
class MessagePosted:
    id: str
    place: str
    thread: ThreadRef | None  # None: the main place (commands only)
    author_id: str
    text: str
    attachments: tuple[AttachmentRef, ...] = ()
    reply_to: str | None = None
    sent_at: float = 0.0  # when the web chat accepted it (epoch seconds); 0: not known


@attrs.frozen
class ChoiceMade:
    id: str
    message_id: str
    option_kind: OptionKind
    author_id: str


@attrs.frozen
class StopAsked:
    id: str
    thread: ThreadRef
    author_id: str


Incoming = MessagePosted | ChoiceMade | StopAsked  # recorded, handed over exactly once


@attrs.frozen
class ThreadOpened:
    """The person opened a thread in the page: its agent should be ready. Not recorded (a
    hint, not an action: lost in a restart, the next opening says it again)."""

    thread: ThreadRef
    author_id: str


PageEvent = Incoming | ThreadOpened


# The one person at the page: the token holder.
WEB_AUTHOR = "web-user"
