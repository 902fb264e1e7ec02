"""What the chat side tells us, in chat-neutral words.

The Mattermost codec (and any later front end) turns wire frames into these; the router,
sessions and tests only ever see these. Frozen, so an event can be shared freely.
"""

from __future__ import annotations

from typing import Literal

import attrs


@attrs.frozen
class FileRef:
    """An attachment of a post, as the chat server describes it."""

    id: str
    name: str
    size: int = 0
    mime_type: str = ""


@attrs.frozen
class Post:
    """A message, by a person or by us. Front ends hand over only what a person wrote
    (no system messages, nothing deleted)."""

    id: str
    channel_id: str  # the place: a person's main place, where threads live
    user_id: str
    message: str
    root_id: str = ""  # "" for a message in the place itself; the thread root's id for a reply
    create_at: int = 0  # ms since epoch, as the front end stamps it
    file_ids: tuple[str, ...] = ()
    idempotency_key: str = ""  # the key it was created with, where the front end tells it

    @property
    def thread_id(self) -> str:
        """The thread this post belongs to: its root, or itself when it is a root."""
        return self.root_id or self.id


@attrs.frozen
class Posted:
    post: Post


@attrs.frozen
class PostEdited:
    post: Post


@attrs.frozen
class PostDeleted:
    post: Post


ChoiceKind = Literal["allow_once", "allow_always", "reject", "stop", "rerun"]
"""What a person can choose on a message: answer a permission request (once, for the rest
of the session, or no), stop the running turn (on any message of the thread), or run a
cut turn's prompt again. Each front end shows these its own way: reactions, buttons."""

CHOICE_KINDS: tuple[ChoiceKind, ...] = ("allow_once", "allow_always", "reject", "stop", "rerun")


@attrs.frozen
class Choice:
    user_id: str
    post_id: str  # the message it was made on
    kind: ChoiceKind
    channel_id: str = ""


@attrs.frozen
class ChoiceMade:
    choice: Choice


@attrs.frozen
class TurnedTo:
    """The person turned to a session's thread (e.g. chose it as where their plain text
    goes): its agent should be ready for them, started now if it is not running."""

    user_id: str
    channel_id: str
    root_id: str


@attrs.frozen
class Hello:
    """A fresh chat connection. A new connection id after a drop means events were missed."""

    connection_id: str
    server_version: str = ""


ChatEvent = Posted | PostEdited | PostDeleted | ChoiceMade | Hello | TurnedTo
