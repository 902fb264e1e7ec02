"""The chat port over `WebChat`, both ways.

Outgoing, `WebLink` is the core's `ChatLink`: a place is the page (channel "web"), a
thread is a web thread (its id is the root id), a message is a bubble, choices are buttons
on a card. Incoming, `to_core` says the page's actions in the core's
words (`front_end.WebFrontEnd.run` hands them over): a message is `Posted`, a button is
`ChoiceMade`, Stop is `ChoiceMade(kind="stop")` on the thread's root, and opening a
thread is `TurnedTo` (a suspended agent starts then, as a Telegram `/session` does).

Exactly once: the web inbox keeps every action until the core's handled mark for it is
durable (`handled`), and replays what is left after a restart, so `posts_since` has
nothing to add. Every id handed out starts with "web" (`owns`).

Never decides what a message means, and never names a web concept to the core.
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

import attrs
import trio

from supervisor.chat import NO_LIMIT, ChatError, ChatLink, ChatUser
from supervisor.chat.web.codec import MAX_TEXT
from supervisor.chat.web.db import ID_PREFIX, USER_MESSAGE, MessageRow, WebDb
from supervisor.chat.web.front import WebChat
from supervisor.chat.web.port import (
    MAIN_THREAD,
    WEB_AUTHOR,
    WEB_PLACE,
    MessagePosted,
    PageEvent,
    StopAsked,
    ThreadOpened,
    ThreadRef,
)
from supervisor.chat.web.port import ChoiceMade as WebChoice
from supervisor.core.events import (
    ChatEvent,
    Choice,
    ChoiceKind,
    ChoiceMade,
    FileRef,
    Post,
    Posted,
    TurnedTo,
)
from supervisor.core.words import Words

CHANNEL = WEB_PLACE  # the page's one place; its main thread takes commands only
BOT = ChatUser(ID_PREFIX + "-bot", "supervisor", is_bot=True)
PERSON = ChatUser(WEB_AUTHOR, "you")
# The card's buttons: what each choice is called on the page. Stop is not among them:
# the page's Stop button (beside the composer) is always there while a turn runs.
LABELS: dict[ChoiceKind, str] = {
    "allow_once": "Allow",
    "allow_always": "Allow for this session",
    "reject": "Deny",
    "rerun": "Run again",
}
CHOICES_HELP = (
    f"**Buttons:** a permission request has {LABELS['allow_once']}, {LABELS['allow_always']} "
    f"and {LABELS['reject']}; Stop, beside the message box, stops the running turn."
)
# Commands are typed as in Mattermost; the main thread is the one the sidebar calls Commands.
WORDS = Words(main="the Commands thread", help_notes=CHOICES_HELP)
_HEADER_CWD = re.compile(r"`[^`]*`[^`\n]*·\s*`([^`\n]+)`")  # the header's second code span
_HEADER_AGENT = re.compile(r"· agent `([^`\n]+)`")  # a named agent; none: the default one


def _ms(seconds: float) -> int:
    return round(seconds * 1000)  # a stamp made in ms comes back whole (`WebChat._stamp_ms`)


def _thread(root_id: str) -> ThreadRef:
    return ThreadRef(WEB_PLACE, root_id or MAIN_THREAD)


def _root_of(row: MessageRow) -> str:
    return "" if row.thread_id == MAIN_THREAD else row.thread_id


class WebLink:
    """The `ChatLink` of the web chat."""

    me = BOT
    # The port's limits: the page holds a message to one bound both ways (`codec.MAX_TEXT`),
    # shows "typing" for 4.5 s after each signal (static/app.js), and keeps keys whole.
    max_message_chars = MAX_TEXT
    typing_every_s = 4.0
    max_idempotency_key_chars = NO_LIMIT

    def __init__(
        self, front: WebChat, events: trio.MemorySendChannel[ChatEvent] | None = None
    ) -> None:
        self._front = front
        self._events = events
        # Unbounded on purpose: `handled` is sync (called by the core's store actor) and
        # must never drop a mark (a dropped one would replay its message after a restart);
        # there is at most one per message the person sent.
        self._handled_send, self.handled_marks = trio.open_memory_channel[str](math.inf)

    # messages and threads ------------------------------------------------------------

    async def create_post(
        self,
        channel_id: str,
        message: str,
        *,
        root_id: str = "",
        file_ids: tuple[str, ...] = (),
        idempotency_key: str = "",
        reply_to: str = "",  # answered where it was asked: in the same thread
    ) -> Post:
        row = await self._front.create(_thread(root_id), message, idempotency_key or None, file_ids)
        return _post(row, BOT.id, idempotency_key)

    async def open_thread(self, channel_id: str, header: str, *, key: str, title: str) -> Post:
        front = self._front
        found = _HEADER_CWD.search(header)
        agent = _HEADER_AGENT.search(header.partition("\n")[0])
        thread = await front.open_thread(
            WEB_PLACE, title, header, key, cwd=found[1] if found else "",
            agent=agent[1] if agent else front.page.default_agent,
        )  # fmt: skip
        root = Post(
            thread.thread_id, CHANNEL, BOT.id, header, create_at=_ms(time.time()), idempotency_key=key
        )
        if self._events is not None:
            # The page shows the thread at once and a quick person writes in it: the core
            # must know the thread before that message, as Mattermost's own echo of a new
            # root post tells it. Ahead of the page's message, which takes a round trip.
            with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
                await self._events.send(Posted(root))
        await front.update_thread(thread, state="active")
        return root

    async def show_session_state(self, root_id: str, status: str) -> None:
        """The sidebar's word for the session: "active" while it may run (the page tells
        busy from idle by its typing signal), else the core's own word."""
        state = "active" if status == "live" else status
        await self._front.update_thread(_thread(root_id), state=state)

    async def edit_post(self, post_id: str, message: str) -> Post:
        front = self._front
        target = post_id
        if post_id.startswith(ID_PREFIX + "t"):  # a thread's root: its header message
            header = await front.header(post_id)
            if header is None:
                raise ChatError(404, "web.thread", f"no thread {post_id}")
            target = header.id
        row = await front.edit(target, message)
        if row is None:
            raise ChatError(404, "web.message", f"no message {post_id}")
        return attrs.evolve(_post(row, row.author), id=post_id)

    def request_room(self) -> float:
        return 0.0  # an edit is one local SQLite write: no budget to keep

    # choices and marks ---------------------------------------------------------------

    async def offer_choices(self, post_id: str, kinds: tuple[ChoiceKind, ...]) -> None:
        options = tuple((kind, LABELS[kind]) for kind in kinds if kind in LABELS)
        if options:
            await self._front.offer_choice(post_id, options)

    async def settle_choices(self, post_id: str) -> None:
        # The core edits the outcome into the message's text; the card only loses its buttons.
        await self._front.settle_choice(post_id, "")

    def choice_legend(self, kinds: Iterable[ChoiceKind]) -> str:
        return ""  # the buttons say it themselves

    def words(self, channel_id: str) -> Words:
        return WORDS

    async def send_typing(self, channel_id: str, parent_id: str) -> None:
        await self._front.typing(_thread(parent_id))

    # catch-up and the handled mark ---------------------------------------------------

    async def posts_since(self, channel_id: str, since_ms: int) -> list[Post]:
        return []  # the web inbox replays what the core has not handled, by itself

    async def choices_on(self, channel_id: str, post_id: str) -> list[Choice]:
        return []  # a press is a message in the web inbox: replayed like any other

    def handled(self, channel_id: str, post_id: str) -> None:
        if post_id.startswith(USER_MESSAGE):
            self._handled_send.send_nowait(post_id.removeprefix(USER_MESSAGE))

    # files ---------------------------------------------------------------------------

    async def file_info(self, file_id: str) -> FileRef:
        found = await self._front.store.call(WebDb.file_ref, file_id)
        if found is None:
            raise ChatError(404, "web.file", f"no file {file_id}")
        name, size, mime_type = found
        return FileRef(file_id, name, size, mime_type)

    async def download_file(self, file_id: str) -> bytes:
        found = await self._front.store.call(WebDb.file, file_id)
        if found is None:
            raise ChatError(404, "web.file", f"no file {file_id}")
        return found[1]

    async def upload_file(self, channel_id: str, name: str, data: bytes) -> str:
        ref = await self._front.store.call(WebDb.add_file, name, data)
        return str(ref["id"])

    # people and places ---------------------------------------------------------------

    async def user_by_username(self, username: str) -> ChatUser | None:
        return PERSON if username in (PERSON.username, PERSON.id) else None

    async def direct_channel(self, user_id: str) -> str:
        return CHANNEL

    def permalink(self, post_id: str) -> str:
        return f"#thread/{post_id}"


