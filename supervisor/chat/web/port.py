"""The web chat's side of the chat port, in the core's words (see ../shared issue 10 sketch).

Until the port lands in `supervisor/core/`, these frozen classes stand in for the core's
own: `Place`, `ThreadRef`, the incoming events `MessagePosted`, `ChoiceMade`, `StopAsked`,
and `ChatLimits`. The glue step replaces them with imports from the core; nothing here
names a web concept (no WebSocket, no client id: the event id IS the page's client id).
"""

from __future__ import annotations

from typing import Literal

import attrs

# The one place of the web chat: the page. Its main thread takes commands only (`!new`...).
WEB_PLACE = "web"
MAIN_THREAD = "main"

OptionKind = Literal["allow_once", "allow_always", "reject", "stop"]
OPTION_KINDS: tuple[OptionKind, ...] = ("allow_once", "allow_always", "reject", "stop")


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


Incoming = MessagePosted | ChoiceMade | StopAsked


@attrs.frozen
class ChatLimits:
    max_message_chars: int
    min_edit_interval_s: float
    typing_every_s: float
    markup: Literal["markdown", "telegram_html"]


# The page renders Markdown itself (sanitised), takes long messages, and an edit costs one
# local SQLite write, so streaming can be smooth.
WEB_LIMITS = ChatLimits(
    max_message_chars=200_000, min_edit_interval_s=0.1, typing_every_s=3.0, markup="markdown"
)

# The one person at the page: the token holder.
WEB_AUTHOR = "web-user"
