"""The chat port: what sessions, the desk and the router may ask of a front end.

`ChatLink` speaks in the core's words: messages (`Post`) in a place (a channel), threads
(one per session, opened with `open_thread`), choices offered on a message and made by a
person (`ChoiceMade`), a prompt marked as queued. How each is shown (reactions, buttons,
topics, a web page) is the front end's business: `supervisor/chat/<name>/`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable

import attrs

from supervisor.core.events import Choice, ChoiceKind, FileRef, Post
from supervisor.core.markdown import NO_LIMIT as NO_LIMIT  # a limit a front end does not have
from supervisor.core.words import Words


@attrs.frozen
class ChatUser:
    id: str
    username: str
    is_bot: bool = False


class ChatLink(Protocol):
    """REST-like operations. Each call retries transient failures until it succeeds or the
    caller's cancel scope ends it; permanent refusals raise `ChatError`.

    Its limits are plain attributes the core is handed (`core.session_effects.SessionSettings`,
    `core.outbox.Outbox`): the core knows no front end's numbers."""

    me: ChatUser
    # The longest message it shows whole, in characters: a longer answer continues in the next.
    max_message_chars: int
    # How often a running turn repeats `send_typing`: a little sooner than the signal lapses.
    typing_every_s: float
    # The longest `idempotency_key` it honours (a longer one could post twice).
    max_idempotency_key_chars: int

    async def create_post(
        self,
        channel_id: str,
        message: str,
        *,
        root_id: str = "",
        file_ids: tuple[str, ...] = (),
        idempotency_key: str = "",
        reply_to: str = "",
    ) -> Post:
        """A repeat with the same `idempotency_key` does not post twice. Without `root_id` the message goes to the place itself.
        `reply_to`: the person's post this answers, if any (a front end may place the
        answer beside it: Telegram answers a topic the person opened in that topic)."""
        ...

    async def open_thread(self, channel_id: str, header: str, *, key: str, title: str) -> Post:
        """A new session's thread, `header` its first message; the returned post's id is
        the thread's root id from then on. Idempotent by `key`, like `create_post`."""
        ...

    async def edit_post(self, post_id: str, message: str) -> Post: ...

    def request_room(self) -> float:
        """Seconds until a deferrable request (an intermediate edit, which a later one can
        replace) should go; 0 while the request budget is comfortably full."""
        ...

    async def offer_choices(self, post_id: str, kinds: tuple[ChoiceKind, ...]) -> None:
        """Let the person choose one of `kinds` on that message (reactions, buttons)."""
        ...

    async def settle_choices(self, post_id: str) -> None:
        """The choice on that message was made (or lapsed): stop offering it."""
        ...

    def choice_legend(self, kinds: Iterable[ChoiceKind]) -> str:
        """The line under an offered choice that says how to choose ("" where the
        buttons say it themselves). Pure."""
        ...

    def words(self, channel_id: str) -> Words:
        """How the core's texts name things in that place: how a command is typed, what
        the main place and a session's place are called, how a person answers a
        permission request and stops a turn (reactions, buttons). Pure."""
        ...

    async def posts_since(self, channel_id: str, since_ms: int) -> list[Post]:
        """Every post created or changed after `since_ms`, oldest first, all pages."""
        ...

    async def choices_on(self, channel_id: str, post_id: str) -> list[Choice]:
        """The choices people have made on that message, as the server holds them now:
        asked after a gap in the event stream, so that a choice made while we were
        disconnected is not lost. [] where every press reaches us anyway."""
        ...

    async def file_info(self, file_id: str) -> FileRef: ...

    async def download_file(self, file_id: str) -> bytes: ...

    async def upload_file(self, channel_id: str, name: str, data: bytes) -> str: ...

    async def user_by_username(self, username: str) -> ChatUser | None: ...

    async def direct_channel(self, user_id: str) -> str: ...

    async def send_typing(self, channel_id: str, parent_id: str) -> None: ...

    def permalink(self, post_id: str) -> str: ...

    def handled(self, channel_id: str, post_id: str) -> None:
        """That message's handled mark is durable now (called by the store after the
        write): a front end that confirms delivery to its server may do so now."""
        ...


@runtime_checkable
class ShowsGrowingPosts(Protocol):
    """A link with a way of its own to show a post whose text is still growing (a
    streaming answer), e.g. Telegram's drafts. The poster sends a post's texts that are
    not its last (`PutPost.final` false) through these; its last text through
    `create_post` / `edit_post`, as with any link. The post id returned stays the post's
    id for every later call, whatever the link did meanwhile."""

    async def create_growing(
        self, channel_id: str, message: str, *, root_id: str, idempotency_key: str
    ) -> Post: ...

    async def edit_growing(self, post_id: str, message: str) -> Post: ...


@runtime_checkable
class ShowsSessionState(Protocol):
    """A link that shows each session's state beside its thread (the web chat's list of
    threads). Told each change of the record's status: "live", "suspended" (its agent
    stopped while idle; the next message starts it), "ended" or "failed"."""

    async def show_session_state(self, root_id: str, status: str) -> None: ...


class ChatError(Exception):
    """The chat server refused a request (bad input, missing, forbidden), or answered it
    in a way the link cannot read; what is transient (an outage) the link retries itself."""

    def __init__(self, status: int, error_id: str = "", message: str = "") -> None:
        super().__init__(f"{status} {error_id}: {message}".strip())
        self.status = status
        self.error_id = error_id
        self.message = message

    @property
    def for_good(self) -> bool:
        """The server read the call and will not take it (a 4xx: the thread deleted, the
        text too long, no permission): sending it again would not mend it."""
        return 400 <= self.status < 500 and self.status not in (407, 408, 429)


class CannotStart(Exception):
    """A front end cannot start with this configuration (its chat server refuses the
    token, it knows none of the allowed users, the web chat's address cannot be bound):
    the message is one sentence for the person, said without a traceback; waiting
    would not mend it."""