def _post(row: MessageRow, user_id: str, idempotency_key: str = "") -> Post:
    return Post(
        row.id,
        CHANNEL,
        user_id,
        row.text,
        root_id=_root_of(row),
        create_at=_ms(row.created),
        file_ids=tuple(str(f["id"]) for f in row.files),
        idempotency_key=idempotency_key,
    )


@attrs.define
class Clock:
    """`create_at` for the core's ledger: ms, strictly increasing within one run.

    A message is stamped with the time the web chat accepted it, kept in its inbox record,
    so a replay after a restart is exactly as old as the first delivery: the ledger then
    recognises what it handled even once it has forgotten the id (older than its cursor).
    """

    last: int = 0

    def next(self, at_ms: int = 0) -> int:
        self.last = max(self.last + 1, at_ms or _ms(time.time()))
        return self.last


def to_core(event: PageEvent, clock: Clock) -> ChatEvent:
    """A page action, in the core's words."""
    match event:
        case MessagePosted():
            post = Post(
                USER_MESSAGE + event.id,
                CHANNEL,
                PERSON.id,
                event.text,
                root_id="" if event.thread is None else event.thread.thread_id,
                create_at=clock.next(_ms(event.sent_at)),
                file_ids=tuple(ref.id for ref in event.attachments),
            )
            return Posted(post)
        case WebChoice():
            return ChoiceMade(Choice(PERSON.id, event.message_id, event.option_kind, CHANNEL))
        case StopAsked():
            return ChoiceMade(Choice(PERSON.id, event.thread.thread_id, "stop", CHANNEL))
        case ThreadOpened():
            return TurnedTo(PERSON.id, CHANNEL, event.thread.thread_id)


if TYPE_CHECKING:
    # mypy proves the protocol is met; nothing runs.
    def _is_a_chat_link(link: WebLink) -> ChatLink:
        return link
